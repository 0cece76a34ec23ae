//! The `Admin` gRPC service: the cluster as this node sees it.

use endure_proto::endure::internal::admin_server::Admin;
use endure_proto::endure::internal::{
    ChaosControlReply, ChaosControlRequest, ClusterMember, ClusterStatus, ClusterStatusRequest,
    JoinNodeRequest, LeaveNodeRequest, LocalStateReply, LocalStateRequest,
};
use endure_raft::node::Node;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct AdminService {
    pub node: Node,
    pub sidecar: crate::grpc::Sidecar,
    /// Serializes membership changes: openraft must never see two at once.
    pub membership_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn raft_error(error: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("membership change failed: {error}; retry"))
}

impl AdminService {
    fn voters(&self) -> std::collections::BTreeSet<u64> {
        self.node
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Adds the node as a learner, waits until it has caught up, then makes it a voter.
    async fn join(&self, request: JoinNodeRequest) -> Result<(), Status> {
        let id = request.node_id;
        if id == 0 || request.address.is_empty() {
            return Err(Status::invalid_argument(
                "a node ID (at least 1) and its raft address are required",
            ));
        }
        if self.node.shared.is_retired(id) {
            return Err(Status::already_exists(format!(
                "node ID {id} belonged to a node that left; IDs are never reused"
            )));
        }
        if self.voters().contains(&id) {
            return Err(Status::already_exists(format!(
                "node {id} is already a voter"
            )));
        }
        let node = openraft::BasicNode {
            addr: request.address,
        };
        self.node
            .raft
            .add_learner(id, node, true)
            .await
            .map_err(raft_error)?;
        let mut voters = self.voters();
        voters.insert(id);
        self.node
            .raft
            .change_membership(voters, false)
            .await
            .map_err(raft_error)?;
        Ok(())
    }

    /// Removes the node from the voters and retires its ID.
    async fn leave(&self, request: LeaveNodeRequest) -> Result<(), Status> {
        let id = request.node_id;
        let mut voters = self.voters();
        if !voters.remove(&id) {
            return Err(Status::not_found(format!("node {id} is not a voter")));
        }
        if voters.is_empty() {
            return Err(Status::failed_precondition("the last voter cannot leave"));
        }
        self.node
            .raft
            .change_membership(voters, false)
            .await
            .map_err(raft_error)?;
        let retire =
            endure_engine::records::command::Kind::RetireNode(endure_engine::records::RetireNode {
                node_id: id,
            });
        crate::grpc::status::check(self.sidecar.proposer.propose(retire).await)?;
        Ok(())
    }
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
        wall_time: Some(crate::clock::Clock::now(&crate::clock::SystemClock)),
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
        if let Some(mut leader) = self.sidecar.forward.leader_for(&request)? {
            return leader
                .admin
                .join_node(crate::forward::forwarded(request))
                .await;
        }
        let _serialized = self.membership_lock.lock().await;
        self.join(request.into_inner()).await?;
        Ok(Response::new(cluster_status(&self.node)))
    }

    async fn leave_node(
        &self,
        request: Request<LeaveNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        if let Some(mut leader) = self.sidecar.forward.leader_for(&request)? {
            return leader
                .admin
                .leave_node(crate::forward::forwarded(request))
                .await;
        }
        let _serialized = self.membership_lock.lock().await;
        self.leave(request.into_inner()).await?;
        Ok(Response::new(cluster_status(&self.node)))
    }

    async fn start_instance_no_wait(
        &self,
        request: Request<endure_proto::CreateInstanceRequest>,
    ) -> Result<Response<endure_proto::CreateInstanceResponse>, Status> {
        if self.sidecar.forward.leader_for(&request)?.is_some() {
            return Err(Status::unavailable("this node is not the leader; retry"));
        }
        let started = self
            .sidecar
            .start(request.into_inner(), crate::grpc::StartWait::No)
            .await?;
        Ok(Response::new(started))
    }

    async fn local_state(
        &self,
        request: Request<LocalStateRequest>,
    ) -> Result<Response<LocalStateReply>, Status> {
        crate::replica::local_state(&self.node, request.get_ref()).map(Response::new)
    }

    async fn chaos_control(
        &self,
        request: Request<ChaosControlRequest>,
    ) -> Result<Response<ChaosControlReply>, Status> {
        crate::chaos::control(request.into_inner()).map(Response::new)
    }
}
