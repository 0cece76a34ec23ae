//! SIGSTOP / SIGCONT: a paused process keeps its TCP connections open, so peers see a hung
//! node rather than a dead one. A paused old leader, once resumed, must not commit or
//! execute with its old term (P9). Also "stutter": 200 ms stopped, 200 ms running, for a
//! few seconds (a crude slow node).

use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{millis, pick_follower, pick_target, Env};

/// How long a pause lasts, ms.
const PAUSE_MS: (u64, u64) = (1_000, 20_000);
/// How long a stutter lasts, ms.
const STUTTER_MS: (u64, u64) = (2_000, 6_000);
/// Half period of the stutter.
const STUTTER_STEP: Duration = Duration::from_millis(200);

pub async fn run(env: &Env, rng: &mut ChaCha8Rng) {
    let leader = rng.random_bool(0.5);
    let stutter = rng.random_bool(0.3);
    let length = if stutter {
        millis(rng, STUTTER_MS.0, STUTTER_MS.1)
    } else {
        millis(rng, PAUSE_MS.0, PAUSE_MS.1)
    };
    let slot = if leader {
        pick_target(env, rng, true).await
    } else {
        pick_follower(env, rng).await
    };
    let node = env.cluster.node_id(slot);
    let action = match (stutter, leader) {
        (true, _) => "stutter",
        (false, true) => "pause-leader",
        (false, false) => "pause-follower",
    };
    let Some(guard) = env.faults.take(&[slot]) else {
        return env.skip(
            "pause",
            action,
            &[node],
            "another fault holds the quorum margin",
        );
    };
    env.invoke("pause", action, &[node]);
    if !env.cluster.set_paused(slot, true) {
        return env.done(
            "pause",
            action,
            &[node],
            "skipped",
            Some("node was not running"),
        );
    }
    env.done("pause", action, &[node], "installed", None);
    if stutter {
        let started = Instant::now();
        while started.elapsed() < length && !env.stopping() {
            env.cluster.set_paused(slot, false);
            tokio::time::sleep(STUTTER_STEP).await;
            env.cluster.set_paused(slot, true);
            tokio::time::sleep(STUTTER_STEP).await;
        }
    } else {
        env.hold(length).await;
    }
    env.invoke("pause", "resume", &[node]);
    let resumed = env.cluster.set_paused(slot, false);
    let reason = (!resumed).then_some("node was not running");
    env.done(
        "pause",
        "resume",
        &[node],
        if resumed { "installed" } else { "skipped" },
        reason,
    );
    drop(guard);
}
