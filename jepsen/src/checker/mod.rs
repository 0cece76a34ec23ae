//! Checkers: one property per file, each a pure function over the history, the final
//! state and the witness log, returning a [`Verdict`]. A checker that cannot decide
//! (a node could not be read, the history is cut short) says [`Verdict::Unknown`] with the
//! reason; unknown is never a pass.
//!
//! The property numbers are those of `docs/reliability.md` (P1-P14; P11 is covered by
//! P3's "terminal state final" reads and is not a separate file).
//!
//! - [`p1_acked_starts`]: no acknowledged start lost (P1).
//! - [`p2_unique_ids`]: one execution per instance ID at a time (P2).
//! - [`p3_one_completion`]: one ending per execution; terminal reads stable (P3, P11).
//! - [`p4_replicas_identical`]: converged replicas identical, event ids consecutive (P4).
//! - [`p5_activities`]: results exactly once, never phantom; duplicates measured (P5).
//! - [`p6_timers`]: timers not early, once; delayed starts not early; lateness (P6).
//! - [`p7_events`]: acked raises exactly once, in order (P7).
//! - [`p8_control_final`]: terminate, purge, suspend durable and final (P8).
//! - [`p9_no_split_brain`]: one value per history position, across nodes and time (P9).
//! - [`p10_kill_all`]: nothing acked lost across a coordinated crash (P10).
//! - [`p12_liveness`]: drain and new starts within bounds after the heal (P12).
//! - [`p13_restart`]: restarted nodes readable and caught up (P13).
//! - [`p14_indexes`]: Raft index ordering and monotonicity per node (P14).
//!
//! Every checker is a pure function (no IO, no clock), so a stored run can be re-checked
//! and the same checkers can serve a simulation tier.
//!
//! This file also holds what several checkers share: pairing invokes with completions
//! ([`operations`]), the "could a purge have removed it" rule ([`purge_may_follow`]),
//! reading fields of an op's JSON `value`, and building a verdict from violations.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{Op, OpType, NEMESIS_PROCESS};
use crate::state::{FinalState, NodeState, WitnessEntry};

pub mod p10_kill_all;
pub mod p12_liveness;
pub mod p13_restart;
pub mod p14_indexes;
pub mod p1_acked_starts;
pub mod p2_unique_ids;
pub mod p3_one_completion;
pub mod p4_replicas_identical;
pub mod p5_activities;
pub mod p6_timers;
pub mod p7_events;
pub mod p8_control_final;
pub mod p9_no_split_brain;

#[cfg(test)]
pub(crate) mod test_support;

/// What a checker concluded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "valid", rename_all = "lowercase")]
pub enum Verdict {
    /// The property holds on this run.
    True,
    /// The property is violated; each string names one violation (instance, what, where).
    False { violations: Vec<String> },
    /// The checker could not decide, and why.
    Unknown { reason: String },
}

/// Everything a checker reads.
pub struct Input<'a> {
    pub history: &'a [Op],
    pub state: &'a FinalState,
    pub witness: &'a [WitnessEntry],
}

/// One checker's result, as stored in `results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropertyResult {
    /// `P1` .. `P14`.
    pub property: String,
    /// A short name: "no acknowledged start lost".
    pub name: String,
    pub verdict: Verdict,
    /// Figures worth reporting even on a pass (e.g. duplicate activity executions).
    #[serde(default)]
    pub stats: serde_json::Map<String, serde_json::Value>,
}

/// Most violations (and undecided cases) listed per property: a broken run can produce
/// thousands of the same kind, and the report must stay readable. The total is kept.
pub const MAX_LISTED: usize = 50;

/// Every checker, in property order.
pub fn check_all(input: &Input<'_>) -> Vec<PropertyResult> {
    let checkers: [fn(&Input<'_>) -> PropertyResult; 13] = [
        p1_acked_starts::check,
        p2_unique_ids::check,
        p3_one_completion::check,
        p4_replicas_identical::check,
        p5_activities::check,
        p6_timers::check,
        p7_events::check,
        p8_control_final::check,
        p9_no_split_brain::check,
        p10_kill_all::check,
        p12_liveness::check,
        p13_restart::check,
        p14_indexes::check,
    ];
    checkers.iter().map(|check| check(input)).collect()
}

/// The run's verdict: any false makes it false; else any unknown makes it unknown; an
/// empty list is unknown too (nothing was checked, which is never a pass).
pub fn overall(results: &[PropertyResult]) -> Verdict {
    let violations: Vec<String> = results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::False { .. }))
        .map(|r| r.property.clone())
        .collect();
    if !violations.is_empty() {
        return Verdict::False { violations };
    }
    let unknown: Vec<&str> = results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Unknown { .. }))
        .map(|r| r.property.as_str())
        .collect();
    if results.is_empty() {
        return Verdict::Unknown {
            reason: "no property was checked".into(),
        };
    }
    if !unknown.is_empty() {
        return Verdict::Unknown {
            reason: format!("undecided: {}", unknown.join(", ")),
        };
    }
    Verdict::True
}

/// One operation: its invoke and, if the history has one, its completion.
#[derive(Clone, Copy, Debug)]
pub struct Operation<'a> {
    pub invoke: &'a Op,
    /// `None` when the run ended before the operation completed (as ambiguous as `info`).
    pub completion: Option<&'a Op>,
}

impl<'a> Operation<'a> {
    pub fn f(&self) -> &'a str {
        &self.invoke.f
    }

    /// `Invoke` when there is no completion.
    pub fn outcome(&self) -> OpType {
        self.completion.map_or(OpType::Invoke, |c| c.kind)
    }

    /// Acknowledged: the only outcome that proves the operation happened.
    pub fn is_ok(&self) -> bool {
        self.outcome() == OpType::Ok
    }

    /// Definitely did not happen.
    pub fn is_fail(&self) -> bool {
        self.outcome() == OpType::Fail
    }

    /// May or may not have happened: `info`, or never completed.
    pub fn is_maybe(&self) -> bool {
        matches!(self.outcome(), OpType::Info | OpType::Invoke)
    }

    /// The completion's value when acknowledged (it carries the results), else the invoke's.
    pub fn value(&self) -> &'a Value {
        match self.completion {
            Some(c) if c.kind == OpType::Ok => &c.value,
            _ => &self.invoke.value,
        }
    }

    pub fn instance_id(&self) -> Option<&'a str> {
        str_field(self.value(), "instance_id")
    }

    /// History index of the invoke: the operation cannot take effect before it.
    pub fn start(&self) -> u64 {
        self.invoke.index
    }

    /// History index of the completion; `u64::MAX` if none (it may take effect any time).
    pub fn end(&self) -> u64 {
        self.completion.map_or(u64::MAX, |c| c.index)
    }
}

/// Pairs every invoke with its completion, in invoke order.
///
/// A client process runs one operation at a time, so the next completion of the same
/// `(process, f)` after an invoke is its completion. Nemesis faults run concurrently under
/// the one [`NEMESIS_PROCESS`], each fault sequentially, so their key also holds the
/// fault's `name`. A completion with no open invoke is dropped (the recorder never writes
/// one; a hand-cut history might).
pub fn operations(history: &[Op]) -> Vec<Operation<'_>> {
    let mut out: Vec<Operation<'_>> = Vec::new();
    let mut open: HashMap<(u64, &str, &str), usize> = HashMap::new();
    for op in history {
        let key = pairing_key(op);
        if op.kind == OpType::Invoke {
            open.insert(key, out.len());
            out.push(Operation {
                invoke: op,
                completion: None,
            });
        } else if let Some(at) = open.remove(&key) {
            out[at].completion = Some(op);
        }
    }
    out
}

fn pairing_key(op: &Op) -> (u64, &str, &str) {
    let name = if op.process == NEMESIS_PROCESS {
        str_field(&op.value, "name").unwrap_or("")
    } else {
        ""
    };
    (op.process, op.f.as_str(), name)
}

/// Operations by `(f, instance_id)`, in invoke order: the checkers look operations up per
/// instance many times, and a scan of the whole history each time is quadratic.
/// Keyed by `f`, then by instance ID.
pub type Index<'a> = HashMap<&'a str, HashMap<&'a str, Vec<Operation<'a>>>>;

pub fn index<'a>(ops: &[Operation<'a>]) -> Index<'a> {
    let mut out: Index<'a> = HashMap::new();
    for op in ops {
        if let Some(id) = op.instance_id() {
            out.entry(op.f())
                .or_default()
                .entry(id)
                .or_default()
                .push(*op);
        }
    }
    out
}

/// Operations with this `f` on this instance.
pub fn on_instance<'a, 'b>(
    index: &'b Index<'a>,
    f: &str,
    instance_id: &str,
) -> &'b [Operation<'a>] {
    index
        .get(f)
        .and_then(|by_id| by_id.get(instance_id))
        .map_or(&[], Vec::as_slice)
}

/// Whether a purge of `instance_id` may have taken effect after history index `after`:
/// an acknowledged purge that completed after it, or an ambiguous one (it may take effect
/// at any time after its invoke, even long after its timeout). A failed purge did nothing.
pub fn purge_may_follow(index: &Index<'_>, instance_id: &str, after: u64) -> bool {
    on_instance(index, "purge", instance_id)
        .iter()
        .any(|p| (p.is_ok() && p.end() > after) || p.is_maybe())
}

/// The status names of a finished run.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "COMPLETED" | "FAILED" | "TERMINATED" | "CANCELED")
}

pub fn str_field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name)?.as_str()
}

pub fn u64_field(value: &Value, name: &str) -> Option<u64> {
    value.get(name)?.as_u64()
}

/// Nodes whose replica could be read.
pub fn readable_nodes(state: &FinalState) -> Vec<&NodeState> {
    state
        .nodes
        .iter()
        .filter(|n| n.applied_index.is_some())
        .collect()
}

/// The largest applied index among readable nodes.
pub fn max_applied(state: &FinalState) -> Option<u64> {
    state.nodes.iter().filter_map(|n| n.applied_index).max()
}

/// Whether a readable node has applied as much as any other: only such a node's absence
/// of something proves it is missing (a lagging one may simply not have it yet).
pub fn is_caught_up(node: &NodeState, state: &FinalState) -> bool {
    node.applied_index.is_some() && node.applied_index == max_applied(state)
}

/// Files `text` as a violation when `node` is caught up, else as undecided (a lagging
/// node may simply not have applied it yet).
pub fn blame(
    node: &NodeState,
    state: &FinalState,
    text: String,
    violations: &mut Vec<String>,
    undecided: &mut Vec<String>,
) {
    if is_caught_up(node, state) {
        violations.push(text);
    } else {
        undecided.push(format!("{text}, which lags"));
    }
}

/// A verdict from what was found: violations make it false; otherwise undecided cases
/// make it unknown; otherwise true. Lists are cut at [`MAX_LISTED`].
pub fn verdict(violations: Vec<String>, undecided: Vec<String>) -> Verdict {
    if !violations.is_empty() {
        return Verdict::False {
            violations: capped(violations),
        };
    }
    if !undecided.is_empty() {
        return Verdict::Unknown {
            reason: capped(undecided).join("; "),
        };
    }
    Verdict::True
}

fn capped(mut items: Vec<String>) -> Vec<String> {
    let total = items.len();
    if total > MAX_LISTED {
        items.truncate(MAX_LISTED);
        items.push(format!("... and {} more", total - MAX_LISTED));
    }
    items
}

/// A result with stats.
pub fn result(
    property: &str,
    name: &str,
    verdict: Verdict,
    stats: serde_json::Map<String, Value>,
) -> PropertyResult {
    PropertyResult {
        property: property.into(),
        name: name.into(),
        verdict,
        stats,
    }
}

/// The value at quantile `q` (0..=1) of `values` (sorted here), nearest rank; None if empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn pairs_by_process_and_f_and_keeps_pending() {
        let mut h = Hist::default();
        h.invoke(1, "start", start_value("a"));
        h.invoke(2, "start", start_value("b"));
        h.complete(2, OpType::Ok, "start", start_value("b"));
        h.complete(1, OpType::Info, "start", start_value("a"));
        h.invoke(1, "status", serde_json::json!({ "instance_id": "a" }));
        let ops = operations(&h.ops);
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].outcome(), OpType::Info);
        assert_eq!(ops[1].outcome(), OpType::Ok);
        assert!(ops[2].is_maybe());
        assert_eq!(ops[2].end(), u64::MAX);
    }

    #[test]
    fn concurrent_nemeses_pair_by_name() {
        let mut h = Hist::default();
        h.nemesis_invoke("kill", "kill-random", &[1]);
        h.nemesis_invoke("partition", "isolate", &[2]);
        h.nemesis_done("kill", "kill-random", &[1], "installed");
        h.nemesis_done("partition", "isolate", &[2], "skipped");
        let ops = operations(&h.ops);
        assert_eq!(str_field(ops[0].value(), "outcome"), Some("installed"));
        assert_eq!(str_field(ops[1].value(), "outcome"), Some("skipped"));
    }

    #[test]
    fn overall_orders_false_unknown_true() {
        let r = |v: Verdict| result("P0", "x", v, Default::default());
        let f = Verdict::False {
            violations: vec!["v".into()],
        };
        let u = Verdict::Unknown { reason: "r".into() };
        assert_eq!(overall(&[r(Verdict::True)]), Verdict::True);
        assert!(matches!(
            overall(&[r(Verdict::True), r(u.clone())]),
            Verdict::Unknown { .. }
        ));
        assert!(matches!(overall(&[r(u), r(f)]), Verdict::False { .. }));
        assert!(matches!(overall(&[]), Verdict::Unknown { .. }));
    }

    #[test]
    fn verdict_caps_the_list() {
        let many = (0..MAX_LISTED + 5).map(|i| i.to_string()).collect();
        let Verdict::False { violations } = verdict(many, vec![]) else {
            panic!()
        };
        assert_eq!(violations.len(), MAX_LISTED + 1);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), Some(3.0));
    }
}
