//! Builders of synthetic histories, events, replicas and witness entries for the checkers'
//! unit tests, so that each test states only what it is about.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Input, PropertyResult, Verdict};
use crate::history::{Event, Op, OpType, NEMESIS_PROCESS};
use crate::state::{FinalState, NodeInstance, NodeState, WitnessEntry};

/// A history under construction; indexes and clocks advance by one per op.
#[derive(Default)]
pub struct Hist {
    pub ops: Vec<Op>,
}

impl Hist {
    /// Appends one op; its index.
    pub fn op(&mut self, process: u64, kind: OpType, f: &str, value: Value) -> u64 {
        let index = self.ops.len() as u64;
        self.ops.push(Op {
            index,
            process,
            kind,
            f: f.into(),
            value,
            node: None,
            wall_ns: index as i128 * 1_000,
            mono_ns: index,
            error: None,
        });
        index
    }

    pub fn invoke(&mut self, process: u64, f: &str, value: Value) -> u64 {
        self.op(process, OpType::Invoke, f, value)
    }

    pub fn complete(&mut self, process: u64, kind: OpType, f: &str, value: Value) -> u64 {
        self.op(process, kind, f, value)
    }

    /// An invoke immediately followed by its completion; the completion's index.
    pub fn call(&mut self, process: u64, kind: OpType, f: &str, value: Value) -> u64 {
        self.invoke(process, f, value.clone());
        self.complete(process, kind, f, value)
    }

    pub fn start(&mut self, process: u64, kind: OpType, id: &str) -> u64 {
        self.call(process, kind, "start", start_value(id))
    }

    pub fn status(
        &mut self,
        process: u64,
        id: &str,
        status: &str,
        execution: &str,
        output: Option<&str>,
    ) -> u64 {
        let mut value = json!({ "instance_id": id, "status": status, "execution_id": execution });
        if let Some(output) = output {
            value["output"] = json!(output);
        }
        self.invoke(process, "status", json!({ "instance_id": id }));
        self.complete(process, OpType::Ok, "status", value)
    }

    pub fn control(&mut self, process: u64, kind: OpType, f: &str, id: &str) -> u64 {
        let value = if f == "purge" {
            json!({ "instance_id": id, "deleted": 1 })
        } else {
            json!({ "instance_id": id })
        };
        self.call(process, kind, f, value)
    }

    pub fn nemesis_invoke(&mut self, name: &str, action: &str, targets: &[u64]) -> u64 {
        let value = json!({ "name": name, "action": action, "targets": targets });
        self.op(NEMESIS_PROCESS, OpType::Invoke, "nemesis", value)
    }

    pub fn nemesis_done(
        &mut self,
        name: &str,
        action: &str,
        targets: &[u64],
        outcome: &str,
    ) -> u64 {
        let value =
            json!({ "name": name, "action": action, "targets": targets, "outcome": outcome });
        self.op(NEMESIS_PROCESS, OpType::Ok, "nemesis", value)
    }

    /// An installed nemesis action (invoke + done).
    pub fn nemesis(&mut self, name: &str, action: &str, targets: &[u64]) -> u64 {
        self.nemesis_invoke(name, action, targets);
        self.nemesis_done(name, action, targets, "installed")
    }
}

pub fn start_value(id: &str) -> Value {
    json!({ "instance_id": id, "workload": "chain", "name": "chain", "input": "{}" })
}

/// An event whose digest is derived from its fields (equal fields, equal digest).
pub fn ev(event_id: i32, kind: &str) -> Event {
    let mut e = Event {
        event_id,
        kind: kind.into(),
        timestamp_ns: 0,
        scheduled_id: None,
        name: None,
        fire_at_ns: None,
        data: None,
        digest: String::new(),
    };
    redigest(&mut e);
    e
}

/// Recomputes a synthetic event's digest after its fields changed.
pub fn redigest(e: &mut Event) {
    e.digest = format!(
        "{}|{}|{}|{:?}|{:?}|{:?}|{:?}",
        e.event_id, e.kind, e.timestamp_ns, e.scheduled_id, e.name, e.fire_at_ns, e.data
    );
}

fn with(mut e: Event, edit: impl FnOnce(&mut Event)) -> Event {
    edit(&mut e);
    redigest(&mut e);
    e
}

pub fn started(input: &str) -> Event {
    with(ev(-1, "ExecutionStarted"), |e| e.data = Some(input.into()))
}

pub fn orchestrator_started(at_ns: i128) -> Event {
    with(ev(-1, "OrchestratorStarted"), |e| e.timestamp_ns = at_ns)
}

pub fn scheduled(id: i32, name: &str) -> Event {
    with(ev(id, "TaskScheduled"), |e| e.name = Some(name.into()))
}

pub fn task_completed(scheduled_id: i32, result: &str) -> Event {
    with(ev(-1, "TaskCompleted"), |e| {
        e.scheduled_id = Some(scheduled_id);
        e.data = Some(result.into());
    })
}

pub fn timer_created(id: i32, fire_at_ns: i128) -> Event {
    with(ev(id, "TimerCreated"), |e| e.fire_at_ns = Some(fire_at_ns))
}

pub fn timer_fired(timer_id: i32, fire_at_ns: i128, at_ns: i128) -> Event {
    with(ev(-1, "TimerFired"), |e| {
        e.scheduled_id = Some(timer_id);
        e.fire_at_ns = Some(fire_at_ns);
        e.timestamp_ns = at_ns;
    })
}

pub fn raised(name: &str, seq: u64, sender: u64) -> Event {
    with(ev(-1, "EventRaised"), |e| {
        e.name = Some(name.into());
        e.data = Some(json!({ "seq": seq, "sender": sender }).to_string());
    })
}

pub fn completed(id: i32, output: &str) -> Event {
    with(ev(id, "ExecutionCompleted"), |e| {
        e.data = Some(output.into())
    })
}

pub fn terminated() -> Event {
    ev(-1, "ExecutionTerminated")
}

pub fn instance(id: &str, status: &str, history: Vec<Event>) -> NodeInstance {
    NodeInstance {
        instance_id: id.into(),
        name: "chain".into(),
        status: status.into(),
        execution_id: format!("{id}-e1"),
        output: None,
        history,
        inbox_len: 0,
        pending_activities: 0,
    }
}

pub fn node(node_id: u64, applied: Option<u64>, instances: Vec<NodeInstance>) -> NodeState {
    NodeState {
        node_id,
        applied_index: applied,
        instances: instances
            .into_iter()
            .map(|i| (i.instance_id.clone(), i))
            .collect(),
        error: None,
    }
}

/// A final state; converged when every node is readable at the same applied index.
pub fn state(nodes: Vec<NodeState>) -> FinalState {
    let first = nodes.first().and_then(|n| n.applied_index);
    let converged = first.is_some() && nodes.iter().all(|n| n.applied_index == first);
    FinalState {
        new_start_secs: nodes
            .iter()
            .map(|n| (n.node_id, Some(1.0)))
            .collect::<BTreeMap<_, _>>(),
        nodes,
        max_skew_ms: 0,
        converged,
        drain_secs: Some(1.0),
    }
}

/// The same instances on three nodes at applied index 10.
pub fn three(instances: Vec<NodeInstance>) -> FinalState {
    state(
        (1..=3)
            .map(|n| node(n, Some(10), instances.clone()))
            .collect(),
    )
}

pub fn witness(
    instance_id: &str,
    task_id: i32,
    attempt: &str,
    output: &str,
    wall_ns: i128,
) -> WitnessEntry {
    WitnessEntry {
        instance_id: instance_id.into(),
        task_id,
        attempt: attempt.into(),
        name: "step".into(),
        output: output.into(),
        wall_ns,
    }
}

/// Runs `check` over the parts.
pub fn run(
    check: fn(&Input<'_>) -> PropertyResult,
    history: &[Op],
    state: &FinalState,
    witness: &[WitnessEntry],
) -> PropertyResult {
    check(&Input {
        history,
        state,
        witness,
    })
}

pub fn is_true(r: &PropertyResult) -> bool {
    r.verdict == Verdict::True
}

pub fn is_unknown(r: &PropertyResult) -> bool {
    matches!(r.verdict, Verdict::Unknown { .. })
}

/// The violations, empty unless the verdict is false.
pub fn violations(r: &PropertyResult) -> Vec<String> {
    match &r.verdict {
        Verdict::False { violations } => violations.clone(),
        _ => Vec::new(),
    }
}
