//! P9: no split-brain orchestration: for each (instance, history position) at most one
//! value is ever committed.
//!
//! Checked, whether or not the nodes converged:
//! - **Across replicas.** For each instance, every two readable nodes holding the same
//!   execution (same execution id) agree on every position both histories have (the
//!   common prefix, by digest): a lagging node holds a prefix, never different events.
//!   Nodes holding different executions of one ID are not compared here (a lagging node
//!   may not have applied a reuse yet; P4 compares converged replicas whole). Ids assigned
//!   by the orchestration (`event_id >= 0`) must also mean one event: per (instance,
//!   execution, event id) one digest across all nodes.
//! - **Over time.** Every `ok` `history` read of an instance whose `ExecutionStarted` is
//!   the one in a node's final history (same content) is a prefix of that final history:
//!   committed events never change and are never removed from a live execution. Reads
//!   and replicas are compared by content (kind, id, timestamp, scheduled id, name, due
//!   time, data), not by digest: a read's digest is taken over a re-encoding.
//!
//! Out of reach: effects of fenced attempts that never reached any history (P5 checks the
//! recorded results), and histories of executions no node holds any more.

use std::collections::BTreeMap;

use serde_json::json;

use super::{operations, readable_nodes, result, verdict, Input, PropertyResult, Verdict};
use crate::history::Event;
use crate::state::{NodeInstance, NodeState};

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "no split-brain: one value per history position";
    let nodes = readable_nodes(input.state);
    if nodes.is_empty() {
        let reason = "no node's final state could be read".to_string();
        return result("P9", name, Verdict::Unknown { reason }, Default::default());
    }
    let mut violations = Vec::new();
    let mut ids: Vec<&String> = nodes.iter().flat_map(|n| n.instances.keys()).collect();
    ids.sort();
    ids.dedup();
    for id in &ids {
        let copies: Vec<(u64, &NodeInstance)> = nodes
            .iter()
            .filter_map(|n| Some((n.node_id, n.instances.get(*id)?)))
            .collect();
        violations.extend(compare_replicas(id, &copies));
        violations.extend(assigned_ids(id, &copies));
    }
    let reads = check_reads(input, &nodes, &mut violations);
    let mut stats = serde_json::Map::new();
    stats.insert("instances".into(), json!(ids.len()));
    stats.insert("history_reads_compared".into(), json!(reads));
    result("P9", name, verdict(violations, Vec::new()), stats)
}

fn compare_replicas(id: &str, copies: &[(u64, &NodeInstance)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (node_a, a)) in copies.iter().enumerate() {
        for (node_b, b) in copies
            .iter()
            .skip(i + 1)
            .filter(|(_, b)| b.execution_id == a.execution_id)
        {
            let differs = a
                .history
                .iter()
                .zip(&b.history)
                .position(|(x, y)| x.digest != y.digest);
            if let Some(at) = differs {
                out.push(format!(
                    "{id} execution {}: position {at} is {} on node {node_a} but {} on node {node_b}",
                    a.execution_id, a.history[at].kind, b.history[at].kind
                ));
            }
        }
    }
    out
}

fn assigned_ids(id: &str, copies: &[(u64, &NodeInstance)]) -> Vec<String> {
    let mut digests: BTreeMap<(&str, i32), Vec<(&str, u64)>> = BTreeMap::new();
    for (node, instance) in copies {
        for event in instance.history.iter().filter(|e| e.event_id >= 0) {
            let seen = digests
                .entry((instance.execution_id.as_str(), event.event_id))
                .or_default();
            if !seen.iter().any(|(d, _)| *d == event.digest) {
                seen.push((event.digest.as_str(), *node));
            }
        }
    }
    digests
        .into_iter()
        .filter(|(_, seen)| seen.len() > 1)
        .map(|((execution, event_id), seen)| {
            let nodes: Vec<String> = seen.iter().map(|(_, n)| n.to_string()).collect();
            format!(
                "{id} execution {execution}: event id {event_id} has {} values (nodes {})",
                seen.len(),
                nodes.join(", ")
            )
        })
        .collect()
}

/// Content equality, without the digest.
fn same(a: &Event, b: &Event) -> bool {
    (
        a.event_id,
        &a.kind,
        a.timestamp_ns,
        a.scheduled_id,
        &a.name,
        a.fire_at_ns,
        &a.data,
    ) == (
        b.event_id,
        &b.kind,
        b.timestamp_ns,
        b.scheduled_id,
        &b.name,
        b.fire_at_ns,
        &b.data,
    )
}

/// Each `ok` history read against each node's final history of the same execution.
fn check_reads(input: &Input<'_>, nodes: &[&NodeState], violations: &mut Vec<String>) -> usize {
    let mut compared = 0;
    for read in operations(input.history)
        .iter()
        .filter(|op| op.f() == "history" && op.is_ok())
    {
        let Some(id) = read.instance_id() else {
            continue;
        };
        let Some(events) = read.value().get("events").cloned() else {
            continue;
        };
        let Ok(events) = serde_json::from_value::<Vec<Event>>(events) else {
            continue;
        };
        let Some(read_start) = events.iter().find(|e| e.kind == "ExecutionStarted") else {
            continue;
        };
        for node in nodes {
            let Some(instance) = node.instances.get(id) else {
                continue;
            };
            let final_start = instance
                .history
                .iter()
                .find(|e| e.kind == "ExecutionStarted");
            if !final_start.is_some_and(|e| same(e, read_start)) {
                continue;
            }
            compared += 1;
            let prefix = events.len() <= instance.history.len()
                && events
                    .iter()
                    .zip(&instance.history)
                    .all(|(a, b)| same(a, b));
            if !prefix {
                violations.push(format!(
                    "{id}: history read #{} ({} events) is not a prefix of node {}'s final history ({} events)",
                    read.end(), events.len(), node.node_id, instance.history.len()
                ));
            }
        }
    }
    compared
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::history::OpType;

    fn chain(steps: i32) -> NodeInstance {
        let mut h = vec![orchestrator_started(1), started("{}")];
        for k in 1..=steps {
            h.push(scheduled(k, "step"));
            h.push(task_completed(k, &format!("r{k}")));
        }
        instance("c", "RUNNING", h)
    }

    fn read(h: &mut Hist, events: &[Event]) {
        h.call(
            1,
            OpType::Ok,
            "history",
            json!({ "instance_id": "c", "events": events }),
        );
    }

    #[test]
    fn lagging_prefix_and_prefix_reads_pass() {
        let mut s = three(vec![chain(3)]);
        s.nodes[2] = node(3, Some(8), vec![chain(2)]);
        s.converged = false;
        let mut h = Hist::default();
        read(&mut h, &chain(1).history);
        let r = run(check, &h.ops, &s, &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["history_reads_compared"], json!(3));
    }

    #[test]
    fn divergent_position_is_caught_even_unconverged() {
        let mut s = three(vec![chain(2)]);
        let mut other = chain(1);
        other.history.push(scheduled(2, "other"));
        s.nodes[2] = node(3, Some(8), vec![other]);
        s.converged = false;
        let v = violations(&run(check, &[], &s, &[]));
        assert_eq!(v.len(), 3, "{v:?}");
    }

    #[test]
    fn rewritten_history_read_is_caught() {
        let mut h = Hist::default();
        let mut seen = chain(2).history;
        seen[3] = task_completed(1, "changed");
        read(&mut h, &seen);
        let v = violations(&run(check, &h.ops, &three(vec![chain(2)]), &[]));
        assert_eq!(v.len(), 3, "{v:?}");
    }

    #[test]
    fn nothing_readable_is_unknown() {
        let s = state(vec![node(1, None, vec![])]);
        assert!(is_unknown(&run(check, &[], &s, &[])));
    }
}
