//! P1: no acknowledged start is lost.
//!
//! Checked, for every instance with an `ok` start:
//! - on every readable node's final replica the instance exists and is terminal
//!   (`COMPLETED`, `FAILED`, `TERMINATED`, `CANCELED`), unless a purge may have removed it
//!   after the start (an `ok` purge that completed after the start was invoked, or any
//!   ambiguous purge: it may take effect at any time);
//! - no `ok` status read invoked after the start's ack returned `NOT_FOUND`, unless a purge
//!   may have taken effect before that read completed.
//!
//! A node that has applied less than another may not hold the instance *yet*: its absence
//! or non-terminal status there is undecided (unknown), not a violation. Only `ok` starts
//! count; `info` starts may or may not exist. Out of reach: unreadable nodes (unknown when
//! none is readable), and instances created by workflows rather than by a client start.

use serde_json::json;

use super::{
    blame, index, is_terminal, on_instance, operations, purge_may_follow, readable_nodes, result,
    str_field, verdict, Index, Input, Operation, PropertyResult, Verdict,
};
use crate::state::NodeState;

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "no acknowledged start lost";
    let nodes = readable_nodes(input.state);
    if nodes.is_empty() {
        let reason = "no node's final state could be read".to_string();
        return result("P1", name, Verdict::Unknown { reason }, Default::default());
    }
    let ops = operations(input.history);
    let by_instance = index(&ops);
    let mut violations = Vec::new();
    let mut undecided = Vec::new();
    let mut acked = 0u64;
    let mut excused = 0u64;
    for start in ops.iter().filter(|op| op.f() == "start" && op.is_ok()) {
        let Some(id) = start.instance_id() else {
            continue;
        };
        acked += 1;
        violations.extend(not_found_reads(&by_instance, start, id));
        if purge_may_follow(&by_instance, id, start.start()) {
            excused += 1;
            continue;
        }
        for node in &nodes {
            judge_node(input, node, start, id, &mut violations, &mut undecided);
        }
    }
    let mut stats = serde_json::Map::new();
    stats.insert("acked_starts".into(), json!(acked));
    stats.insert("excused_by_purge".into(), json!(excused));
    stats.insert(
        "unreadable_nodes".into(),
        json!(input.state.nodes.len() - nodes.len()),
    );
    result("P1", name, verdict(violations, undecided), stats)
}

/// The instance on one node: present and terminal, or a violation (caught-up node) or an
/// undecided case (lagging node).
fn judge_node(
    input: &Input<'_>,
    node: &NodeState,
    start: &Operation<'_>,
    id: &str,
    violations: &mut Vec<String>,
    undecided: &mut Vec<String>,
) {
    let problem = match node.instances.get(id) {
        None => "is absent".to_string(),
        Some(instance) if !is_terminal(&instance.status) => format!("is {}", instance.status),
        Some(_) => return,
    };
    let text = format!(
        "{id} (start acked at #{}) {problem} on node {}",
        start.end(),
        node.node_id
    );
    blame(node, input.state, text, violations, undecided);
}

/// `ok` status reads after the ack that found nothing although no purge could explain it.
fn not_found_reads(by_instance: &Index<'_>, start: &Operation<'_>, id: &str) -> Vec<String> {
    on_instance(by_instance, "status", id)
        .iter()
        .filter(|read| read.is_ok() && read.start() > start.end())
        .filter(|read| str_field(read.value(), "status") == Some("NOT_FOUND"))
        .filter(|read| !purge_before(by_instance, id, read.end()))
        .map(|read| {
            format!(
                "{id}: status read #{} returned NOT_FOUND after the start acked at #{}",
                read.end(),
                start.end()
            )
        })
        .collect()
}

/// A purge that did not fail and was invoked before `index`.
fn purge_before(by_instance: &Index<'_>, id: &str, at: u64) -> bool {
    on_instance(by_instance, "purge", id)
        .iter()
        .any(|p| !p.is_fail() && p.start() < at)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::history::OpType;

    #[test]
    fn acked_and_terminal_everywhere_passes() {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "a");
        h.start(2, OpType::Info, "maybe");
        let s = three(vec![instance("a", "COMPLETED", vec![])]);
        let r = run(check, &h.ops, &s, &[]);
        assert!(is_true(&r), "{r:?}");
    }

    #[test]
    fn lost_or_running_start_is_caught() {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "a");
        h.start(1, OpType::Ok, "b");
        let mut s = three(vec![
            instance("a", "COMPLETED", vec![]),
            instance("b", "RUNNING", vec![]),
        ]);
        s.nodes[2].instances.remove("a");
        let v = violations(&run(check, &h.ops, &s, &[]));
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v
            .iter()
            .any(|x| x.contains("a (start acked at #1) is absent on node 3")));
    }

    #[test]
    fn purge_excuses_absence() {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "a");
        h.control(1, OpType::Info, "purge", "a");
        let r = run(check, &h.ops, &three(vec![]), &[]);
        assert!(is_true(&r), "{r:?}");
    }

    #[test]
    fn not_found_read_after_ack_is_caught() {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "a");
        h.status(2, "a", "NOT_FOUND", "", None);
        let s = three(vec![instance("a", "COMPLETED", vec![])]);
        let v = violations(&run(check, &h.ops, &s, &[]));
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn lagging_node_or_no_node_is_unknown() {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "a");
        let mut s = three(vec![instance("a", "COMPLETED", vec![])]);
        s.nodes[0].applied_index = Some(9);
        s.nodes[0].instances.clear();
        assert!(is_unknown(&run(check, &h.ops, &s, &[])));
        let s = state(vec![node(1, None, vec![])]);
        assert!(is_unknown(&run(check, &h.ops, &s, &[])));
    }
}
