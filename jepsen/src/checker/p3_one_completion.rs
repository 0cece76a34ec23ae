//! P3: exactly one completion per execution, and a terminal state is final (this also
//! covers P11's "terminal reads are stable").
//!
//! Checked:
//! - **Per history, per node.** The engine ends a run by appending one
//!   `ExecutionCompleted` (its status says completed, failed or terminated); a terminate
//!   first appends one `ExecutionTerminated`. So a terminal instance's history holds
//!   exactly one `ExecutionCompleted` (or, for an engine that writes only the marker,
//!   exactly one `ExecutionTerminated` and no `ExecutionCompleted`), at most one
//!   `ExecutionTerminated` (and then the status is `TERMINATED`), and nothing after the
//!   ending; a non-terminal instance has neither. Each final history holds one execution.
//! - **Reads.** Once an `ok` status read saw execution `e` terminal, every read invoked
//!   after it completed that sees `e` shows the same status and output.
//! - **Replicas.** Every readable node on which execution `e` is terminal shows the same
//!   status and output for it, and so does every terminal read of `e` (lagging nodes that
//!   are not yet terminal are skipped: they may not have applied the ending).
//!
//! Out of reach: the status inside `ExecutionCompleted` (the decoded event does not carry
//! it, so a history whose ending says FAILED under a COMPLETED record passes), and
//! executions whose histories were replaced before the end (continue-as-new, reuse).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{
    is_terminal, operations, readable_nodes, result, str_field, verdict, Input, Operation,
    PropertyResult, Verdict,
};
use crate::state::NodeInstance;

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "exactly one completion per execution";
    let nodes = readable_nodes(input.state);
    let mut violations = Vec::new();
    for node in &nodes {
        for instance in node.instances.values() {
            if let Some(problem) = ending_problem(instance) {
                violations.push(format!(
                    "{} on node {}: {problem}",
                    instance.instance_id, node.node_id
                ));
            }
        }
    }
    let mut finals: BTreeMap<(String, String), Observed> = BTreeMap::new();
    for node in &nodes {
        for instance in node.instances.values().filter(|i| is_terminal(&i.status)) {
            let seen = Observed {
                status: instance.status.clone(),
                output: normalized(instance.output.clone().map(Value::String).as_ref()),
                at: format!("node {}", node.node_id),
            };
            let key = (instance.instance_id.clone(), instance.execution_id.clone());
            compare(&mut finals, key, seen, &mut violations);
        }
    }
    let terminal_reads = check_reads(input, &mut finals, &mut violations);
    let mut stats = serde_json::Map::new();
    stats.insert("terminal_reads".into(), json!(terminal_reads));
    if nodes.is_empty() && violations.is_empty() {
        let reason = "no node's final state could be read".to_string();
        return result("P3", name, Verdict::Unknown { reason }, stats);
    }
    result("P3", name, verdict(violations, Vec::new()), stats)
}

/// What one history says about its ending, if it is wrong.
fn ending_problem(instance: &NodeInstance) -> Option<String> {
    let history = &instance.history;
    let completed = history
        .iter()
        .filter(|e| e.kind == "ExecutionCompleted")
        .count();
    let terminated = history
        .iter()
        .filter(|e| e.kind == "ExecutionTerminated")
        .count();
    let endings = if completed > 0 { completed } else { terminated };
    if !is_terminal(&instance.status) {
        return (completed + terminated > 0).then(|| {
            format!(
                "status {} but {completed} ExecutionCompleted and {terminated} ExecutionTerminated",
                instance.status
            )
        });
    }
    if endings != 1 || terminated > 1 {
        return Some(format!(
            "status {} with {completed} ExecutionCompleted and {terminated} ExecutionTerminated",
            instance.status
        ));
    }
    if terminated == 1 && instance.status != "TERMINATED" {
        return Some(format!(
            "ExecutionTerminated in a {} history",
            instance.status
        ));
    }
    let last = history.iter().rposition(|e| {
        matches!(
            e.kind.as_str(),
            "ExecutionCompleted" | "ExecutionTerminated"
        )
    });
    match last {
        Some(at) if at + 1 < history.len() => Some(format!(
            "{} event(s) after the ending ({})",
            history.len() - at - 1,
            history[at + 1].kind
        )),
        _ => None,
    }
}

/// An output as compared: absent and empty are the same (an API may render one as the
/// other).
fn normalized(output: Option<&Value>) -> Option<Value> {
    output
        .filter(|v| v.as_str() != Some("") && !v.is_null())
        .cloned()
}

/// A terminal status and output as one node or one read saw it.
#[derive(Clone, Debug)]
struct Observed {
    status: String,
    output: Option<Value>,
    at: String,
}

/// Records the first observation of a terminal execution; later ones must equal it.
fn compare(
    seen: &mut BTreeMap<(String, String), Observed>,
    key: (String, String),
    now: Observed,
    violations: &mut Vec<String>,
) {
    match seen.get(&key) {
        None => {
            seen.insert(key, now);
        }
        Some(first) if first.status != now.status || first.output != now.output => {
            violations.push(format!(
                "{} execution {}: {} {:?} at {}, but {} {:?} at {}",
                key.0, key.1, first.status, first.output, first.at, now.status, now.output, now.at
            ));
        }
        Some(_) => {}
    }
}

/// Reads in history order: a read invoked after a terminal read of the same execution
/// completed must agree with it. Returns how many terminal reads there were.
fn check_reads(
    input: &Input<'_>,
    finals: &mut BTreeMap<(String, String), Observed>,
    violations: &mut Vec<String>,
) -> usize {
    let ops = operations(input.history);
    let mut by_instance: BTreeMap<&str, Vec<&Operation<'_>>> = BTreeMap::new();
    for read in ops.iter().filter(|op| op.f() == "status" && op.is_ok()) {
        if let Some(id) = read.instance_id() {
            by_instance.entry(id).or_default().push(read);
        }
    }
    let mut terminal = 0;
    for read in by_instance.values().flatten() {
        let reads = &by_instance[read.instance_id().unwrap_or_default()];
        let value = read.value();
        let (Some(id), Some(status)) = (read.instance_id(), str_field(value, "status")) else {
            continue;
        };
        let execution = str_field(value, "execution_id").unwrap_or("");
        if !is_terminal(status) || execution.is_empty() {
            continue;
        }
        terminal += 1;
        let output = normalized(value.get("output"));
        let seen = Observed {
            status: status.into(),
            output,
            at: format!("read #{}", read.end()),
        };
        compare(
            finals,
            (id.to_owned(), execution.to_owned()),
            seen.clone(),
            violations,
        );
        for later in reads.iter().filter(|r| r.start() > read.end()) {
            let v = later.value();
            if str_field(v, "execution_id") != Some(execution) {
                continue;
            }
            let now = str_field(v, "status").unwrap_or("");
            if now != status || normalized(v.get("output")) != seen.output {
                violations.push(format!(
                    "{id} execution {execution}: {status} at read #{}, then {now} {:?} at read #{}",
                    read.end(),
                    v.get("output"),
                    later.end()
                ));
            }
        }
    }
    terminal
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn done(id: &str) -> NodeInstance {
        let mut i = instance(id, "COMPLETED", vec![started("{}"), completed(2, "\"x\"")]);
        i.output = Some("\"x\"".into());
        i
    }

    #[test]
    fn one_ending_and_stable_reads_pass() {
        let mut t = instance(
            "t",
            "TERMINATED",
            vec![started("{}"), terminated(), completed(-1, "")],
        );
        t.execution_id = "t-e1".into();
        let s = three(vec![
            done("a"),
            t,
            instance("r", "RUNNING", vec![started("{}")]),
        ]);
        let mut h = Hist::default();
        h.status(1, "a", "RUNNING", "a-e1", None);
        h.status(1, "a", "COMPLETED", "a-e1", Some("\"x\""));
        h.status(2, "a", "COMPLETED", "a-e1", Some("\"x\""));
        let r = run(check, &h.ops, &s, &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["terminal_reads"], json!(2));
    }

    #[test]
    fn two_endings_or_ending_while_running_are_caught() {
        let mut two = done("a");
        two.history.push(completed(3, "\"y\""));
        let early = instance("r", "RUNNING", vec![started("{}"), completed(2, "")]);
        let v = violations(&run(check, &[], &three(vec![two, early]), &[]));
        assert_eq!(v.len(), 6, "{v:?}");
    }

    #[test]
    fn changed_terminal_read_is_caught() {
        let mut h = Hist::default();
        h.status(1, "a", "COMPLETED", "a-e1", Some("\"x\""));
        h.status(2, "a", "FAILED", "a-e1", Some("\"x\""));
        let v = violations(&run(check, &h.ops, &three(vec![done("a")]), &[]));
        assert!(!v.is_empty());
        assert!(v.iter().any(|x| x.contains("then FAILED")), "{v:?}");
    }

    #[test]
    fn replicas_with_different_outputs_are_caught() {
        let mut s = three(vec![done("a")]);
        s.nodes[1].instances.get_mut("a").unwrap().output = Some("\"z\"".into());
        let v = violations(&run(check, &[], &s, &[]));
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn absent_and_empty_outputs_are_equal() {
        let mut t = instance(
            "t",
            "TERMINATED",
            vec![started("{}"), terminated(), completed(-1, "")],
        );
        t.output = Some(String::new());
        let mut h = Hist::default();
        h.status(1, "t", "TERMINATED", "t-e1", None);
        h.status(1, "t", "TERMINATED", "t-e1", Some(""));
        assert!(is_true(&run(check, &h.ops, &three(vec![t]), &[])));
    }

    #[test]
    fn nothing_readable_is_unknown() {
        let s = state(vec![node(1, None, vec![])]);
        assert!(is_unknown(&run(check, &[], &s, &[])));
    }
}
