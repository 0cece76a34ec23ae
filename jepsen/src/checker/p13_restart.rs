//! P13: restart safety: every node that was restarted recovers and catches up.
//!
//! Restarted nodes come from the nemesis ops of the faults that restart processes
//! (`kill`, `kill-all`, `disk`, `wipe`) whose outcome was not `skipped` (an
//! `indeterminate` one may have restarted it too). Their `targets` name node IDs; a wipe's
//! targets are `[old, new]`: the old ID is retired (removed from the membership, never
//! reused) and the new node is the one that must catch up.
//!
//! Checked: each such node is in the final state, was readable (a node that panicked or
//! failed recovery cannot be read) and has applied as much as any node (caught up through
//! the log or a snapshot). A node that a later wipe retired is not expected; a wipe that
//! did not report `installed` may have stopped before or after the swap, so neither of its
//! IDs is required.
//!
//! Out of reach: silent divergence of a recovered node (P4 and P9 compare its content) and
//! corruption detection itself (the suite does not corrupt files).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{
    is_caught_up, max_applied, operations, result, str_field, verdict, Input, PropertyResult,
    Verdict,
};

/// Faults that kill and restart node processes.
const RESTARTING_FAULTS: [&str; 4] = ["kill", "kill-all", "disk", "wipe"];

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "restarted nodes recover and catch up";
    let (restarted, retired) = restarted_nodes(input);
    if input.state.nodes.is_empty() && !restarted.is_empty() {
        let reason = "the final state holds no node".to_string();
        return result("P13", name, Verdict::Unknown { reason }, Default::default());
    }
    let mut violations = Vec::new();
    for id in restarted.difference(&retired) {
        let Some(node) = input.state.nodes.iter().find(|n| n.node_id == *id) else {
            violations.push(format!(
                "node {id} was restarted but is not in the final state"
            ));
            continue;
        };
        if node.applied_index.is_none() {
            let why = node.error.as_deref().unwrap_or("no reason given");
            violations.push(format!(
                "node {id} was restarted and could not be read: {why}"
            ));
        } else if !is_caught_up(node, input.state) {
            violations.push(format!(
                "node {id} was restarted and lags: applied {:?} of {:?}",
                node.applied_index,
                max_applied(input.state)
            ));
        }
    }
    let mut stats = serde_json::Map::new();
    stats.insert("restarted_nodes".into(), json!(restarted));
    stats.insert("retired_nodes".into(), json!(retired));
    result("P13", name, verdict(violations, Vec::new()), stats)
}

/// (node IDs that must have recovered, node IDs a wipe retired).
fn restarted_nodes(input: &Input<'_>) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let mut restarted = BTreeSet::new();
    let mut retired = BTreeSet::new();
    for op in operations(input.history)
        .iter()
        .filter(|op| op.f() == "nemesis" && op.completion.is_some())
    {
        let value = op.value();
        let outcome = match op.completion.map(|c| c.kind) {
            Some(crate::history::OpType::Ok) => str_field(value, "outcome").unwrap_or(""),
            _ => "indeterminate",
        };
        let Some(fault) = str_field(value, "name").filter(|n| RESTARTING_FAULTS.contains(n)) else {
            continue;
        };
        if outcome == "skipped" {
            continue;
        }
        let targets: Vec<u64> = value
            .get("targets")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if fault != "wipe" {
            restarted.extend(targets);
        } else if let [old, new] = targets[..] {
            retired.insert(old);
            if outcome == "installed" {
                restarted.insert(new);
            }
        }
    }
    (restarted, retired)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn recovered_nodes_pass_and_wiped_id_is_retired() {
        let mut h = Hist::default();
        h.nemesis("kill", "kill-random", &[1]);
        h.nemesis("kill", "restart", &[1]);
        h.nemesis("wipe", "wipe", &[2, 4]);
        let s = state(vec![
            node(1, Some(10), vec![]),
            node(4, Some(10), vec![]),
            node(3, Some(10), vec![]),
        ]);
        let r = run(check, &h.ops, &s, &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["restarted_nodes"], json!([1, 4]));
    }

    #[test]
    fn lagging_unreadable_or_missing_nodes_are_caught() {
        let mut h = Hist::default();
        h.nemesis("kill-all", "kill-all", &[1, 2, 3]);
        h.nemesis("disk", "fill", &[5]);
        let s = state(vec![
            node(1, Some(10), vec![]),
            node(2, Some(7), vec![]),
            node(3, None, vec![]),
        ]);
        let v = violations(&run(check, &h.ops, &s, &[]));
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].starts_with("node 2"), "{v:?}");
    }

    #[test]
    fn skipped_faults_do_not_count() {
        let mut h = Hist::default();
        h.nemesis_invoke("kill", "kill-random", &[3]);
        h.nemesis_done("kill", "kill-random", &[3], "skipped");
        h.nemesis("partition", "isolate", &[2]);
        let s = state(vec![
            node(1, Some(10), vec![]),
            node(2, Some(3), vec![]),
            node(3, None, vec![]),
        ]);
        assert!(is_true(&run(check, &h.ops, &s, &[])));
        h.nemesis("kill", "kill-random", &[1]);
        assert!(is_unknown(&run(check, &h.ops, &state(vec![]), &[])));
    }
}
