//! The `Admin` gRPC service: the cluster as this node sees it.

use endure_proto::endure::internal::admin_server::Admin;
use endure_proto::endure::internal::{ClusterMember, ClusterStatus, ClusterStatusRequest};
use endure_raft::node::Node;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct AdminService {
    pub node: Node,
    pub sidecar: crate::grpc::Sidecar,
}

/// This node's Raft metrics as a [`ClusterStatus`].
pub fn cluster_status(node: &Node) -> ClusterStatus {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, member)| ClusterMember {
            node_id: *id,
            address: member.addr.clone(),
            role: if voters.contains(id) { "voter" } else { "learner" }.to_string(),
        })
        .collect();
    ClusterStatus {
        node_id: node.node_id,
        leader_id: metrics.current_leader,
        term: metrics.current_term,
        members,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        committed_index: committed_index(&metrics, &voters, node.node_id),
        applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
        state: format!("{:?}", metrics.state),
    }
}

/// The highest index a majority of voters hold, as the leader sees replication; on other
/// nodes the applied index (which never passes the committed one) is the best known bound.
fn committed_index(
    metrics: &openraft::RaftMetrics<u64, openraft::BasicNode>,
    voters: &std::collections::BTreeSet<u64>,
    node_id: u64,
) -> u64 {
    let applied = metrics.last_applied.map(|id| id.index).unwrap_or(0);
    let Some(replication) = &metrics.replication else {
        return applied;
    };
    let mut matched: Vec<u64> = voters
        .iter()
        .map(|id| {
            if *id == node_id {
                metrics.last_log_index.unwrap_or(0)
            } else {
                replication.get(id).copied().flatten().map(|log_id| log_id.index).unwrap_or(0)
            }
        })
        .collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    let quorum = voters.len() / 2;
    matched.get(quorum).copied().unwrap_or(0).max(applied)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(&self, _request: Request<ClusterStatusRequest>) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(cluster_status(&self.node)))
    }

    async fn start_instance_no_wait(
        &self,
        request: Request<endure_proto::CreateInstanceRequest>,
    ) -> Result<Response<endure_proto::CreateInstanceResponse>, Status> {
        if self.sidecar.forward.leader_for(&request)?.is_some() {
            return Err(Status::unavailable("this node is not the leader; retry"));
        }
        let started = self.sidecar.start(request.into_inner(), crate::grpc::StartWait::No).await?;
        Ok(Response::new(started))
    }
}
