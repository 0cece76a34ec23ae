//! Samples every node's Raft indexes (Admin ClusterStatus, asked directly, not through a
//! proxy) every couple of seconds into the history as `cluster-status` operations, so
//! that P14 can check `purged ≤ snapshot ≤ applied ≤ committed ≤ last_log` and that term
//! and indexes never go backwards across restarts.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::history::OpType;
use crate::recorder::Recorder;
use crate::rpc;

/// Pause between two samples of one node.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// History `process` of the sampler of slot 0 (slot i is `SAMPLER_PROCESS_BASE + i`).
pub const SAMPLER_PROCESS_BASE: u64 = 1_000;

/// Spawns one sampler per slot; they end when `stop` turns true.
pub fn spawn(
    cluster: Arc<Cluster>,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..cluster.len())
        .map(|slot| {
            tokio::spawn(sample(
                cluster.clone(),
                recorder.clone(),
                slot,
                stop.clone(),
            ))
        })
        .collect()
}

async fn sample(
    cluster: Arc<Cluster>,
    recorder: Arc<Recorder>,
    slot: usize,
    mut stop: watch::Receiver<bool>,
) {
    let process = SAMPLER_PROCESS_BASE + slot as u64;
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if !cluster.is_running(slot) {
            continue;
        }
        sample_once(&cluster, &recorder, slot, process).await;
    }
}

/// One `cluster-status` invoke and completion for `slot`.
pub async fn sample_once(cluster: &Cluster, recorder: &Recorder, slot: usize, process: u64) {
    let node = cluster.node_id(slot);
    recorder.invoke(
        process,
        "cluster-status",
        json!({ "node": node }),
        Some(node),
    );
    match cluster.status(slot).await {
        Ok(s) => {
            let value = json!({
                "node": s.node_id, "term": s.term, "applied_index": s.applied_index,
                "committed_index": s.committed_index, "last_log_index": s.last_log_index,
                "snapshot_index": s.snapshot_index, "purged_index": s.purged_index,
                "state": s.state, "restarts": cluster.restarts(slot),
                "leader_id": s.leader_id,
            });
            recorder.record(
                process,
                OpType::Ok,
                "cluster-status",
                value,
                Some(node),
                None,
            );
        }
        Err(status) => {
            let kind = match rpc::classify(&status) {
                OpType::Fail => OpType::Fail,
                _ => OpType::Info,
            };
            let value = json!({ "node": node });
            recorder.record(
                process,
                kind,
                "cluster-status",
                value,
                Some(node),
                Some(rpc::describe(&status)),
            );
        }
    }
}
