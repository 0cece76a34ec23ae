//! P7: external events are delivered exactly once and in order.
//!
//! The `events` workload: one sender per instance raises events named `e` with `seq`
//! 1, 2, ... in order, retrying an ambiguous raise with the same seq; the payload is
//! `{"seq":K,"sender":S}`. Per `(instance, sender)` each seq is *acked* (some attempt
//! `ok`), *maybe* (no `ok`, some `info` or unfinished attempt) or *refused* (only `fail`s).
//!
//! Checked on every readable node, preferring the workflow's own record:
//! - **Output mode** (the instance is `COMPLETED`, its output is a JSON array of seqs, and
//!   it had one sender): the array is strictly increasing (FIFO, no duplicate), holds every
//!   acked seq, and nothing else than maybe seqs. The workflow lists the seqs it consumed,
//!   so this survives continue-as-new, which resets the history.
//! - **History mode** (otherwise): the `EventRaised` events of that name and sender, in
//!   history order, are strictly increasing in seq and hold only acked or maybe seqs; and,
//!   when nothing can hide an event (inbox empty, not ended by terminate/failure, which drop
//!   the inbox, and the `ExecutionStarted` input is the start's, so no continue-as-new
//!   replaced the history), every acked seq.
//!
//! Dapr's `RaiseEvent` carries no idempotency key, so a raise whose first attempt was
//! ambiguous and that was retried may be recorded twice: for such a seq (and only such) a
//! repeat directly after itself in the history is allowed and counted
//! (`duplicates_from_retries`). A raise acked without an ambiguous attempt must appear
//! exactly once. The workload's workflow drops repeated seqs itself, as an application
//! keyed by its payload would, so its output must be strictly increasing.
//!
//! Out of reach: the loss check in history mode when one of those conditions fails
//! (counted in `loss_unchecked`), several senders mixed in one output array, and
//! "buffered before the wait" beyond what the final history shows.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{
    operations, readable_nodes, result, str_field, verdict, Input, Operation, PropertyResult,
    Verdict,
};
use crate::state::NodeInstance;

/// What the history says about the raises of one sender to one instance.
#[derive(Default, Debug)]
struct Raises {
    acked: BTreeSet<u64>,
    maybe: BTreeSet<u64>,
    invoked: BTreeSet<u64>,
    /// Seqs with at least one ambiguous attempt: they may have been recorded more than once.
    retried: BTreeSet<u64>,
}

impl Raises {
    /// A seq that may legitimately appear.
    fn allowed(&self, seq: u64) -> bool {
        self.acked.contains(&seq) || self.maybe.contains(&seq)
    }
}

/// `(instance, event name lowercased, sender)` -> raises.
type Senders = BTreeMap<(String, String, u64), Raises>;

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "external events exactly once, in order";
    let ops = operations(input.history);
    let senders = collect_raises(&ops);
    let nodes = readable_nodes(input.state);
    if nodes.is_empty() && !senders.is_empty() {
        let reason = "no node's final state could be read".to_string();
        return result("P7", name, Verdict::Unknown { reason }, Default::default());
    }
    let starts = start_inputs(&ops);
    let mut violations = Vec::new();
    let (mut by_output, mut by_history, mut loss_unchecked) = (0u64, 0u64, 0u64);
    let mut duplicates_from_retries = 0u64;
    for node in &nodes {
        for ((id, event, sender), raises) in &senders {
            let Some(instance) = node.instances.get(id) else {
                continue;
            };
            let at = format!("{id} (sender {sender}) on node {}", node.node_id);
            let alone = senders.keys().filter(|(i, _, _)| i == id).count() == 1;
            if let Some(seqs) = output_seqs(instance).filter(|_| alone) {
                by_output += 1;
                let mut none_allowed = None;
                violations.extend(judge(&at, "output", &seqs, raises, true, &mut none_allowed));
                continue;
            }
            by_history += 1;
            let seqs = raised_seqs(instance, event, *sender);
            let complete = nothing_hidden(instance, starts.get(id.as_str()).copied());
            loss_unchecked += u64::from(!complete);
            let mut retried = Some(&mut duplicates_from_retries);
            violations.extend(judge(&at, "history", &seqs, raises, complete, &mut retried));
        }
    }
    let mut stats = serde_json::Map::new();
    stats.insert("senders".into(), json!(senders.len()));
    stats.insert(
        "acked_raises".into(),
        json!(senders.values().map(|r| r.acked.len()).sum::<usize>()),
    );
    stats.insert(
        "maybe_raises".into(),
        json!(senders.values().map(|r| r.maybe.len()).sum::<usize>()),
    );
    stats.insert("checked_by_output".into(), json!(by_output));
    stats.insert("checked_by_history".into(), json!(by_history));
    stats.insert("loss_unchecked".into(), json!(loss_unchecked));
    stats.insert(
        "duplicates_from_retries".into(),
        json!(duplicates_from_retries),
    );
    result("P7", name, verdict(violations, Vec::new()), stats)
}

fn collect_raises(ops: &[Operation<'_>]) -> Senders {
    let mut out = Senders::new();
    for op in ops.iter().filter(|op| op.f() == "raise") {
        let value = op.value();
        let (Some(id), Some(seq)) = (op.instance_id(), value.get("seq").and_then(Value::as_u64))
        else {
            continue;
        };
        let event = str_field(value, "event_name").unwrap_or("").to_lowercase();
        let raises = out
            .entry((id.to_owned(), event, op.invoke.process))
            .or_default();
        raises.invoked.insert(seq);
        if op.is_ok() {
            raises.acked.insert(seq);
        } else if op.is_maybe() {
            raises.maybe.insert(seq);
            raises.retried.insert(seq);
        }
    }
    for raises in out.values_mut() {
        let acked = raises.acked.clone();
        raises.maybe.retain(|s| !acked.contains(s));
    }
    out
}

/// Instance ID -> the input text of its (non-failed) start.
fn start_inputs<'a>(ops: &[Operation<'a>]) -> BTreeMap<&'a str, &'a str> {
    ops.iter()
        .filter(|op| op.f() == "start" && !op.is_fail())
        .filter_map(|op| Some((op.instance_id()?, str_field(op.value(), "input")?)))
        .collect()
}

fn output_seqs(instance: &NodeInstance) -> Option<Vec<u64>> {
    if instance.status != "COMPLETED" {
        return None;
    }
    let value: Value = serde_json::from_str(instance.output.as_deref()?).ok()?;
    value.as_array()?.iter().map(Value::as_u64).collect()
}

fn raised_seqs(instance: &NodeInstance, event: &str, sender: u64) -> Vec<u64> {
    instance
        .history
        .iter()
        .filter(|e| {
            e.kind == "EventRaised"
                && e.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(event))
        })
        .filter_map(|e| serde_json::from_str::<Value>(e.data.as_deref()?).ok())
        .filter(|payload| payload.get("sender").and_then(Value::as_u64) == Some(sender))
        .filter_map(|payload| payload.get("seq").and_then(Value::as_u64))
        .collect()
}

/// Whether every delivered event must be in the final history.
fn nothing_hidden(instance: &NodeInstance, start_input: Option<&str>) -> bool {
    let dropped_inbox = matches!(
        instance.status.as_str(),
        "TERMINATED" | "FAILED" | "CANCELED"
    );
    let started = instance
        .history
        .iter()
        .find(|e| e.kind == "ExecutionStarted");
    let same_run = match (started, start_input) {
        (Some(e), Some(input)) => e.data.as_deref() == Some(input),
        _ => false,
    };
    instance.inbox_len == 0 && !dropped_inbox && same_run
}

/// The rules over one observed seq sequence; `complete`: also require every acked seq.
/// `retried_duplicates`: when given, a retried seq repeated right after itself is counted
/// there instead of being a violation.
fn judge(
    at: &str,
    source: &str,
    seqs: &[u64],
    raises: &Raises,
    complete: bool,
    retried_duplicates: &mut Option<&mut u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for pair in seqs.windows(2).filter(|p| p[1] <= p[0]) {
        if pair[1] == pair[0] && raises.retried.contains(&pair[0]) {
            if let Some(count) = retried_duplicates.as_deref_mut() {
                *count += 1;
                continue;
            }
        }
        let what = if pair[1] == pair[0] {
            "duplicated"
        } else {
            "out of order"
        };
        out.push(format!(
            "{at}: seq {} {what} in the {source} (after {})",
            pair[1], pair[0]
        ));
    }
    for seq in seqs.iter().filter(|s| !raises.allowed(**s)) {
        let why = if raises.invoked.contains(seq) {
            "whose raises all failed"
        } else {
            "never raised"
        };
        out.push(format!("{at}: seq {seq} in the {source}, {why}"));
    }
    if complete {
        let present: BTreeSet<u64> = seqs.iter().copied().collect();
        for seq in raises.acked.difference(&present) {
            out.push(format!("{at}: acked seq {seq} missing from the {source}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::history::OpType;

    fn raise(h: &mut Hist, kind: OpType, seq: u64) {
        let payload = json!({ "seq": seq, "sender": 1 }).to_string();
        let value =
            json!({ "instance_id": "ev", "event_name": "e", "payload": payload, "seq": seq });
        h.call(1, kind, "raise", value);
    }

    fn sent() -> Hist {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "ev");
        raise(&mut h, OpType::Ok, 1);
        raise(&mut h, OpType::Info, 2);
        raise(&mut h, OpType::Ok, 2);
        raise(&mut h, OpType::Info, 3);
        h
    }

    fn with_output(output: &str) -> NodeInstance {
        let mut i = instance("ev", "COMPLETED", vec![started("{}")]);
        i.output = Some(output.into());
        i
    }

    #[test]
    fn output_with_acked_and_some_maybe_passes() {
        let h = sent();
        assert!(is_true(&run(
            check,
            &h.ops,
            &three(vec![with_output("[1,2]")]),
            &[]
        )));
        let r = run(check, &h.ops, &three(vec![with_output("[1,2,3]")]), &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["checked_by_output"], json!(3));
    }

    #[test]
    fn output_loss_duplicate_or_unknown_seq_is_caught() {
        let h = sent();
        for bad in ["[1]", "[1,2,2]", "[2,1]", "[1,2,4]"] {
            let v = violations(&run(check, &h.ops, &three(vec![with_output(bad)]), &[]));
            assert_eq!(v.len(), 3, "{bad}: {v:?}");
        }
    }

    #[test]
    fn history_mode_checks_raised_events() {
        let h = sent();
        let good = instance(
            "ev",
            "RUNNING",
            vec![started("{}"), raised("e", 1, 1), raised("e", 2, 1)],
        );
        assert!(is_true(&run(check, &h.ops, &three(vec![good]), &[])));
        let dup = instance(
            "ev",
            "RUNNING",
            vec![started("{}"), raised("e", 1, 1), raised("e", 1, 1)],
        );
        let v = violations(&run(check, &h.ops, &three(vec![dup]), &[]));
        assert_eq!(v.len(), 6, "{v:?}");
    }

    #[test]
    fn a_retried_raise_may_repeat_in_the_history_but_a_clean_one_may_not() {
        let h = sent();
        // Seq 2 had an ambiguous attempt before its ok: recorded twice is allowed, counted.
        let retried = instance(
            "ev",
            "RUNNING",
            vec![
                started("{}"),
                raised("e", 1, 1),
                raised("e", 2, 1),
                raised("e", 2, 1),
            ],
        );
        let r = run(check, &h.ops, &three(vec![retried]), &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["duplicates_from_retries"], json!(3));
        // The workflow drops repeats itself: its output must not show one.
        let v = violations(&run(
            check,
            &h.ops,
            &three(vec![with_output("[1,2,2]")]),
            &[],
        ));
        assert!(!v.is_empty());
    }

    #[test]
    fn hidden_inbox_skips_the_loss_check() {
        let h = sent();
        let mut waiting = instance("ev", "RUNNING", vec![started("{}"), raised("e", 1, 1)]);
        waiting.inbox_len = 1;
        let r = run(check, &h.ops, &three(vec![waiting]), &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["loss_unchecked"], json!(3));
    }

    #[test]
    fn nothing_readable_is_unknown() {
        let h = sent();
        let s = state(vec![node(1, None, vec![])]);
        assert!(is_unknown(&run(check, &h.ops, &s, &[])));
    }
}
