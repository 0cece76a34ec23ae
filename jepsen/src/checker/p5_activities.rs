//! P5: activities run at least once; their results are recorded exactly once, and never
//! without a real execution (no phantom result).
//!
//! Checked on every readable node's final history (one execution per history):
//! - at most one `TaskCompleted`/`TaskFailed` per `TaskScheduled` id, and none for an id
//!   that was never scheduled;
//! - in a `COMPLETED` instance, exactly one per `TaskScheduled`, and at least one witness
//!   entry `(instance_id, task_id)` for each scheduled task (the suite's workflows await
//!   every task they schedule before completing);
//! - every `TaskCompleted`'s result equals the `output` of a witness entry with the same
//!   `(instance_id, task_id)`. The worker's output embeds the dispatch's completion token,
//!   so a match names the very execution that produced the recorded result.
//!
//! Measured, never failed: duplicate executions (witness entries per `(instance, task)`
//! beyond the first): how many tasks ran more than once, the extra runs, the maximum and
//! the p99 of runs per task.
//!
//! Out of reach: witness entries carry no execution id. When an instance ID is reused or
//! continues as new, task ids repeat, so "at least once" may be satisfied by an entry of an
//! earlier execution and duplicate counts may include other executions' runs (the phantom
//! check stays exact, thanks to the token). A recorded result of a *stale* (fenced)
//! attempt cannot be told from the current one here. `TaskFailed` needs no witness: the
//! engine may record one itself (a timeout).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;

use super::{quantile, readable_nodes, result, verdict, Input, PropertyResult, Verdict};
use crate::state::{NodeInstance, WitnessEntry};

/// Witness entries by `(instance_id, task_id)`.
type Witnesses<'a> = HashMap<(&'a str, i32), Vec<&'a WitnessEntry>>;

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "activities at least once, results exactly once";
    let mut witnesses: Witnesses<'_> = HashMap::new();
    for entry in input.witness {
        witnesses
            .entry((entry.instance_id.as_str(), entry.task_id))
            .or_default()
            .push(entry);
    }
    let stats = duplicate_stats(&witnesses);
    let nodes = readable_nodes(input.state);
    if nodes.is_empty() {
        let reason = "no node's final state could be read".to_string();
        return result("P5", name, Verdict::Unknown { reason }, stats);
    }
    let mut violations = Vec::new();
    for node in &nodes {
        for instance in node.instances.values() {
            for problem in instance_problems(instance, &witnesses) {
                violations.push(format!(
                    "{} on node {}: {problem}",
                    instance.instance_id, node.node_id
                ));
            }
        }
    }
    result("P5", name, verdict(violations, Vec::new()), stats)
}

fn instance_problems(instance: &NodeInstance, witnesses: &Witnesses<'_>) -> Vec<String> {
    let id = instance.instance_id.as_str();
    let scheduled: BTreeSet<i32> = instance
        .history
        .iter()
        .filter(|e| e.kind == "TaskScheduled")
        .map(|e| e.event_id)
        .collect();
    let mut results: BTreeMap<i32, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for event in instance
        .history
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "TaskCompleted" | "TaskFailed"))
    {
        let Some(task) = event.scheduled_id else {
            out.push(format!("{} without a taskScheduledId", event.kind));
            continue;
        };
        *results.entry(task).or_default() += 1;
        if !scheduled.contains(&task) {
            out.push(format!(
                "{} for task {task}, which was never scheduled",
                event.kind
            ));
        }
        if event.kind == "TaskCompleted"
            && !has_witness_output(witnesses, id, task, event.data.as_deref())
        {
            out.push(format!(
                "phantom result of task {task}: {:?} matches no witnessed execution",
                event.data
            ));
        }
    }
    for (task, count) in results.iter().filter(|(_, c)| **c > 1) {
        out.push(format!("task {task} has {count} recorded results"));
    }
    if instance.status == "COMPLETED" {
        for task in &scheduled {
            if !results.contains_key(task) {
                out.push(format!(
                    "task {task} has no recorded result in a COMPLETED instance"
                ));
            }
            if !witnesses.contains_key(&(id, *task)) {
                out.push(format!("task {task} has no witnessed execution"));
            }
        }
    }
    out
}

fn has_witness_output(witnesses: &Witnesses<'_>, id: &str, task: i32, data: Option<&str>) -> bool {
    let Some(entries) = witnesses.get(&(id, task)) else {
        return false;
    };
    entries.iter().any(|w| Some(w.output.as_str()) == data)
}

fn duplicate_stats(witnesses: &Witnesses<'_>) -> serde_json::Map<String, serde_json::Value> {
    let runs: Vec<f64> = witnesses.values().map(|v| v.len() as f64).collect();
    let duplicated = runs.iter().filter(|&&n| n > 1.0).count();
    let extra: f64 = runs.iter().map(|n| n - 1.0).sum();
    let mut stats = serde_json::Map::new();
    stats.insert("witnessed_tasks".into(), json!(runs.len()));
    stats.insert("tasks_run_more_than_once".into(), json!(duplicated));
    stats.insert("extra_executions".into(), json!(extra as u64));
    stats.insert(
        "max_runs_per_task".into(),
        json!(runs.iter().copied().fold(0.0, f64::max) as u64),
    );
    stats.insert(
        "p99_runs_per_task".into(),
        json!(quantile(&runs, 0.99).unwrap_or(0.0) as u64),
    );
    stats
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::history::Event;

    fn history(results: Vec<Event>) -> Vec<Event> {
        let mut h = vec![started("{}"), scheduled(1, "step")];
        h.extend(results);
        h.push(completed(2, "r1"));
        h
    }

    #[test]
    fn one_result_per_task_with_witness_passes_and_counts_duplicates() {
        let s = three(vec![instance(
            "a",
            "COMPLETED",
            history(vec![task_completed(1, "out-t2")]),
        )]);
        let w = vec![
            witness("a", 1, "t1", "out-t1", 5),
            witness("a", 1, "t2", "out-t2", 6),
        ];
        let r = run(check, &[], &s, &w);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["tasks_run_more_than_once"], json!(1));
        assert_eq!(r.stats["max_runs_per_task"], json!(2));
    }

    #[test]
    fn phantom_double_and_missing_results_are_caught() {
        let w = vec![witness("a", 1, "t1", "out-t1", 5)];
        let phantom = instance("a", "COMPLETED", history(vec![task_completed(1, "forged")]));
        let s = three(vec![phantom]);
        let v = violations(&run(check, &[], &s, &w));
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("phantom"));
        let double = history(vec![
            task_completed(1, "out-t1"),
            task_completed(1, "out-t1"),
        ]);
        let s = three(vec![instance("a", "COMPLETED", double)]);
        assert_eq!(violations(&run(check, &[], &s, &w)).len(), 3);
        let s = three(vec![instance("a", "COMPLETED", history(vec![]))]);
        let v = violations(&run(check, &[], &s, &[]));
        assert_eq!(v.len(), 6, "{v:?}");
    }

    #[test]
    fn running_instance_may_lack_results() {
        let s = three(vec![instance(
            "a",
            "RUNNING",
            vec![started("{}"), scheduled(1, "step")],
        )]);
        assert!(is_true(&run(check, &[], &s, &[])));
    }

    #[test]
    fn nothing_readable_is_unknown() {
        let s = state(vec![node(1, None, vec![])]);
        assert!(is_unknown(&run(check, &[], &s, &[])));
    }
}
