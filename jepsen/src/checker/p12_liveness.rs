//! P12: liveness after heal.
//!
//! Checked from what the final phase measured: every acknowledged instance became terminal
//! within the drain limit (`FinalState::drain_secs` is `Some`), and a new start succeeded
//! through every node within `T_recover` of the end of the last fault
//! ([`T_RECOVER_SECS`], Restate's 30 s). Offenders are listed.
//!
//! Out of reach: *which* instance stayed non-terminal (P1 names them), and liveness
//! during the faults (only after the heal). An empty probe map is unknown: nothing was
//! probed.

use serde_json::json;

use super::{result, verdict, Input, PropertyResult, Verdict};

/// Longest acceptable time from the end of the last fault to a successful new start.
pub const T_RECOVER_SECS: f64 = 30.0;

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "liveness after heal";
    let state = input.state;
    let mut stats = serde_json::Map::new();
    stats.insert("drain_secs".into(), json!(state.drain_secs));
    stats.insert("new_start_secs".into(), json!(state.new_start_secs));
    if state.new_start_secs.is_empty() {
        let reason = "no new-start probe was recorded".to_string();
        return result("P12", name, Verdict::Unknown { reason }, stats);
    }
    let mut violations = Vec::new();
    if state.drain_secs.is_none() {
        violations.push(
            "not every acknowledged instance was terminal within the drain limit".to_string(),
        );
    }
    for (node, secs) in &state.new_start_secs {
        match secs {
            None => violations.push(format!(
                "node {node}: no new start succeeded within the limit"
            )),
            Some(s) if *s > T_RECOVER_SECS => violations.push(format!(
                "node {node}: first new start after {s:.1} s (limit {T_RECOVER_SECS} s)"
            )),
            Some(_) => {}
        }
    }
    result("P12", name, verdict(violations, Vec::new()), stats)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn drained_and_quick_starts_pass() {
        assert!(is_true(&run(check, &[], &three(vec![]), &[])));
    }

    #[test]
    fn slow_or_missing_start_and_no_drain_are_caught() {
        let mut s = three(vec![]);
        s.drain_secs = None;
        s.new_start_secs.insert(2, Some(31.0));
        s.new_start_secs.insert(3, None);
        let v = violations(&run(check, &[], &s, &[]));
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[1].starts_with("node 2"), "{v:?}");
    }

    #[test]
    fn no_probe_is_unknown() {
        let mut s = three(vec![]);
        s.new_start_secs.clear();
        assert!(is_unknown(&run(check, &[], &s, &[])));
    }
}
