//! Metrics (Prometheus text exposition through the `metrics` facade) and the tasks that
//! keep the gauges current. Every name has the `endure_` prefix and its unit last; label
//! values are bounded: workflow names are capped, instance IDs are never labels.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use endure_engine::Effect;
use endure_proto::OrchestrationStatus;
use endure_raft::node::Node;
use endure_storage::Store;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::sync::LockExt;

/// Distinct workflow names used as label values; later names are reported as "other".
pub const MAX_WORKFLOW_LABELS: usize = 200;
/// Histogram buckets for latencies, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];
/// How often gauges read from Raft and the tables are refreshed.
const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// Installs the global recorder; returns the handle that renders `/metrics`.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_string()),
            &LATENCY_BUCKETS_SECONDS,
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(
        "endure_workflows_started_total",
        "Workflow instances created, by workflow name."
    );
    describe_counter!(
        "endure_workflows_completed_total",
        "Workflow instances that ended, by workflow name and final status."
    );
    describe_gauge!("endure_instances", "Workflow instances by current status.");
    describe_histogram!(
        "endure_turn_duration_seconds",
        Unit::Seconds,
        "Time from dispatching a turn to committing its answer."
    );
    describe_histogram!(
        "endure_activity_duration_seconds",
        Unit::Seconds,
        "Time from dispatching an activity to committing its result."
    );
    describe_gauge!(
        "endure_work_items_queued",
        "Ready work items waiting for a free worker, by kind."
    );
    describe_gauge!(
        "endure_work_items_in_flight",
        "Work items sent to workers and not yet answered, by kind."
    );
    describe_gauge!(
        "endure_workers_connected",
        "Open GetWorkItems streams on this node."
    );
    describe_counter!(
        "endure_stale_completions_total",
        "Worker answers refused because they no longer matched (fenced), by kind."
    );
    describe_counter!(
        "endure_turns_too_large_total",
        "Turns over the size a worker accepts; their instances were stalled."
    );
    describe_gauge!(
        "endure_timers_pending",
        "Durable timers armed (RocksDB's estimate)."
    );
    describe_histogram!(
        "endure_timer_lateness_seconds",
        Unit::Seconds,
        "How long after its due time a timer was fired."
    );
    describe_counter!(
        "endure_history_events_appended_total",
        "History events appended by applied commands."
    );
    describe_gauge!("endure_raft_term", "Current Raft term.");
    describe_gauge!(
        "endure_raft_role",
        "1 for this node's current Raft role, 0 otherwise."
    );
    describe_gauge!(
        "endure_raft_commit_index",
        "Highest Raft log index known committed."
    );
    describe_gauge!(
        "endure_raft_applied_index",
        "Highest Raft log index applied to the state machine."
    );
    describe_gauge!(
        "endure_raft_last_log_index",
        "Highest Raft log index stored."
    );
    describe_counter!(
        "endure_raft_leader_changes_total",
        "Times this node saw the leader change."
    );
    describe_gauge!(
        "endure_raft_replication_lag_entries",
        "On the leader: log entries a follower is behind."
    );
    describe_histogram!(
        "endure_raft_append_seconds",
        Unit::Seconds,
        "Raft log append including its fsync."
    );
    describe_counter!(
        "endure_grpc_requests_total",
        "gRPC requests by method and status code."
    );
    describe_histogram!(
        "endure_grpc_request_duration_seconds",
        Unit::Seconds,
        "gRPC request latency by method."
    );
    describe_counter!(
        "endure_http_requests_total",
        "HTTP requests by route and status code."
    );
    describe_histogram!(
        "endure_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route."
    );
}

/// The label value for a workflow name: the name itself for the first
/// [`MAX_WORKFLOW_LABELS`] names seen, "other" after that.
pub fn workflow_label(name: &str) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .expect("lock poisoned");
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

/// Keeps lifecycle counters and instance gauges in step with applied commands, and the
/// Raft and timer gauges fresh. Runs until shutdown.
pub async fn run(node: Node, handle: PrometheusHandle, mut shutdown: watch::Receiver<bool>) {
    let mut effects = node.shared.subscribe();
    let mut installs = node.shared.snapshot_installs();
    let counts = Arc::new(Mutex::new(count_instances(&node)));
    publish_counts(&counts.lock_or_die());
    let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
    let mut last_leader = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = refresh.tick() => {
                handle.run_upkeep();
                last_leader = refresh_raft(&node, last_leader);
                if let Ok(Some(estimate)) = node.store.estimate_timers() {
                    gauge!("endure_timers_pending").set(estimate as f64);
                }
            }
            received = effects.recv() => match received {
                Ok(batch) => record_transitions(&batch, &counts),
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
    publish_counts(&counts);
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

fn publish_counts(counts: &Counts) {
    for status in 0..=8 {
        let value = counts.get(&status).copied().unwrap_or(0);
        gauge!("endure_instances", "status" => status_name(status)).set(value as f64);
    }
}

fn record_transitions(batch: &[Effect], counts: &Mutex<Counts>) {
    let mut counts = counts.lock_or_die();
    for effect in batch {
        let Effect::StatusChanged { name, from, to, .. } = effect else {
            continue;
        };
        let workflow = workflow_label(name);
        if from.is_none() {
            counter!("endure_workflows_started_total", "workflow" => workflow.clone()).increment(1);
        }
        if let Some(to) = to.filter(|to| is_final(*to) && !from.is_some_and(is_final)) {
            counter!("endure_workflows_completed_total", "workflow" => workflow, "status" => status_name(to)).increment(1);
        }
        for (status, delta) in [(from, -1), (to, 1)] {
            if let Some(status) = status {
                *counts.entry(*status).or_default() += delta;
                let value = counts[status];
                gauge!("endure_instances", "status" => status_name(*status)).set(value as f64);
            }
        }
    }
}

/// Publishes Raft gauges; returns the leader seen, to count changes.
fn refresh_raft(node: &Node, last_leader: Option<u64>) -> Option<u64> {
    let status = crate::admin::cluster_status(node);
    gauge!("endure_raft_term").set(status.term as f64);
    gauge!("endure_raft_commit_index").set(status.committed_index as f64);
    gauge!("endure_raft_applied_index").set(status.applied_index as f64);
    gauge!("endure_raft_last_log_index").set(status.last_log_index as f64);
    for role in ["Leader", "Follower", "Candidate", "Learner", "Shutdown"] {
        let value = if status.state == role { 1.0 } else { 0.0 };
        gauge!("endure_raft_role", "role" => role.to_lowercase()).set(value);
    }
    let is_leader = status.state == "Leader";
    for member in &status.members {
        if member.node_id == status.node_id {
            continue;
        }
        // Only the leader knows how far each follower got; elsewhere the gauge reads 0.
        let lag = match (is_leader, member.matched_index) {
            (true, Some(matched)) => status.last_log_index.saturating_sub(matched),
            _ => 0,
        };
        gauge!("endure_raft_replication_lag_entries", "follower" => member.node_id.to_string())
            .set(lag as f64);
    }
    if status.leader_id != last_leader && last_leader.is_some() {
        counter!("endure_raft_leader_changes_total").increment(1);
    }
    status.leader_id
}
