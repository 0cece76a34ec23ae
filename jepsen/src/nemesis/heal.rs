//! The heal phase after the nemeses stop: resume every paused node, let every link pass,
//! clear clock offsets and failpoints, free the disks, restart every dead node, and wait
//! until all are ready. The liveness clocks of P12 start when it ends.

use std::collections::HashMap;
use std::time::Duration;

use super::clock::chaos_control;
use super::disk::{ballast_path, SYNC_FAILPOINT};
use super::kill::restart;
use super::Env;

/// How long the heal waits for every node to be ready again.
pub const HEAL_WAIT: Duration = Duration::from_secs(60);

/// Heals everything; records one `heal` action. Returns whether every node is ready.
pub async fn heal(env: &Env) -> bool {
    let slots: Vec<usize> = (0..env.cluster.len()).collect();
    let nodes = env.cluster.node_ids();
    env.invoke("heal", "heal", &nodes);
    for &slot in &slots {
        if env.cluster.is_paused(slot) {
            env.cluster.set_paused(slot, false);
        }
        let _ = std::fs::remove_file(ballast_path(env, slot));
    }
    let net_error = env.net.heal().err();
    if !env.chaos.unsupported() {
        for &slot in &slots {
            if env.cluster.is_running(slot) {
                let failpoints = HashMap::from([(SYNC_FAILPOINT.to_owned(), String::new())]);
                let _ = chaos_control(env, slot, Some(0), failpoints).await;
            }
        }
    }
    restart(env, "heal", &slots).await;
    let mut errors: Vec<String> = net_error.map(|e| format!("{e:#}")).into_iter().collect();
    for &slot in &slots {
        if let Err(error) = env.cluster.wait_ready(slot, HEAL_WAIT).await {
            errors.push(format!("{error:#}"));
        }
    }
    env.faults.mark_end();
    if errors.is_empty() {
        env.done("heal", "heal", &nodes, "installed", None);
        true
    } else {
        env.info("heal", "heal", &nodes, &errors.join("; "));
        false
    }
}
