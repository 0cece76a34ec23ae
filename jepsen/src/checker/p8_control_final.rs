//! P8: control operations are durable and final.
//!
//! Checked on every readable node (a node that has applied less than another may not
//! have applied the operation yet, so what it shows is undecided, not a violation):
//! - **Terminate.** After an `ok` terminate the instance is terminal (it may already have
//!   completed or failed on its own). In every history, no `TaskScheduled` or
//!   `TimerCreated` follows an `ExecutionTerminated`.
//! - **Purge.** After an `ok` purge that deleted something, the instance is absent on every
//!   node: no record, so no history, timers or pending dispatch either.
//! - **Suspend.** After an `ok` suspend that no resume may have followed, the instance is
//!   `SUSPENDED` or terminal.
//!
//! Each rule is waived when a later operation may explain the state: a start (not failed)
//! that may have been applied after the control operation (ID reuse), a purge after a
//! terminate or suspend, a resume after a suspend. "May have been applied after X" means
//! it did not complete before X was invoked; ambiguous operations always may.
//!
//! Out of reach: that suspension blocks scheduling *during* the suspension (the suspend and
//! resume events reach the history together, in the first turn after the resume, so the
//! history shows no suspended interval), and timers or activity dispatches kept outside
//! the instance record (the node state does not expose them).

use serde_json::json;

use super::{
    blame, index, is_terminal, on_instance, operations, purge_may_follow, readable_nodes, result,
    u64_field, verdict, Index, Input, Operation, PropertyResult, Verdict,
};
use crate::state::{NodeInstance, NodeState};

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "control operations durable and final";
    let nodes = readable_nodes(input.state);
    let ops = operations(input.history);
    let by_instance = index(&ops);
    let controls = ops
        .iter()
        .filter(|op| op.is_ok() && matches!(op.f(), "terminate" | "purge" | "suspend"));
    let mut violations = Vec::new();
    let mut undecided = Vec::new();
    let mut checked = 0u64;
    for control in controls {
        let Some(id) = control.instance_id() else {
            continue;
        };
        if control.f() == "purge" && u64_field(control.value(), "deleted").unwrap_or(0) == 0 {
            continue;
        }
        if waived(&by_instance, control, id) {
            continue;
        }
        checked += 1;
        for node in &nodes {
            let Some(problem) = final_problem(control.f(), node.instances.get(id)) else {
                continue;
            };
            let text = format!(
                "{id}: {problem} on node {} after the {} acked at #{}",
                node.node_id,
                control.f(),
                control.end()
            );
            blame(node, input.state, text, &mut violations, &mut undecided);
        }
    }
    for node in &nodes {
        violations.extend(scheduled_after_termination(node));
    }
    let mut stats = serde_json::Map::new();
    stats.insert("checked_control_ops".into(), json!(checked));
    if nodes.is_empty() {
        let reason = "no node's final state could be read".to_string();
        return result("P8", name, Verdict::Unknown { reason }, stats);
    }
    result("P8", name, verdict(violations, undecided), stats)
}

/// Whether a later operation may explain any final state.
fn waived(by_instance: &Index<'_>, control: &Operation<'_>, id: &str) -> bool {
    let after = |f: &str| {
        on_instance(by_instance, f, id)
            .iter()
            .any(|o| !o.is_fail() && o.end() > control.start())
    };
    let restarted = after("start");
    match control.f() {
        "purge" => restarted,
        "terminate" => restarted || purge_may_follow(by_instance, id, control.start()),
        _ => restarted || after("resume") || purge_may_follow(by_instance, id, control.start()),
    }
}

/// What is wrong with the instance's final state after the control operation `f`.
fn final_problem(f: &str, instance: Option<&NodeInstance>) -> Option<String> {
    match (f, instance) {
        ("purge", Some(i)) => Some(format!("still present ({})", i.status)),
        ("purge", None) => None,
        (_, None) => Some("absent".into()),
        ("terminate", Some(i)) if !is_terminal(&i.status) => Some(format!("status {}", i.status)),
        ("suspend", Some(i)) if i.status != "SUSPENDED" && !is_terminal(&i.status) => {
            Some(format!("status {}", i.status))
        }
        _ => None,
    }
}

/// New work scheduled after a termination, in any history on this node.
fn scheduled_after_termination(node: &NodeState) -> Vec<String> {
    let mut out = Vec::new();
    for instance in node.instances.values() {
        let Some(at) = instance
            .history
            .iter()
            .position(|e| e.kind == "ExecutionTerminated")
        else {
            continue;
        };
        let late = instance.history[at..]
            .iter()
            .filter(|e| matches!(e.kind.as_str(), "TaskScheduled" | "TimerCreated"));
        for event in late {
            out.push(format!(
                "{} on node {}: {} {} after ExecutionTerminated",
                instance.instance_id, node.node_id, event.kind, event.event_id
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::history::OpType;

    #[test]
    fn control_effects_in_place_pass() {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "t");
        h.control(1, OpType::Ok, "terminate", "t");
        h.start(1, OpType::Ok, "p");
        h.control(1, OpType::Ok, "purge", "p");
        h.start(1, OpType::Ok, "s");
        h.control(1, OpType::Ok, "suspend", "s");
        h.start(1, OpType::Ok, "r");
        h.control(1, OpType::Ok, "suspend", "r");
        h.control(1, OpType::Info, "resume", "r");
        let t = instance(
            "t",
            "TERMINATED",
            vec![
                started("{}"),
                scheduled(1, "x"),
                terminated(),
                completed(-1, ""),
            ],
        );
        let s = three(vec![
            t,
            instance("s", "SUSPENDED", vec![]),
            instance("r", "RUNNING", vec![]),
        ]);
        let r = run(check, &h.ops, &s, &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["checked_control_ops"], json!(3));
    }

    #[test]
    fn undone_controls_are_caught() {
        let mut h = Hist::default();
        h.control(1, OpType::Ok, "terminate", "t");
        h.control(1, OpType::Ok, "purge", "p");
        h.control(1, OpType::Ok, "suspend", "s");
        let late = instance(
            "x",
            "TERMINATED",
            vec![
                started("{}"),
                terminated(),
                scheduled(1, "x"),
                completed(-1, ""),
            ],
        );
        let running = |id: &str| instance(id, "RUNNING", vec![]);
        let s = three(vec![
            running("t"),
            instance("p", "COMPLETED", vec![]),
            running("s"),
            late,
        ]);
        let v = violations(&run(check, &h.ops, &s, &[]));
        assert_eq!(v.len(), 12, "{v:?}");
    }

    #[test]
    fn later_start_waives_purge_and_lagging_node_is_unknown() {
        let mut h = Hist::default();
        h.control(1, OpType::Ok, "purge", "p");
        h.start(1, OpType::Info, "p");
        assert!(is_true(&run(
            check,
            &h.ops,
            &three(vec![instance("p", "RUNNING", vec![])]),
            &[]
        )));
        let mut h = Hist::default();
        h.control(1, OpType::Ok, "purge", "p");
        let mut s = three(vec![]);
        s.nodes[0].applied_index = Some(9);
        s.nodes[0]
            .instances
            .insert("p".into(), instance("p", "COMPLETED", vec![]));
        assert!(is_unknown(&run(check, &h.ops, &s, &[])));
    }
}
