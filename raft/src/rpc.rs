//! The server side of the Raft network: decodes peers' RPCs and hands them to openraft.

use endure_proto::endure::internal::raft_service_server::RaftService;
use endure_proto::endure::internal::RaftMessage;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::codec;
use crate::network::{AppendMeta, SnapshotChunkMeta};
use crate::types::{NodeId, Raft, TypeConfig};

/// Serves `RaftService` for one Raft group.
#[derive(Clone)]
pub struct RaftRpc {
    pub raft: Raft,
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
    }))
}

#[tonic::async_trait]
impl RaftService for RaftRpc {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
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
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = serde_json::from_slice(&request.into_inner().json)
            .map_err(|e| bad_request("vote", e))?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let meta: SnapshotChunkMeta =
            serde_json::from_slice(&message.json).map_err(|e| bad_request("snapshot", e))?;
        let rpc = InstallSnapshotRequest::<TypeConfig> {
            vote: meta.vote,
            meta: meta.meta,
            offset: meta.offset,
            data: message.data,
            done: meta.done,
        };
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
