//! `results.json` and the one-screen summary. `valid` is `true` only when every property
//! holds and the harness itself did not fail; any violated property makes it `false`, and
//! anything undecided makes it `"unknown"`, which is never a pass (openraft's
//! error-handling semantics). Everything needed to replay a failing run (seed, flags, git
//! revision, nemesis timeline) is stored next to the verdicts.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::checker::{PropertyResult, Verdict};
use crate::history::{Op, OpType, NEMESIS_PROCESS};
use crate::state::FinalState;

/// How the run was started: enough to run it again.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunInfo {
    pub seed: u64,
    pub git_revision: Option<String>,
    /// The command line, as typed.
    pub command: Vec<String>,
    /// The resolved flags.
    pub flags: Value,
    /// Harness problems that make the run undecidable (a node never got ready, ...).
    #[serde(default)]
    pub harness_errors: Vec<String>,
    /// Facts worth knowing when reading the results (skipped capabilities, ...).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Latency figures of one `f`, ms.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The overall verdict as stored: `true`, `false` or `"unknown"`.
pub fn overall(properties: &[PropertyResult], harness_errors: &[String]) -> Value {
    if properties
        .iter()
        .any(|p| matches!(p.verdict, Verdict::False { .. }))
    {
        return json!(false);
    }
    let undecided = properties
        .iter()
        .any(|p| matches!(p.verdict, Verdict::Unknown { .. }));
    if undecided || properties.is_empty() || !harness_errors.is_empty() {
        return json!("unknown");
    }
    json!(true)
}

/// Operation counts per `f` and completion type.
pub fn op_counts(history: &[Op]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for op in history {
        let kind = serde_json::to_value(op.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        *counts
            .entry(op.f.clone())
            .or_default()
            .entry(kind.unwrap_or_default())
            .or_default() += 1;
    }
    counts
}

/// p50/p99 of invoke→completion per `f` (a process has one operation open at a time).
pub fn latencies(history: &[Op]) -> BTreeMap<String, Latency> {
    let mut open: BTreeMap<(u64, String), u64> = BTreeMap::new();
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    // Nemesis kinds overlap on one process, so their pairs are not sequential: skipped.
    for op in history.iter().filter(|op| op.process != NEMESIS_PROCESS) {
        let key = (op.process, op.f.clone());
        if op.kind == OpType::Invoke {
            open.insert(key, op.mono_ns);
        } else if let Some(start) = open.remove(&key) {
            let ms = op.mono_ns.saturating_sub(start) as f64 / 1e6;
            samples.entry(op.f.clone()).or_default().push(ms);
        }
    }
    samples
        .into_iter()
        .map(|(f, mut v)| {
            v.sort_by(|a, b| a.total_cmp(b));
            let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
            let latency = Latency {
                count: v.len(),
                p50_ms: at(0.5),
                p99_ms: at(0.99),
            };
            (f, latency)
        })
        .collect()
}

/// The nemesis actions in order, as compact rows.
pub fn timeline(history: &[Op]) -> Vec<Value> {
    history
        .iter()
        .filter(|op| op.process == NEMESIS_PROCESS && op.kind != OpType::Invoke)
        .map(|op| {
            let mut row = op.value.clone();
            row["at_secs"] = json!((op.mono_ns as f64 / 1e9 * 10.0).round() / 10.0);
            row["type"] = serde_json::to_value(op.kind).unwrap_or_default();
            if let Some(error) = &op.error {
                row["error"] = json!(error);
            }
            row
        })
        .collect()
}

/// Writes `results.json`; returns the overall verdict.
pub fn write(
    dir: &Path,
    info: &RunInfo,
    history: &[Op],
    state: &FinalState,
    properties: &[PropertyResult],
) -> anyhow::Result<Value> {
    let valid = overall(properties, &info.harness_errors);
    let results = json!({
        "valid": valid,
        "seed": info.seed,
        "git_revision": info.git_revision,
        "command": info.command,
        "flags": info.flags,
        "harness_errors": info.harness_errors,
        "notes": info.notes,
        "nemesis_timeline": timeline(history),
        "op_counts": op_counts(history),
        "latencies": latencies(history),
        "final": {
            "converged": state.converged,
            "drain_secs": state.drain_secs,
            "new_start_secs": state.new_start_secs,
            "max_skew_ms": state.max_skew_ms,
            "nodes": state.nodes.iter().map(|n| json!({
                "node_id": n.node_id, "applied_index": n.applied_index,
                "instances": n.instances.len(), "error": n.error,
            })).collect::<Vec<_>>(),
        },
        "properties": properties,
        "logs": "nodes/n*/endure.log",
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    Ok(valid)
}

/// The one-screen summary; its last line is `N passed, M failed`.
pub fn summary(
    dir: &Path,
    info: &RunInfo,
    history: &[Op],
    state: &FinalState,
    properties: &[PropertyResult],
    valid: &Value,
) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "run {}  seed {}  git {}",
        dir.display(),
        info.seed,
        info.git_revision.as_deref().unwrap_or("?")
    ));
    for (f, kinds) in op_counts(history) {
        let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
        line(format!("  {f:<15} {}", parts.join(" ")));
    }
    let rows = timeline(history);
    let count = |o: &str| rows.iter().filter(|r| r["outcome"] == o).count();
    line(format!(
        "nemesis: {} actions: {} installed, {} skipped, {} indeterminate",
        rows.len(),
        count("installed"),
        count("skipped"),
        count("indeterminate")
    ));
    line(format!(
        "final: converged={} drain_secs={:?} new_start_secs={:?}",
        state.converged, state.drain_secs, state.new_start_secs
    ));
    for error in &info.harness_errors {
        line(format!("harness error: {error}"));
    }
    let (mut passed, mut failed, mut unknown) = (0, 0, 0);
    for p in properties {
        let (mark, detail) = match &p.verdict {
            Verdict::True => {
                passed += 1;
                ("PASS", String::new())
            }
            Verdict::False { violations } => {
                failed += 1;
                (
                    "FAIL",
                    format!(
                        "  {} violation(s), first: {}",
                        violations.len(),
                        violations.first().map(String::as_str).unwrap_or("")
                    ),
                )
            }
            Verdict::Unknown { reason } => {
                unknown += 1;
                ("UNKNOWN", format!("  {reason}"))
            }
        };
        line(format!(
            "{:<4} {:<7} {}{}",
            p.property, mark, p.name, detail
        ));
    }
    line(format!("valid: {valid}"));
    line(format!(
        "{passed} passed, {} failed ({unknown} unknown)",
        failed + unknown
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(verdict: Verdict) -> PropertyResult {
        PropertyResult {
            property: "P1".into(),
            name: "x".into(),
            verdict,
            stats: Default::default(),
        }
    }

    #[test]
    fn unknown_is_never_a_pass() {
        assert_eq!(overall(&[prop(Verdict::True)], &[]), json!(true));
        assert_eq!(overall(&[], &[]), json!("unknown"));
        assert_eq!(
            overall(&[prop(Verdict::True)], &["x".into()]),
            json!("unknown")
        );
        let unknown = prop(Verdict::Unknown { reason: "r".into() });
        assert_eq!(
            overall(&[prop(Verdict::True), unknown.clone()], &[]),
            json!("unknown")
        );
        let broken = prop(Verdict::False {
            violations: vec!["v".into()],
        });
        assert_eq!(overall(&[unknown, broken], &[]), json!(false));
    }
}
