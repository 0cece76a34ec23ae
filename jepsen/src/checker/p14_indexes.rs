//! P14: storage invariants on each node, from the `cluster-status` samples.
//!
//! Per sample (openraft metrics as the server reports them, `None` read as 0):
//! - `purged <= snapshot` when both are set: openraft purges only logs already covered
//!   by a snapshot (`purged` trails the snapshot by the logs it keeps). With either at 0
//!   the rule is skipped: 0 also stands for "none", and a store that keeps its snapshot
//!   in memory may report none after a restart while its purge mark persists.
//! - `purged <= applied`: only applied logs are purged.
//! - `snapshot <= applied`: a snapshot is built from, or installs, applied state.
//! - `applied <= committed`: Raft applies only committed entries (the server reports a
//!   follower's committed index as its applied one, and a leader's as the quorum's match,
//!   never below applied).
//! - `applied <= last_log` or `snapshot == applied`: applied entries came from the log,
//!   and openraft's `last_log_id` counts purged ones; only a state installed from a
//!   snapshot may run ahead of the local log.
//!
//! Per node identity (`value.node`; a wiped node comes back under a new ID), in history
//! order, across restarts: `term` never decreases (the vote is fsynced before it is
//! used) and `applied` never decreases (the engine writes the applied index in the same
//! atomic write as the state it describes, and acks after fsync).
//!
//! Skipped on purpose: a sample with term, applied and last log all 0 is openraft's
//! initial metrics, published before the stored state is loaded (counted in
//! `initial_samples`). `committed` is not checked for monotonicity: the server derives it
//! (a leader's view of the quorum, a follower's applied index), so it falls legitimately
//! when a leader with committed-but-unapplied entries steps down. Unknown when no sample
//! was recorded.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{operations, result, verdict, Input, PropertyResult, Verdict};

/// One `ok` cluster-status sample.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at: u64,
    term: u64,
    applied: u64,
    committed: u64,
    last_log: u64,
    snapshot: u64,
    purged: u64,
}

impl Sample {
    fn from(at: u64, value: &Value) -> Sample {
        let field = |name: &str| value.get(name).and_then(Value::as_u64).unwrap_or(0);
        Sample {
            at,
            term: field("term"),
            applied: field("applied_index"),
            committed: field("committed_index"),
            last_log: field("last_log_index"),
            snapshot: field("snapshot_index"),
            purged: field("purged_index"),
        }
    }

    /// openraft's metrics before the stored state is loaded.
    fn is_initial(&self) -> bool {
        self.term == 0 && self.applied == 0 && self.last_log == 0
    }

    fn problems(&self) -> Vec<String> {
        let s = self;
        let mut out = Vec::new();
        let mut rule = |holds: bool, text: String| {
            if !holds {
                out.push(text);
            }
        };
        rule(
            s.purged == 0 || s.snapshot == 0 || s.purged <= s.snapshot,
            format!("purged {} > snapshot {}", s.purged, s.snapshot),
        );
        rule(
            s.purged <= s.applied,
            format!("purged {} > applied {}", s.purged, s.applied),
        );
        rule(
            s.snapshot <= s.applied,
            format!("snapshot {} > applied {}", s.snapshot, s.applied),
        );
        rule(
            s.applied <= s.committed,
            format!("applied {} > committed {}", s.applied, s.committed),
        );
        rule(
            s.applied <= s.last_log || s.snapshot == s.applied,
            format!(
                "applied {} > last log {} (snapshot {})",
                s.applied, s.last_log, s.snapshot
            ),
        );
        out
    }
}

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "storage indexes ordered and monotonic";
    let mut by_node: BTreeMap<u64, Vec<Sample>> = BTreeMap::new();
    let mut initial = 0u64;
    for op in operations(input.history)
        .iter()
        .filter(|op| op.f() == "cluster-status" && op.is_ok())
    {
        let value = op.value();
        let Some(node) = value.get("node").and_then(Value::as_u64) else {
            continue;
        };
        let sample = Sample::from(op.end(), value);
        if sample.is_initial() {
            initial += 1;
            continue;
        }
        by_node.entry(node).or_default().push(sample);
    }
    let mut stats = serde_json::Map::new();
    stats.insert(
        "samples".into(),
        json!(by_node.values().map(Vec::len).sum::<usize>()),
    );
    stats.insert("initial_samples".into(), json!(initial));
    if by_node.is_empty() {
        let reason = "no cluster-status sample was recorded".to_string();
        return result("P14", name, Verdict::Unknown { reason }, stats);
    }
    let mut violations = Vec::new();
    for (node, samples) in &by_node {
        for sample in samples {
            for problem in sample.problems() {
                violations.push(format!("node {node} at #{}: {problem}", sample.at));
            }
        }
        for pair in samples.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let mut went_back = |what: &str, a: u64, b: u64| {
                if b < a {
                    violations.push(format!(
                        "node {node}: {what} went back from {a} (#{}) to {b} (#{})",
                        before.at, after.at
                    ));
                }
            };
            went_back("term", before.term, after.term);
            went_back("applied index", before.applied, after.applied);
        }
    }
    result("P14", name, verdict(violations, Vec::new()), stats)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::history::OpType;

    fn sample(
        h: &mut Hist,
        node: u64,
        [term, applied, committed, last_log, snapshot, purged]: [u64; 6],
    ) {
        let value = json!({ "node": node, "term": term, "applied_index": applied, "committed_index": committed,
            "last_log_index": last_log, "snapshot_index": snapshot, "purged_index": purged, "state": "Follower" });
        h.invoke(1000 + node, "cluster-status", json!({ "node": node }));
        h.complete(1000 + node, OpType::Ok, "cluster-status", value);
    }

    #[test]
    fn ordered_and_growing_samples_pass() {
        let mut h = Hist::default();
        sample(&mut h, 1, [1, 10, 12, 12, 0, 0]);
        sample(&mut h, 1, [0, 0, 0, 0, 0, 0]);
        sample(&mut h, 1, [2, 150, 150, 160, 100, 90]);
        sample(&mut h, 4, [3, 100, 100, 100, 100, 100]);
        sample(&mut h, 1, [3, 150, 150, 150, 150, 150]);
        let r = run(check, &h.ops, &three(vec![]), &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["initial_samples"], json!(1));
    }

    #[test]
    fn disordered_sample_is_caught() {
        let mut h = Hist::default();
        sample(&mut h, 1, [1, 10, 9, 12, 11, 12]);
        let v = violations(&run(check, &h.ops, &three(vec![]), &[]));
        assert_eq!(v.len(), 4, "{v:?}");
    }

    #[test]
    fn term_or_applied_going_back_is_caught() {
        let mut h = Hist::default();
        sample(&mut h, 1, [3, 10, 10, 10, 0, 0]);
        sample(&mut h, 1, [2, 8, 8, 8, 0, 0]);
        let v = violations(&run(check, &h.ops, &three(vec![]), &[]));
        assert_eq!(v.len(), 2, "{v:?}");
    }

    #[test]
    fn no_sample_is_unknown() {
        assert!(is_unknown(&run(check, &[], &three(vec![]), &[])));
    }
}
