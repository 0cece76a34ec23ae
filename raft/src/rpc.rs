//! The server side of the Raft network: decodes peers' RPCs and hands them to openraft.

use std::sync::Arc;

use endure_proto::endure::internal::raft_service_server::RaftService;
use endure_proto::endure::internal::RaftMessage;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::codec;
use crate::network::{AppendMeta, SnapshotChunkMeta};
use crate::types::{NodeId, Raft, TypeConfig};

/// Serves `RaftService` for every shard's Raft group of this node.
#[derive(Clone)]
pub struct RaftRpc {
    /// The Raft group of each shard, in shard order.
    pub rafts: Arc<Vec<Raft>>,
}

impl RaftRpc {
    /// The group a message is for; INVALID_ARGUMENT for a shard this node does not have
    /// (a peer started with another `--shards`).
    fn raft(&self, message: &RaftMessage) -> Result<&Raft, Status> {
        self.rafts.get(message.shard as usize).ok_or_else(|| {
            Status::invalid_argument(format!(
                "this node has {} shard(s) and no shard {}: every node of a cluster must be \
                 started with the same --shards",
                self.rafts.len(),
                message.shard
            ))
        })
    }
}

fn bad_request(what: &str, error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("undecodable {what}: {error}"))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage {
        json,
        entries: Vec::new(),
        data: Vec::new(),
        shard: 0,
    }))
}

#[tonic::async_trait]
impl RaftService for RaftRpc {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let raft = self.raft(&message)?;
        let meta: AppendMeta =
            serde_json::from_slice(&message.json).map_err(|e| bad_request("append", e))?;
        let mut entries = Vec::with_capacity(message.entries.len());
        for bytes in &message.entries {
            entries.push(codec::decode_entry(bytes).map_err(|e| bad_request("entry", e))?);
        }
        let rpc = AppendEntriesRequest::<TypeConfig> {
            vote: meta.vote,
            prev_log_id: meta.prev_log_id,
            leader_commit: meta.leader_commit,
            entries,
        };
        reply(&raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let raft = self.raft(&message)?;
        let rpc: VoteRequest<NodeId> =
            serde_json::from_slice(&message.json).map_err(|e| bad_request("vote", e))?;
        reply(&raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let raft = self.raft(&message)?;
        let meta: SnapshotChunkMeta =
            serde_json::from_slice(&message.json).map_err(|e| bad_request("snapshot", e))?;
        let rpc = InstallSnapshotRequest::<TypeConfig> {
            vote: meta.vote,
            meta: meta.meta,
            offset: meta.offset,
            data: message.data,
            done: meta.done,
        };
        reply(&raft.install_snapshot(rpc).await)
    }
}
