//! Operations routes: Dapr's health and metadata endpoints (SDKs probe them before calling
//! the workflow API), liveness and readiness for orchestrators such as Kubernetes,
//! Prometheus metrics, and the Raft cluster as this node sees it.

use std::collections::BTreeMap;

use hyper::StatusCode;
use serde::Serialize;

use super::errors::ApiError;
use super::{empty_response, json_response, text_response, HttpState, Response};

/// The Prometheus text exposition format, version 0.0.4.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /v1.0/healthz`: Dapr answers 204 when the sidecar is up.
pub fn dapr_health() -> Response {
    empty_response(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/metadata`: enough of Dapr's metadata for SDK health checks (the JS SDK only
/// waits for a 200).
pub fn dapr_metadata() -> Response {
    let body = serde_json::json!({
        "id": "endure",
        "runtimeVersion": env!("CARGO_PKG_VERSION"),
        "enabledFeatures": [],
        "extended": {},
    });
    json_response(StatusCode::OK, &body)
}

/// `GET /healthz`: the process runs and serves HTTP; says nothing about Raft.
pub fn live() -> Response {
    text_response(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        "ok".to_string(),
    )
}

/// `GET /readyz`: ready when workflow requests can be served (or, in a cluster, forwarded)
/// now; otherwise 503 with the reason (starting, no leader yet, shutting down).
pub fn ready(state: &HttpState) -> Result<Response, ApiError> {
    match state.workflows.not_ready() {
        None => Ok(text_response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok".to_string(),
        )),
        Some(reason) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ERR_NOT_READY",
            reason,
        )),
    }
}

/// `GET /metrics`: the Prometheus exposition of every metric the node records.
pub fn metrics(state: &HttpState) -> Response {
    text_response(
        StatusCode::OK,
        PROMETHEUS_CONTENT_TYPE,
        (state.render_metrics)(),
    )
}

/// One member of the cluster, as `/cluster/status` lists it.
#[derive(Debug, Serialize)]
struct Member {
    id: u64,
    address: String,
    /// `voter` or `learner`.
    role: String,
    /// On the leader: the highest log index this member is known to hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_index: Option<u64>,
}

/// `/cluster/status` body: the same facts as the gRPC `Admin.ClusterStatus`, for curl.
#[derive(Debug, Serialize)]
struct ClusterStatusBody {
    node_id: u64,
    /// `null` while no leader is known.
    leader_id: Option<u64>,
    term: u64,
    members: Vec<Member>,
    last_log_index: u64,
    committed_index: u64,
    applied_index: u64,
    /// Raft state: `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    state: String,
    /// Last log index covered by this node's snapshot (0: none).
    snapshot_index: u64,
    /// Log purged up to this index (0: none).
    purged_index: u64,
    /// Every shard's Raft group; the fields above are shard 0's.
    shards: Vec<ShardBody>,
}

/// One shard in `/cluster/status`.
#[derive(Debug, Serialize)]
struct ShardBody {
    shard: u32,
    leader_id: Option<u64>,
    /// Where placement puts this shard's leadership when every voter is up.
    preferred_leader: u64,
    term: u64,
    state: String,
    last_log_index: u64,
    committed_index: u64,
    applied_index: u64,
    snapshot_index: u64,
    purged_index: u64,
    /// On the shard's leader: how many entries each member is behind it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    lag: BTreeMap<u64, u64>,
}

/// `GET /cluster/status`: this node's Raft view as JSON.
pub fn cluster_status(state: &HttpState) -> Response {
    let status = crate::grpc::admin::cluster_status(&state.shards);
    let body = ClusterStatusBody {
        node_id: status.node_id,
        leader_id: status.leader_id,
        term: status.term,
        members: status
            .members
            .into_iter()
            .map(|member| Member {
                id: member.node_id,
                address: member.address,
                role: member.role,
                matched_index: member.matched_index,
            })
            .collect(),
        last_log_index: status.last_log_index,
        committed_index: status.committed_index,
        applied_index: status.applied_index,
        state: status.state,
        snapshot_index: status.snapshot_index,
        purged_index: status.purged_index,
        shards: status
            .shards
            .into_iter()
            .map(|shard| ShardBody {
                shard: shard.shard,
                leader_id: shard.leader_id,
                preferred_leader: shard.preferred_leader,
                term: shard.term,
                lag: shard
                    .members
                    .iter()
                    .filter_map(|member| {
                        let matched = member.matched_index?;
                        Some((member.node_id, shard.last_log_index.saturating_sub(matched)))
                    })
                    .collect(),
                state: shard.state,
                last_log_index: shard.last_log_index,
                committed_index: shard.committed_index,
                applied_index: shard.applied_index,
                snapshot_index: shard.snapshot_index,
                purged_index: shard.purged_index,
            })
            .collect(),
    };
    json_response(StatusCode::OK, &body)
}
