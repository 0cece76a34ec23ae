//! Every metric Endure records: its name, kind and help text, in one table. Code records
//! through these constants, so a typo cannot silently create a new metric. Names have the
//! `endure_` prefix and their unit last.

/// What kind of metric a name is, for its description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Latency histograms, in seconds.
    Seconds,
}

macro_rules! metrics_table {
    ($($constant:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $constant: &str = $name;
        )*
        /// Every metric as (name, kind, help).
        pub const ALL: &[(&str, Kind, &str)] = &[$(($name, Kind::$kind, $help)),*];
    };
}

metrics_table! {
    WORKFLOWS_STARTED = "endure_workflows_started_total", Counter,
        "Workflow instances created, by workflow name.";
    WORKFLOWS_COMPLETED = "endure_workflows_completed_total", Counter,
        "Workflow instances that ended, by workflow name and final status.";
    INSTANCES = "endure_instances", Gauge, "Workflow instances by current status.";
    TURN_DURATION = "endure_turn_duration_seconds", Seconds,
        "Time from dispatching a turn to committing its answer.";
    ACTIVITY_DURATION = "endure_activity_duration_seconds", Seconds,
        "Time from dispatching an activity to committing its result.";
    WORK_ITEMS_QUEUED = "endure_work_items_queued", Gauge,
        "Ready work items waiting for a free worker, by kind.";
    WORK_ITEMS_IN_FLIGHT = "endure_work_items_in_flight", Gauge,
        "Work items sent to workers and not yet answered, by kind.";
    WORKERS_CONNECTED = "endure_workers_connected", Gauge,
        "Open GetWorkItems streams on this node.";
    STALE_COMPLETIONS = "endure_stale_completions_total", Counter,
        "Worker answers refused because they no longer matched (fenced), by kind.";
    TURNS_TOO_LARGE = "endure_turns_too_large_total", Counter,
        "Turns over the size a worker accepts; their instances were stalled.";
    REQUESTS_OVERLOADED = "endure_requests_overloaded_total", Counter,
        "Client requests refused because a per-node limit was reached (RESOURCE_EXHAUSTED / 429), by limit.";
    TIMERS_PENDING = "endure_timers_pending", Gauge, "Durable timers armed (RocksDB's estimate).";
    TIMER_LATENESS = "endure_timer_lateness_seconds", Seconds,
        "How long after its due time a timer was fired.";
    OUTBOX_DELIVERED = "endure_outbox_messages_delivered_total", Counter,
        "Messages between instances (child starts and ends, sent events, terminates) delivered from this node's outbox (a repeat after a leader change counts again; the target applies it once).";
    OUTBOX_DELIVERY_FAILURES = "endure_outbox_delivery_failures_total", Counter,
        "Outbox deliveries that failed and were retried.";
    HISTORY_EVENTS_APPENDED = "endure_history_events_appended_total", Counter,
        "History events appended by applied commands.";
    RAFT_TERM = "endure_raft_term", Gauge, "Current Raft term.";
    RAFT_ROLE = "endure_raft_role", Gauge, "1 for this node's current Raft role, 0 otherwise.";
    RAFT_COMMIT_INDEX = "endure_raft_commit_index", Gauge, "Highest Raft log index known committed.";
    RAFT_APPLIED_INDEX = "endure_raft_applied_index", Gauge,
        "Highest Raft log index applied to the state machine.";
    RAFT_LAST_LOG_INDEX = "endure_raft_last_log_index", Gauge, "Highest Raft log index stored.";
    RAFT_LEADER_CHANGES = "endure_raft_leader_changes_total", Counter,
        "Times this node saw the leader change.";
    RAFT_REPLICATION_LAG = "endure_raft_replication_lag_entries", Gauge,
        "On the leader: log entries a follower is behind.";
    RAFT_APPEND = "endure_raft_append_seconds", Seconds,
        "Raft log append, from its write until the group commit's fsync made it durable.";
    RAFT_LOG_SYNCS = "endure_raft_log_syncs_total", Counter,
        "Write-ahead log fsyncs of the group commit (one covers the appends of every shard waiting).";
    RAFT_LOG_APPENDS = "endure_raft_log_appends_total", Counter,
        "Raft log appends made durable by the group commit; divided by the syncs, appends per fsync.";
    RAFT_LOG_SYNC = "endure_raft_log_sync_seconds", Seconds, "One write-ahead log fsync of the group commit.";
    GRPC_REQUESTS = "endure_grpc_requests_total", Counter, "gRPC requests by method and status code.";
    GRPC_REQUEST_DURATION = "endure_grpc_request_duration_seconds", Seconds,
        "gRPC request latency by method.";
    HTTP_REQUESTS = "endure_http_requests_total", Counter, "HTTP requests by route and status code.";
    HTTP_REQUEST_DURATION = "endure_http_request_duration_seconds", Seconds,
        "HTTP request latency by route.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_end_in_their_unit() {
        let mut seen = std::collections::HashSet::new();
        for (name, kind, help) in ALL {
            assert!(seen.insert(*name), "{name} is listed twice");
            assert!(name.starts_with("endure_"), "{name}");
            assert!(!help.is_empty(), "{name} has no help text");
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                Kind::Seconds => assert!(name.ends_with("_seconds"), "{name}"),
                Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
    }

    /// Raft's state machine and group commit record some of these under their own literal
    /// names (the raft crate does not depend on the server): they must stay equal.
    #[test]
    fn the_names_the_raft_crate_records_are_in_the_table() {
        let raft_sources = [
            include_str!("../../../raft/src/state_machine.rs"),
            include_str!("../../../raft/src/group_commit.rs"),
        ]
        .concat();
        for name in [
            HISTORY_EVENTS_APPENDED,
            RAFT_APPEND,
            RAFT_LOG_SYNCS,
            RAFT_LOG_APPENDS,
            RAFT_LOG_SYNC,
        ] {
            assert!(
                raft_sources.contains(&format!("\"{name}\"")),
                "{name} not recorded by raft"
            );
        }
    }
}
