//! The history: every operation a client, a worker or the nemesis performed, as a
//! Jepsen-shaped JSONL file (`history.jsonl`), one [`Op`] per line.
//!
//! An operation is recorded twice: an `invoke` when it is sent, then its completion with
//! the same `process` and `f`: `ok` (it happened), `fail` (it certainly did not happen:
//! the server refused it with a definite error such as INVALID_ARGUMENT, NOT_FOUND,
//! ALREADY_EXISTS, FAILED_PRECONDITION) or `info` (unknown: a timeout, UNAVAILABLE, a reset
//! connection; it may or may not have happened). Checkers treat `info` as *maybe*, never as
//! *no*. Nemesis actions are recorded with `process` = [`NEMESIS_PROCESS`] and `f` =
//! `"nemesis"`.

use serde::{Deserialize, Serialize};

/// The `process` of nemesis operations.
pub const NEMESIS_PROCESS: u64 = u64::MAX;

/// Invocation or completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of the history.
///
/// `f` and the shape of `value` (a JSON object):
///
/// | f | invoke value | ok value |
/// |---|---|---|
/// | `start` | `{instance_id, workload, name, input, start_at_ns?}` | same |
/// | `raise` | `{instance_id, event_name, payload, seq}` (payload is the JSON text sent; `seq` counts a sender's raises from 1, retries of one raise keep it) | same |
/// | `terminate` / `suspend` / `resume` / `purge` | `{instance_id}` | same (purge: `{instance_id, deleted}`) |
/// | `status` | `{instance_id}` | `{instance_id, status, output?, execution_id}` (status: `RUNNING`, `COMPLETED`, `FAILED`, `TERMINATED`, `PENDING`, `SUSPENDED`, `NOT_FOUND`) |
/// | `history` | `{instance_id}` | `{instance_id, events: [Event]}` |
/// | `nemesis` | `{name, action, targets}` | `{name, action, targets, outcome}` (`installed`, `skipped` or `indeterminate`; `fail`/`info` carry the error) |
/// | `cluster-status` | `{node}` | `{node, term, applied_index, committed_index, last_log_index, snapshot_index, purged_index, state, restarts}` |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0, strictly increasing.
    pub index: u64,
    /// The logical client, worker or nemesis that performed the operation.
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: String,
    pub value: serde_json::Value,
    /// The node (1-based ID) the request went to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// Wall clock of the harness (not of any node), nanoseconds since the Unix epoch.
    pub wall_ns: i128,
    /// Monotonic nanoseconds since the run started.
    pub mono_ns: u64,
    /// For `fail` and `info`: why (the gRPC code and message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A decoded history event, as the checkers see it (from a node's local replica or from a
/// `GetInstanceHistory` read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: i32,
    /// The oneof name in CamelCase: `ExecutionStarted`, `TaskScheduled`, `TaskCompleted`,
    /// `TaskFailed`, `TimerCreated`, `TimerFired`, `EventRaised`, `ExecutionCompleted`,
    /// `ExecutionTerminated`, `OrchestratorStarted`, `OrchestratorCompleted`,
    /// `SubOrchestrationInstanceCreated`, `SubOrchestrationInstanceCompleted`,
    /// `SubOrchestrationInstanceFailed`, `ContinueAsNew`, `ExecutionSuspended`,
    /// `ExecutionResumed`, `EventSent`, `ExecutionStalled`, or `Other`.
    pub kind: String,
    /// The event's timestamp (for `TimerFired`: the leader time of the firing entry), ns.
    pub timestamp_ns: i128,
    /// `TaskCompleted`/`TaskFailed`: taskScheduledId; `TimerFired`: timerId;
    /// `SubOrchestrationInstanceCompleted`/`Failed`: taskScheduledId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_id: Option<i32>,
    /// Activity name (TaskScheduled), event name (EventRaised), workflow name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TimerCreated` / `TimerFired`: the due time, ns since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_at_ns: Option<i128>,
    /// Input, result or event payload text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Hex FNV-1a 64 of the event's encoded bytes: equal digests mean identical events.
    pub digest: String,
}
