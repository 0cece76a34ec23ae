//! P10: durability under a coordinated crash: a `kill-all` (every node SIGKILLed at once)
//! loses nothing acknowledged, because the engine fsyncs before it acks.
//!
//! Checked: for each `kill-all` the nemesis reported `installed`, every start acked
//! before the kill began (its `ok` precedes the kill's invoke) exists on every readable
//! node at the end, unless a purge may have removed it (see P1). The verdict is true, with
//! the note "no kill-all in this run", when none happened. A node that has applied less
//! than another may not hold the instance yet: undecided, not a violation.
//!
//! Out of reach: acknowledged raises, terminates and activity results across the crash
//! (P7, P8 and P5 judge their final effects regardless of faults), and single-node kills
//! (P1 covers them: a lost start is lost whatever the fault). With LazyFS absent, a kill
//! loses no page cache, so this proves fsync ordering only where the harness runs LazyFS.

use serde_json::json;

use super::{
    blame, index, operations, purge_may_follow, readable_nodes, result, str_field, verdict, Input,
    PropertyResult, Verdict,
};

pub fn check(input: &Input<'_>) -> PropertyResult {
    let name = "no acknowledged start lost across kill-all";
    let ops = operations(input.history);
    let kills: Vec<u64> = ops
        .iter()
        .filter(|op| op.f() == "nemesis" && op.is_ok())
        .filter(|op| {
            let v = op.value();
            str_field(v, "name") == Some("kill-all")
                && str_field(v, "action") == Some("kill-all")
                && str_field(v, "outcome") == Some("installed")
        })
        .map(|op| op.start())
        .collect();
    let mut stats = serde_json::Map::new();
    stats.insert("kill_alls".into(), json!(kills.len()));
    let Some(&last_kill) = kills.iter().max() else {
        stats.insert("note".into(), json!("no kill-all in this run"));
        return result("P10", name, Verdict::True, stats);
    };
    let nodes = readable_nodes(input.state);
    if nodes.is_empty() {
        let reason = "no node's final state could be read".to_string();
        return result("P10", name, Verdict::Unknown { reason }, stats);
    }
    let by_instance = index(&ops);
    let mut violations = Vec::new();
    let mut undecided = Vec::new();
    let mut covered = 0u64;
    let acked_before_a_kill = ops
        .iter()
        .filter(|op| op.f() == "start" && op.is_ok() && op.end() < last_kill);
    for start in acked_before_a_kill {
        let Some(id) = start.instance_id() else {
            continue;
        };
        if purge_may_follow(&by_instance, id, start.start()) {
            continue;
        }
        covered += 1;
        let kill = kills
            .iter()
            .filter(|&&k| k > start.end())
            .min()
            .copied()
            .unwrap_or(last_kill);
        for node in nodes.iter().filter(|n| !n.instances.contains_key(id)) {
            let text = format!(
                "{id} (start acked at #{}, before the kill-all at #{kill}) is absent on node {}",
                start.end(),
                node.node_id
            );
            blame(node, input.state, text, &mut violations, &mut undecided);
        }
    }
    stats.insert("starts_acked_before_a_kill_all".into(), json!(covered));
    result("P10", name, verdict(violations, undecided), stats)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::history::OpType;

    #[test]
    fn no_kill_all_is_true_with_a_note() {
        let r = run(check, &[], &three(vec![]), &[]);
        assert!(is_true(&r));
        assert_eq!(r.stats["note"], json!("no kill-all in this run"));
    }

    #[test]
    fn surviving_starts_pass_and_lost_ones_are_caught() {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "a");
        h.start(1, OpType::Ok, "b");
        h.nemesis("kill-all", "kill-all", &[1, 2, 3]);
        h.start(1, OpType::Ok, "after");
        let s = three(vec![
            instance("a", "COMPLETED", vec![]),
            instance("b", "COMPLETED", vec![]),
        ]);
        let r = run(check, &h.ops, &s, &[]);
        assert!(is_true(&r), "{r:?}");
        assert_eq!(r.stats["starts_acked_before_a_kill_all"], json!(2));
        let s = three(vec![instance("a", "COMPLETED", vec![])]);
        let v = violations(&run(check, &h.ops, &s, &[]));
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("b (start acked at #3"), "{v:?}");
    }

    #[test]
    fn skipped_kill_all_does_not_count_and_unreadable_is_unknown() {
        let mut h = Hist::default();
        h.start(1, OpType::Ok, "a");
        h.nemesis_invoke("kill-all", "kill-all", &[1, 2, 3]);
        h.nemesis_done("kill-all", "kill-all", &[1, 2, 3], "skipped");
        assert!(is_true(&run(check, &h.ops, &three(vec![]), &[])));
        h.nemesis("kill-all", "kill-all", &[1, 2, 3]);
        let s = state(vec![node(1, None, vec![])]);
        assert!(is_unknown(&run(check, &h.ops, &s, &[])));
    }
}
