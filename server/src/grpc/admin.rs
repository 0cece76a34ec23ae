//! The `Admin` gRPC service: the cluster as this node sees it, membership changes, this
//! node's replica (for the chaos suite), node-to-node outbox delivery and leader
//! placement, and, in a `chaos` build, fault controls.

use endure_proto::endure::internal::admin_server::Admin;
use endure_proto::endure::internal::{
    ChaosControlReply, ChaosControlRequest, ClusterMember, ClusterStatus, ClusterStatusRequest,
    DeliverReply, DeliverRequest, JoinNodeRequest, LeaveNodeRequest, LocalStateReply,
    LocalStateRequest, ShardStatus, TakeLeadershipReply, TakeLeadershipRequest,
};
use endure_raft::node::Node;
use endure_raft::status::Status as RaftStatus;
use tonic::{Request, Response, Status};

use super::status::call;
use crate::auth::{check_admin, Token};
use crate::cluster::membership::{Change, Membership};
use crate::cluster::placement;
use crate::cluster::shards::Shards;
use crate::service::{Error, Workflows};

/// The Admin service. Membership changes go to each shard's leader; the rest answers for
/// this node.
#[derive(Clone)]
pub struct AdminService {
    pub shards: Shards,
    pub workflows: Workflows,
    pub membership: Membership,
    /// The token the calls beyond `ClusterStatus` need (the client ports' `--admin-token`;
    /// none on the internal port, where the cluster secret guards every call).
    pub admin_token: Option<Token>,
}

impl AdminService {
    fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check_admin(self.admin_token.as_ref(), request.metadata())
    }
}

fn members(status: &RaftStatus) -> Vec<ClusterMember> {
    status
        .members
        .iter()
        .map(|member| ClusterMember {
            node_id: member.node_id,
            address: member.address.clone(),
            role: if member.voter { "voter" } else { "learner" }.to_string(),
            matched_index: member.matched_index,
        })
        .collect()
}

/// One shard's Raft group as this node sees it.
pub fn shard_status(node: &Node, preferred_leader: u64) -> ShardStatus {
    let status = node.status();
    ShardStatus {
        shard: node.shard,
        leader_id: status.leader,
        term: status.term,
        state: status.role.as_str().to_string(),
        last_log_index: status.last_log_index,
        committed_index: status.committed_index,
        applied_index: status.applied_index,
        snapshot_index: status.snapshot_index,
        purged_index: status.purged_index,
        members: members(&status),
        preferred_leader,
    }
}

/// This node's view of the cluster as a [`ClusterStatus`]: shard 0's group at the top,
/// every shard in `shards`.
pub fn cluster_status(shards: &Shards) -> ClusterStatus {
    let first = shards.first();
    let status = first.node.status();
    let preferred = placement::preferred(shards);
    ClusterStatus {
        node_id: first.node.node_id,
        leader_id: status.leader,
        term: status.term,
        members: members(&status),
        last_log_index: status.last_log_index,
        committed_index: status.committed_index,
        applied_index: status.applied_index,
        state: status.role.as_str().to_string(),
        snapshot_index: status.snapshot_index,
        purged_index: status.purged_index,
        wall_time: Some(crate::cluster::clock::Clock::now(
            &crate::cluster::clock::SystemClock,
        )),
        shards: shards
            .iter()
            .map(|shard| {
                let preferred = preferred.get(shard.id as usize).copied().unwrap_or(0);
                shard_status(&shard.node, preferred)
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(cluster_status(&self.shards)))
    }

    async fn join_node(
        &self,
        request: Request<JoinNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.admin(&request)?;
        let call = call(&request);
        let request = request.into_inner();
        let change = Change::Join {
            id: request.node_id,
            address: request.address,
        };
        match request.shard {
            Some(shard) => self.membership.change_one(&call, shard, change).await?,
            None => self.membership.change(&call, change).await?,
        }
        Ok(Response::new(cluster_status(&self.shards)))
    }

    async fn leave_node(
        &self,
        request: Request<LeaveNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.admin(&request)?;
        let call = call(&request);
        let request = request.into_inner();
        let change = Change::Leave {
            id: request.node_id,
        };
        match request.shard {
            Some(shard) => self.membership.change_one(&call, shard, change).await?,
            None => self.membership.change(&call, change).await?,
        }
        Ok(Response::new(cluster_status(&self.shards)))
    }

    async fn local_state(
        &self,
        request: Request<LocalStateRequest>,
    ) -> Result<Response<LocalStateReply>, Status> {
        self.admin(&request)?;
        crate::cluster::replica::local_state(&self.shards, request.get_ref()).map(Response::new)
    }

    async fn chaos_control(
        &self,
        request: Request<ChaosControlRequest>,
    ) -> Result<Response<ChaosControlReply>, Status> {
        self.admin(&request)?;
        crate::cluster::chaos::control(request.into_inner()).map(Response::new)
    }

    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverReply>, Status> {
        self.admin(&request)?;
        let call = call(&request);
        let request = request.into_inner();
        let shard = self.shards.get(request.shard).ok_or_else(|| {
            Error::invalid_argument(format!("this node has no shard {}", request.shard))
        })?;
        shard.must_lead(&call)?;
        let messages = request
            .messages
            .ok_or_else(|| Error::invalid_argument("messages are required"))?;
        crate::outbox::apply_delivery(shard, messages).await?;
        Ok(Response::new(DeliverReply {}))
    }

    async fn take_leadership(
        &self,
        request: Request<TakeLeadershipRequest>,
    ) -> Result<Response<TakeLeadershipReply>, Status> {
        self.admin(&request)?;
        let shard = request.into_inner().shard;
        let shard = self
            .shards
            .get(shard)
            .ok_or_else(|| Error::invalid_argument(format!("this node has no shard {shard}")))?;
        placement::stand_for_election(shard).await?;
        Ok(Response::new(TakeLeadershipReply {}))
    }
}
