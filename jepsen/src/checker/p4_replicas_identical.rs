//! P4: history integrity: identical replicas at the same applied index, and well-formed
//! event ids.
//!
//! Checked, only when every node was read and all applied indexes were equal
//! (`FinalState::converged`; otherwise unknown, since replicas at different indexes may
//! legitimately differ):
//! - every instance exists on every node, with the same status, execution id, output and
//!   history (the same sequence of event digests);
//! - on each node, the ids the orchestration assigned (events with `event_id >= 0`:
//!   `TaskScheduled`, `TimerCreated`, `SubOrchestrationInstanceCreated`, `EventSent`,
//!   the completing `ExecutionCompleted`) appear in history order as consecutive integers
//!   with no duplicate: the test worker numbers its steps 1, 2, 3, ... in the order it
//!   emits them and the engine appends a turn's actions in order, so a gap means a lost
//!   action and a repeat means an action applied twice. Events the engine creates itself
//!   carry `-1` and are not numbered.
//!
//! Out of reach: determinism by replay (re-running the orchestrator over the history) is
//! not done here; append-only over time is checked by P9 against the `history` reads.

use serde_json::json;

use super::{result, verdict, Input, PropertyResult, Verdict};
use crate::history::Event;
use crate::state::{NodeInstance, NodeState};

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "replicas identical, history well-formed";
    let state = input.state;
    if let Some(node) = state.nodes.iter().find(|n| n.applied_index.is_none()) {
        let why = node.error.as_deref().unwrap_or("no reason given");
        let reason = format!("node {} could not be read: {why}", node.node_id);
        return result("P4", name, Verdict::Unknown { reason }, Default::default());
    }
    if state.nodes.is_empty() || !state.converged {
        let indexes: Vec<String> = state
            .nodes
            .iter()
            .map(|n| format!("node {}: {:?}", n.node_id, n.applied_index))
            .collect();
        let reason = format!("applied indexes did not converge ({})", indexes.join(", "));
        return result("P4", name, Verdict::Unknown { reason }, Default::default());
    }
    let mut violations = Vec::new();
    for node in &state.nodes {
        for instance in node.instances.values() {
            if let Some(problem) = id_problem(&instance.history) {
                violations.push(format!(
                    "{} on node {}: {problem}",
                    instance.instance_id, node.node_id
                ));
            }
        }
    }
    let reference = &state.nodes[0];
    let mut ids: Vec<&String> = state
        .nodes
        .iter()
        .flat_map(|n| n.instances.keys())
        .collect();
    ids.sort();
    ids.dedup();
    for id in &ids {
        violations.extend(compare_instance(id, reference, &state.nodes[1..]));
    }
    let mut stats = serde_json::Map::new();
    stats.insert("instances".into(), json!(ids.len()));
    stats.insert("applied_index".into(), json!(reference.applied_index));
    result("P4", name, verdict(violations, Vec::new()), stats)
}

/// The assigned ids of one history, if they are not consecutive in order.
fn id_problem(history: &[Event]) -> Option<String> {
    let mut previous: Option<&Event> = None;
    for event in history.iter().filter(|e| e.event_id >= 0) {
        if let Some(prev) = previous {
            if event.event_id != prev.event_id + 1 {
                return Some(format!(
                    "event id {} ({}) follows {} ({}): ids must be consecutive",
                    event.event_id, event.kind, prev.event_id, prev.kind
                ));
            }
        }
        previous = Some(event);
    }
    None
}

/// The instance on every other node against the reference node.
fn compare_instance(id: &str, reference: &NodeState, others: &[NodeState]) -> Vec<String> {
    let mut out = Vec::new();
    let first = reference.instances.get(id);
    for node in others {
        let here = node.instances.get(id);
        let problem = match (first, here) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => Some("exists on one node only".to_string()),
            (Some(a), Some(b)) => difference(a, b),
        };
        if let Some(problem) = problem {
            out.push(format!(
                "{id}: node {} vs node {}: {problem}",
                reference.node_id, node.node_id
            ));
        }
    }
    out
}

fn difference(a: &NodeInstance, b: &NodeInstance) -> Option<String> {
    if a.status != b.status || a.execution_id != b.execution_id || a.output != b.output {
        return Some(format!(
            "record differs ({} {} {:?} vs {} {} {:?})",
            a.status, a.execution_id, a.output, b.status, b.execution_id, b.output
        ));
    }
    let differs_at = a
        .history
        .iter()
        .zip(&b.history)
        .position(|(x, y)| x.digest != y.digest);
    match differs_at {
        Some(at) => Some(format!(
            "history differs at position {at} ({} vs {})",
            a.history[at].kind, b.history[at].kind
        )),
        None if a.history.len() != b.history.len() => Some(format!(
            "history lengths {} vs {}",
            a.history.len(),
            b.history.len()
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn chain() -> NodeInstance {
        let history = vec![
            orchestrator_started(1),
            started("{}"),
            scheduled(1, "step"),
            task_completed(1, "r1"),
            scheduled(2, "step"),
            task_completed(2, "r2"),
            completed(3, "r2"),
        ];
        instance("c", "COMPLETED", history)
    }

    #[test]
    fn identical_replicas_pass() {
        let r = run(check, &[], &three(vec![chain()]), &[]);
        assert!(is_true(&r), "{r:?}");
    }

    #[test]
    fn divergent_replica_is_caught() {
        let mut s = three(vec![chain()]);
        let h = &mut s.nodes[2].instances.get_mut("c").unwrap().history;
        h[3] = task_completed(1, "other");
        let v = violations(&run(check, &[], &s, &[]));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("position 3"), "{v:?}");
    }

    #[test]
    fn duplicated_or_missing_id_is_caught() {
        let mut dup = chain();
        dup.history.insert(3, scheduled(1, "step"));
        let mut gap = chain();
        gap.instance_id = "g".into();
        gap.history.remove(4);
        let v = violations(&run(check, &[], &three(vec![dup, gap]), &[]));
        assert_eq!(v.len(), 6, "{v:?}");
    }

    #[test]
    fn missing_instance_is_caught() {
        let mut s = three(vec![chain()]);
        s.nodes[1].instances.clear();
        assert_eq!(violations(&run(check, &[], &s, &[])).len(), 1);
    }

    #[test]
    fn unconverged_or_unreadable_is_unknown() {
        let mut s = three(vec![chain()]);
        s.nodes[0].applied_index = Some(11);
        s.converged = false;
        assert!(is_unknown(&run(check, &[], &s, &[])));
        let mut s = three(vec![chain()]);
        s.nodes[1].applied_index = None;
        assert!(is_unknown(&run(check, &[], &s, &[])));
    }
}
