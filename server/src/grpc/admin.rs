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

/// This node's view of the cluster as a [`ClusterStatus`].
pub fn cluster_status(node: &Node) -> ClusterStatus {
    let status = node.status();
    let members = status
        .members
        .iter()
        .map(|member| ClusterMember {
            node_id: member.node_id,
            address: member.address.clone(),
            role: if member.voter { "voter" } else { "learner" }.to_string(),
            matched_index: member.matched_index,
        })
        .collect();
    ClusterStatus {
        node_id: node.node_id,
        leader_id: status.leader,
        term: status.term,
        members,
        last_log_index: status.last_log_index,
        committed_index: status.committed_index,
        applied_index: status.applied_index,
        state: status.role.as_str().to_string(),
        snapshot_index: status.snapshot_index,
        purged_index: status.purged_index,
        wall_time: Some(crate::cluster::clock::Clock::now(
            &crate::cluster::clock::SystemClock,
        )),
    }
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
