//! P2: instance-ID uniqueness: for one ID, at most one execution exists at any time.
//!
//! Checked:
//! - **Final replicas.** Every instance's history on every readable node holds at most one
//!   `ExecutionStarted`, and exactly one when the history is not empty: the engine resets
//!   the history when a run is replaced (ID reuse after a terminal state, continue-as-new),
//!   so a second `ExecutionStarted` means two executions were merged into one history.
//! - **No execution comes back.** Over the `ok` status reads of one ID in real-time order
//!   (a read that completed before another was invoked comes first), once a read observed
//!   execution `e` and a later read observed something else (another execution or
//!   `NOT_FOUND`), no still later read may observe `e` again. Execution IDs are fresh per
//!   run, so `e`, `f`, `e` means two executions lived at once (or a stale read). This
//!   needs no knowledge of *why* the execution changed (reuse, continue-as-new, purge).
//!
//! Out of reach, on purpose: two acknowledged starts of one ID are not judged by
//! themselves. A duplicate start may be answered idempotently (Dapr semantics), and a start
//! may legally replace an instance that became terminal without any read seeing it, so
//! the history alone cannot show that both executions were live at once.

use std::collections::BTreeMap;

use serde_json::json;

use super::{
    operations, readable_nodes, result, str_field, verdict, Input, PropertyResult, Verdict,
};

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "instance IDs unique";
    let nodes = readable_nodes(input.state);
    let mut violations = Vec::new();
    for node in &nodes {
        for instance in node.instances.values() {
            let starts = instance
                .history
                .iter()
                .filter(|e| e.kind == "ExecutionStarted")
                .count();
            let expected = usize::from(!instance.history.is_empty());
            if starts != expected {
                violations.push(format!(
                    "{}: {starts} ExecutionStarted events in one history on node {}",
                    instance.instance_id, node.node_id
                ));
            }
        }
    }
    let reads = reads_by_instance(input);
    let mut checked_reads = 0usize;
    for (id, reads) in &reads {
        checked_reads += reads.len();
        violations.extend(returned_executions(id, reads));
    }
    let mut stats = serde_json::Map::new();
    stats.insert("status_reads".into(), json!(checked_reads));
    if nodes.is_empty() && violations.is_empty() {
        let reason = "no node's final state could be read".to_string();
        return result("P2", name, Verdict::Unknown { reason }, stats);
    }
    result("P2", name, verdict(violations, Vec::new()), stats)
}

/// One `ok` status read: invoke index, completion index, what it saw (`""`: NOT_FOUND).
#[derive(Clone, Debug)]
struct Read {
    start: u64,
    end: u64,
    execution: String,
}

fn reads_by_instance(input: &Input<'_>) -> BTreeMap<String, Vec<Read>> {
    let mut out: BTreeMap<String, Vec<Read>> = BTreeMap::new();
    for op in operations(input.history)
        .iter()
        .filter(|op| op.f() == "status" && op.is_ok())
    {
        let Some(id) = op.instance_id() else { continue };
        let value = op.value();
        let execution = match str_field(value, "status") {
            Some("NOT_FOUND") => String::new(),
            _ => str_field(value, "execution_id").unwrap_or("").to_owned(),
        };
        out.entry(id.to_owned()).or_default().push(Read {
            start: op.start(),
            end: op.end(),
            execution,
        });
    }
    out
}

/// For each execution `e` seen: the earliest completion of a read of `e` and the latest
/// invoke of a read of `e`; a read of anything else strictly between them is `e, x, e`.
fn returned_executions(id: &str, reads: &[Read]) -> Vec<String> {
    let mut span: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for read in reads.iter().filter(|r| !r.execution.is_empty()) {
        let entry = span.entry(read.execution.as_str()).or_insert((u64::MAX, 0));
        entry.0 = entry.0.min(read.end);
        entry.1 = entry.1.max(read.start);
    }
    let mut out = Vec::new();
    for (execution, (first_end, last_start)) in span {
        let between = reads
            .iter()
            .find(|r| r.execution != execution && r.start > first_end && r.end < last_start);
        if let Some(other) = between {
            let seen = if other.execution.is_empty() {
                "NOT_FOUND"
            } else {
                other.execution.as_str()
            };
            out.push(format!(
                "{id}: execution {execution} was read, then {seen} (read #{}), then {execution} again (read invoked at #{last_start})",
                other.end
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn one_execution_per_history_and_forward_reads_pass() {
        let mut h = Hist::default();
        h.status(1, "a", "NOT_FOUND", "", None);
        h.status(1, "a", "RUNNING", "e1", None);
        h.status(1, "a", "COMPLETED", "e1", None);
        h.status(1, "a", "RUNNING", "e2", None);
        let s = three(vec![instance("a", "RUNNING", vec![started("{}")])]);
        let r = run(check, &h.ops, &s, &[]);
        assert!(is_true(&r), "{r:?}");
    }

    #[test]
    fn execution_coming_back_is_caught() {
        let mut h = Hist::default();
        h.status(1, "a", "RUNNING", "e1", None);
        h.status(2, "a", "RUNNING", "e2", None);
        h.status(1, "a", "RUNNING", "e1", None);
        let s = three(vec![instance("a", "RUNNING", vec![started("{}")])]);
        let v = violations(&run(check, &h.ops, &s, &[]));
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn two_starts_in_one_history_are_caught() {
        let s = three(vec![instance(
            "a",
            "RUNNING",
            vec![started("{}"), started("{}")],
        )]);
        let v = violations(&run(check, &[], &s, &[]));
        assert_eq!(v.len(), 3, "{v:?}");
    }

    #[test]
    fn overlapping_reads_are_not_ordered() {
        let mut h = Hist::default();
        h.invoke(1, "status", json!({ "instance_id": "a" }));
        h.status(2, "a", "RUNNING", "e2", None);
        h.complete(
            1,
            crate::history::OpType::Ok,
            "status",
            json!({ "instance_id": "a", "status": "RUNNING", "execution_id": "e1" }),
        );
        h.status(1, "a", "RUNNING", "e1", None);
        let s = three(vec![]);
        assert!(is_true(&run(check, &h.ops, &s, &[])));
    }

    #[test]
    fn nothing_readable_is_unknown() {
        let s = state(vec![node(1, None, vec![])]);
        assert!(is_unknown(&run(check, &[], &s, &[])));
    }
}
