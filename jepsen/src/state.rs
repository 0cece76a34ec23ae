//! What the checkers read besides the history: each node's local replica at the end of a
//! run, the index samples taken during it, and the witness log of activity executions.
//! Stored as `final_state.json` and `witness.jsonl` in the run's directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::Event;

/// One activity execution, appended (and fsynced) by the test worker before it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessEntry {
    pub instance_id: String,
    pub task_id: i32,
    /// The completion token of the dispatch this execution answered (unique per dispatch).
    pub attempt: String,
    pub name: String,
    /// The result the worker returned (JSON text); includes `attempt`, so a recorded
    /// result names the execution that produced it.
    pub output: String,
    /// Harness wall clock when the execution ran, ns since the epoch.
    pub wall_ns: i128,
}

/// One instance as one node's replica holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInstance {
    pub instance_id: String,
    pub name: String,
    /// `RUNNING`, `COMPLETED`, `FAILED`, `TERMINATED`, `PENDING`, `SUSPENDED`, ...
    pub status: String,
    pub execution_id: String,
    #[serde(default)]
    pub output: Option<String>,
    pub history: Vec<Event>,
    pub inbox_len: u64,
    pub pending_activities: u64,
}

/// One node's state at the end of the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub node_id: u64,
    /// `None` when the node could not be read (then checkers that need it say unknown).
    pub applied_index: Option<u64>,
    pub instances: BTreeMap<String, NodeInstance>,
    /// Why the node could not be read, if it could not.
    #[serde(default)]
    pub error: Option<String>,
}

/// Everything read after the heal phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalState {
    pub nodes: Vec<NodeState>,
    /// Largest clock skew the nemesis injected on any node, ms (for P6's harness bound).
    pub max_skew_ms: i64,
    /// Whether every node's applied index was equal when read (P4 compares only then).
    pub converged: bool,
    /// Seconds from the end of the last fault until every acknowledged instance was
    /// terminal (None: not all were within the drain limit).
    pub drain_secs: Option<f64>,
    /// Per node: seconds from the end of the last fault until a new start succeeded through
    /// that node (None: none did within the limit).
    pub new_start_secs: BTreeMap<u64, Option<f64>>,
}
