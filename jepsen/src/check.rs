//! Judging a run directory: the checkers over the stored history, final state and witness
//! log, then `results.json` and the summary. `endure-chaos run` ends here, and
//! `endure-chaos check DIR` does only this, so a stored run can be re-judged after a
//! checker changes.

use std::path::Path;

use serde_json::{json, Value};

use crate::checker::{self, Input};
use crate::history::Op;
use crate::recorder::read_jsonl;
use crate::report::{self, RunInfo};
use crate::state::{FinalState, WitnessEntry};

/// Stores `run.json`, then judges the run; the exit code.
pub fn finish(dir: &Path, info: RunInfo, state: FinalState) -> anyhow::Result<i32> {
    std::fs::write(dir.join("run.json"), serde_json::to_string_pretty(&info)?)?;
    let history: Vec<Op> = read_jsonl(&dir.join("history.jsonl"))?;
    let witness: Vec<WitnessEntry> = read_jsonl(&dir.join("witness.jsonl")).unwrap_or_default();
    judge(dir, &info, &history, &state, &witness)
}

/// Runs every checker, writes `results.json`, prints the summary; 0 only when valid.
fn judge(
    dir: &Path,
    info: &RunInfo,
    history: &[Op],
    state: &FinalState,
    witness: &[WitnessEntry],
) -> anyhow::Result<i32> {
    let input = Input {
        history,
        state,
        witness,
    };
    let properties = checker::check_all(&input);
    let valid = report::write(dir, info, history, state, &properties)?;
    print!(
        "{}",
        report::summary(dir, info, history, state, &properties, &valid)
    );
    Ok(if valid == Value::Bool(true) { 0 } else { 1 })
}

/// `endure-chaos check DIR`: re-checks a stored run (reads history.jsonl,
/// final_state.json, witness.jsonl and run.json; writes results.json again).
pub fn check(dir: &Path) -> anyhow::Result<i32> {
    let info: RunInfo = match std::fs::read_to_string(dir.join("run.json")) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(_) => RunInfo {
            harness_errors: vec!["run.json missing: seed and flags unknown".into()],
            flags: json!({}),
            ..Default::default()
        },
    };
    let history: Vec<Op> = read_jsonl(&dir.join("history.jsonl"))?;
    let witness: Vec<WitnessEntry> = read_jsonl(&dir.join("witness.jsonl")).unwrap_or_default();
    let state: FinalState = match std::fs::read_to_string(dir.join("final_state.json")) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(error) => {
            eprintln!("final_state.json unreadable ({error}); checking with an empty final state");
            FinalState::default()
        }
    };
    judge(dir, &info, &history, &state, &witness)
}
