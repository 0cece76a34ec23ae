//! The `Admin` gRPC service: the cluster as this node sees it, membership changes, this
//! node's replica (for the chaos suite) and, in a `chaos` build, fault controls.

use endure_proto::endure::internal::admin_server::Admin;
use endure_proto::endure::internal::{
    ChaosControlReply, ChaosControlRequest, ClusterMember, ClusterStatus, ClusterStatusRequest,
    JoinNodeRequest, LeaveNodeRequest, LocalStateReply, LocalStateRequest,
};
use endure_raft::node::Node;
use tonic::{Request, Response, Status};

use super::status::call;
use crate::cluster::membership::Membership;
use crate::service::Workflows;

/// The Admin service. Membership changes go to the leader; the rest answers for this node.
#[derive(Clone)]
pub struct AdminService {
    pub node: Node,
    pub workflows: Workflows,
    pub membership: Membership,
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
            role: if voters.contains(id) {
                "voter"
            } else {
                "learner"
            }
            .to_string(),
            matched_index: metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(id))
                .map(|matched| matched.map(|log_id| log_id.index).unwrap_or(0)),
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
        snapshot_index: metrics.snapshot.map(|id| id.index).unwrap_or(0),
        purged_index: metrics.purged.map(|id| id.index).unwrap_or(0),
        wall_time: Some(crate::cluster::clock::Clock::now(
            &crate::cluster::clock::SystemClock,
        )),
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
                replication
                    .get(id)
                    .copied()
                    .flatten()
                    .map(|log_id| log_id.index)
                    .unwrap_or(0)
            }
        })
        .collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    let quorum = voters.len() / 2;
    matched.get(quorum).copied().unwrap_or(0).max(applied)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(cluster_status(&self.node)))
    }

    async fn join_node(
        &self,
        request: Request<JoinNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let call = call(&request);
        let request = request.into_inner();
        if let Some(leader) = self.workflows.forward.leader_for(&call)? {
            let forwarded = leader.forward(&call, request, |mut leader, request| async move {
                leader.admin.join_node(request).await
            });
            return Ok(Response::new(forwarded.await?));
        }
        self.membership
            .join(request.node_id, request.address)
            .await?;
        Ok(Response::new(cluster_status(&self.node)))
    }

    async fn leave_node(
        &self,
        request: Request<LeaveNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let call = call(&request);
        let request = request.into_inner();
        if let Some(leader) = self.workflows.forward.leader_for(&call)? {
            let forwarded = leader.forward(&call, request, |mut leader, request| async move {
                leader.admin.leave_node(request).await
            });
            return Ok(Response::new(forwarded.await?));
        }
        self.membership.leave(request.node_id).await?;
        Ok(Response::new(cluster_status(&self.node)))
    }

    async fn local_state(
        &self,
        request: Request<LocalStateRequest>,
    ) -> Result<Response<LocalStateReply>, Status> {
        crate::cluster::replica::local_state(&self.node, request.get_ref()).map(Response::new)
    }

    async fn chaos_control(
        &self,
        request: Request<ChaosControlRequest>,
    ) -> Result<Response<ChaosControlReply>, Status> {
        crate::cluster::chaos::control(request.into_inner()).map(Response::new)
    }
}
