//! Metrics (Prometheus text exposition through the `metrics` facade) and the tasks that
//! keep the gauges current. Every name has the `endure_` prefix and its unit last; label
//! values are bounded: workflow names are capped, instance IDs are never labels.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use endure_engine::Effect;
use endure_proto::OrchestrationStatus;
use endure_raft::node::Node;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::sync::LockExt;

pub mod names;

/// Distinct workflow names used as label values; later names are reported as "other".
pub const MAX_WORKFLOW_LABELS: usize = 200;
/// Histogram buckets for latencies, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];
/// How often gauges read from Raft and the tables are refreshed.
const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// Installs the global recorder once per process (tests run several nodes in one process)
/// and returns the handle that renders `/metrics`.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = HANDLE.lock_or_die();
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_string()),
            &LATENCY_BUCKETS_SECONDS,
        )?
        .install_recorder()?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    for (name, kind, help) in names::ALL {
        match kind {
            names::Kind::Counter => describe_counter!(*name, *help),
            names::Kind::Gauge => describe_gauge!(*name, *help),
            names::Kind::Seconds => describe_histogram!(*name, Unit::Seconds, *help),
        }
    }
}

/// The label value for a workflow name: the name itself for the first
/// [`MAX_WORKFLOW_LABELS`] names seen, "other" after that.
pub fn workflow_label(name: &str) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN.get_or_init(Default::default).lock_or_die();
    if seen.contains(name) {
        return name.to_string();
    }
    if seen.len() < MAX_WORKFLOW_LABELS {
        seen.insert(name.to_string());
        return name.to_string();
    }
    "other".to_string()
}

fn status_name(status: i32) -> &'static str {
    OrchestrationStatus::try_from(status)
        .map(|s| s.as_str_name().trim_start_matches("ORCHESTRATION_STATUS_"))
        .unwrap_or("UNKNOWN")
}

fn is_final(status: i32) -> bool {
    endure_engine::lifecycle::is_terminal(status)
}

/// Keeps one shard's lifecycle counters and instance gauges in step with its applied
/// commands, and its Raft and timer gauges fresh (each labelled with the shard). Runs until
/// shutdown.
pub async fn run(node: Node, handle: PrometheusHandle, mut shutdown: watch::Receiver<bool>) {
    let mut effects = node.shared.subscribe();
    let mut installs = node.shared.snapshot_installs();
    let shard = node.shard.to_string();
    let counts = Arc::new(Mutex::new(count_instances(&node)));
    publish_counts(&shard, &counts.lock_or_die());
    let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
    let mut last_leader = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = refresh.tick() => {
                handle.run_upkeep();
                last_leader = refresh_raft(&node, last_leader);
                if let Ok(Some(estimate)) = node.store.estimate_timers() {
                    gauge!(names::TIMERS_PENDING, "shard" => shard.clone()).set(estimate as f64);
                }
            }
            received = effects.recv() => match received {
                Ok(batch) => record_transitions(&shard, &batch, &counts),
                Err(RecvError::Lagged(_)) => recount(&node, &counts),
                Err(RecvError::Closed) => return,
            },
            // A snapshot replaced the tables without effects: count again.
            changed = installs.changed() => match changed {
                Ok(()) => recount(&node, &counts),
                Err(_) => return,
            },
        }
    }
}

type Counts = BTreeMap<i32, i64>;

fn recount(node: &Node, counts: &Mutex<Counts>) {
    let mut counts = counts.lock_or_die();
    *counts = count_instances(node);
    publish_counts(&node.shard.to_string(), &counts);
}

fn count_instances(node: &Node) -> Counts {
    let mut counts = Counts::new();
    let mut after: Option<String> = None;
    loop {
        let page = node
            .store
            .list_instances(after.as_deref(), 1_000)
            .unwrap_or_default();
        for record in &page {
            *counts.entry(record.status).or_default() += 1;
        }
        match page.last() {
            Some(last) if page.len() == 1_000 => after = Some(last.instance_id.clone()),
            _ => return counts,
        }
    }
}

fn publish_counts(shard: &str, counts: &Counts) {
    for status in 0..=8 {
        let value = counts.get(&status).copied().unwrap_or(0);
        gauge!(names::INSTANCES, "status" => status_name(status), "shard" => shard.to_string())
            .set(value as f64);
    }
}

fn record_transitions(shard: &str, batch: &[Effect], counts: &Mutex<Counts>) {
    let mut counts = counts.lock_or_die();
    for effect in batch {
        let Effect::StatusChanged { name, from, to, .. } = effect else {
            continue;
        };
        let workflow = workflow_label(name);
        if from.is_none() {
            counter!(names::WORKFLOWS_STARTED, "workflow" => workflow.clone()).increment(1);
        }
        if let Some(to) = to.filter(|to| is_final(*to) && !from.is_some_and(is_final)) {
            counter!(names::WORKFLOWS_COMPLETED, "workflow" => workflow, "status" => status_name(to)).increment(1);
        }
        for (status, delta) in [(from, -1), (to, 1)] {
            if let Some(status) = status {
                *counts.entry(*status).or_default() += delta;
                let value = counts[status];
                let labels = [
                    ("status", status_name(*status).to_string()),
                    ("shard", shard.to_string()),
                ];
                gauge!(names::INSTANCES, &labels).set(value as f64);
            }
        }
    }
}

/// Publishes Raft gauges; returns the leader seen, to count changes.
fn refresh_raft(node: &Node, last_leader: Option<u64>) -> Option<u64> {
    let status = crate::grpc::admin::shard_status(node, 0);
    let shard = node.shard.to_string();
    gauge!(names::RAFT_TERM, "shard" => shard.clone()).set(status.term as f64);
    gauge!(names::RAFT_COMMIT_INDEX, "shard" => shard.clone()).set(status.committed_index as f64);
    gauge!(names::RAFT_APPLIED_INDEX, "shard" => shard.clone()).set(status.applied_index as f64);
    gauge!(names::RAFT_LAST_LOG_INDEX, "shard" => shard.clone()).set(status.last_log_index as f64);
    for role in ["Leader", "Follower", "Candidate", "Learner", "Shutdown"] {
        let value = if status.state == role { 1.0 } else { 0.0 };
        let labels = [("role", role.to_lowercase()), ("shard", shard.clone())];
        gauge!(names::RAFT_ROLE, &labels).set(value);
    }
    let is_leader = status.state == "Leader";
    for member in &status.members {
        if member.node_id == node.node_id {
            continue;
        }
        // Only the leader knows how far each follower got; elsewhere the gauge reads 0.
        let lag = match (is_leader, member.matched_index) {
            (true, Some(matched)) => status.last_log_index.saturating_sub(matched),
            _ => 0,
        };
        let labels = [
            ("follower", member.node_id.to_string()),
            ("shard", shard.clone()),
        ];
        gauge!(names::RAFT_REPLICATION_LAG, &labels).set(lag as f64);
    }
    if status.leader_id != last_leader && last_leader.is_some() {
        counter!(names::RAFT_LEADER_CHANGES, "shard" => shard).increment(1);
    }
    status.leader_id
}
