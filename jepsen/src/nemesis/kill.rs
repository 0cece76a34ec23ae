//! kill -9: of the leader or of a random node (restarted after a few seconds with the same
//! data dir), and of all nodes at once (the coordinated crash of P10: nothing acked may be
//! lost because the engine fsyncs before it acks).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{millis, pick_target, Env};

/// How long a killed node stays down, ms.
const DOWN_MS: (u64, u64) = (2_000, 8_000);
/// How long all nodes stay down after kill-all, ms.
const ALL_DOWN_MS: (u64, u64) = (2_000, 5_000);

pub async fn kill_one(env: &Env, rng: &mut ChaCha8Rng) {
    let leader = rng.random_bool(0.5);
    let down = millis(rng, DOWN_MS.0, DOWN_MS.1);
    let slot = pick_target(env, rng, leader).await;
    let node = env.cluster.node_id(slot);
    let action = if leader { "kill-leader" } else { "kill-random" };
    let Some(guard) = env.faults.take(&[slot]) else {
        return env.skip(
            "kill",
            action,
            &[node],
            "another fault holds the quorum margin",
        );
    };
    env.invoke("kill", action, &[node]);
    let was_running = env.cluster.kill(slot).await;
    let outcome = if was_running { "installed" } else { "skipped" };
    env.done(
        "kill",
        action,
        &[node],
        outcome,
        (!was_running).then_some("node was not running"),
    );
    env.hold(down).await;
    restart(env, "kill", &[slot]).await;
    drop(guard);
}

pub async fn kill_all(env: &Env, rng: &mut ChaCha8Rng) {
    let down = millis(rng, ALL_DOWN_MS.0, ALL_DOWN_MS.1);
    let slots: Vec<usize> = (0..env.cluster.len()).collect();
    let nodes = env.cluster.node_ids();
    let Some(guard) = env.faults.take_all() else {
        return env.skip("kill-all", "kill-all", &nodes, "another fault is active");
    };
    env.invoke("kill-all", "kill-all", &nodes);
    for &slot in &slots {
        env.cluster.kill(slot).await;
    }
    env.done("kill-all", "kill-all", &nodes, "installed", None);
    env.hold(down).await;
    restart(env, "kill-all", &slots).await;
    drop(guard);
}

/// Restarts the slots that are not running, recorded as one `restart` action.
pub async fn restart(env: &Env, name: &str, slots: &[usize]) {
    let dead: Vec<usize> = slots
        .iter()
        .copied()
        .filter(|&s| !env.cluster.is_running(s))
        .collect();
    if dead.is_empty() {
        return;
    }
    let nodes: Vec<u64> = dead.iter().map(|&s| env.cluster.node_id(s)).collect();
    env.invoke(name, "restart", &nodes);
    let mut errors = Vec::new();
    for &slot in &dead {
        if let Err(error) = env.cluster.spawn(slot) {
            errors.push(format!("slot {}: {error:#}", slot + 1));
        }
    }
    if errors.is_empty() {
        env.done(name, "restart", &nodes, "installed", None);
    } else {
        env.info(name, "restart", &nodes, &errors.join("; "));
    }
}
