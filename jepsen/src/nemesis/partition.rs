//! Network partitions, as modes of the raft links (proxies or nft rules, whichever
//! [`crate::net::Backend`] the run uses; client links stay open, so the
//! clients of a cut-off node see UNAVAILABLE or time out, which the history records as
//! `info`). Shapes: a follower isolated (leader in the majority), the leader isolated (in
//! the minority), one-way (a node hears its peers but nothing it sends arrives), a bridge
//! (A–B and B–C connected, A–C cut) and flapping (isolated 5 s, connected 5 s).

use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{millis, pick_follower, pick_target, Env};
use crate::net::{Link, Mode};

/// How long a partition lasts, ms.
const CUT_MS: (u64, u64) = (5_000, 20_000);
/// How long flapping lasts, ms.
const FLAP_MS: (u64, u64) = (20_000, 30_000);
/// Half period of flapping.
const FLAP_STEP: Duration = Duration::from_secs(5);

const SHAPES: [&str; 5] = [
    "isolate-follower",
    "isolate-leader",
    "one-way",
    "bridge",
    "flapping",
];

pub async fn run(env: &Env, rng: &mut ChaCha8Rng) {
    let shape = SHAPES[rng.random_range(0..SHAPES.len())];
    let mode = if rng.random_bool(0.7) {
        Mode::Blackhole
    } else {
        Mode::Refuse
    };
    let length = if shape == "flapping" {
        millis(rng, FLAP_MS.0, FLAP_MS.1)
    } else {
        millis(rng, CUT_MS.0, CUT_MS.1)
    };
    let slot = match shape {
        "isolate-leader" => pick_target(env, rng, true).await,
        "isolate-follower" => pick_follower(env, rng).await,
        _ => rng.random_range(0..env.cluster.len()),
    };
    let node = env.cluster.node_id(slot);
    if !env.partitionable {
        let reason = "the server has no --peer-route: raft links bypass the proxies";
        return env.skip("partition", shape, &[node], reason);
    }
    let Some(guard) = env.faults.take(&[slot]) else {
        return env.skip(
            "partition",
            shape,
            &[node],
            "another fault holds the quorum margin",
        );
    };
    let n = env.cluster.len();
    let links = cut_links(shape, slot, n, mode);
    let targets = vec![node];
    env.invoke("partition", shape, &targets);
    if let Err(error) = apply(env, &links) {
        env.info("partition", shape, &targets, &format!("{error:#}"));
        // Whatever part got installed must not outlive the action.
        let _ = heal_links(env, &links);
        drop(guard);
        return;
    }
    env.done("partition", shape, &targets, "installed", None);
    if shape == "flapping" {
        let started = Instant::now();
        let mut cut = true;
        while started.elapsed() < length && env.hold(FLAP_STEP).await {
            cut = !cut;
            let changed = if cut {
                apply(env, &links)
            } else {
                heal_links(env, &links)
            };
            if let Err(error) = changed {
                tracing::error!("partition flapping: {error:#}");
            }
        }
    } else {
        env.hold(length).await;
    }
    env.invoke("partition", "heal", &targets);
    match heal_links(env, &links) {
        Ok(()) => env.done("partition", "heal", &targets, "installed", None),
        Err(error) => env.info("partition", "heal", &targets, &format!("{error:#}")),
    }
    drop(guard);
}

/// The link modes of one shape around `slot`.
pub fn cut_links(shape: &str, slot: usize, n: usize, mode: Mode) -> Vec<(Link, Mode)> {
    let others: Vec<usize> = (0..n).filter(|&s| s != slot).collect();
    let mut links = Vec::new();
    match shape {
        "one-way" => {
            for &o in &others {
                links.push((Link::Raft { from: slot, to: o }, Mode::Blackhole));
                links.push((Link::Raft { from: o, to: slot }, Mode::ForwardOnly));
            }
        }
        "bridge" => {
            // `slot` is one end; the next slot is the bridge; every other is the far side.
            let bridge = (slot + 1) % n;
            for &o in others.iter().filter(|&&o| o != bridge) {
                links.push((Link::Raft { from: slot, to: o }, mode));
                links.push((Link::Raft { from: o, to: slot }, mode));
            }
        }
        _ => {
            for &o in &others {
                links.push((Link::Raft { from: slot, to: o }, mode));
                links.push((Link::Raft { from: o, to: slot }, mode));
            }
        }
    }
    links
}

fn apply(env: &Env, links: &[(Link, Mode)]) -> anyhow::Result<()> {
    for &(link, mode) in links {
        env.net.set(link, mode)?;
    }
    Ok(())
}

/// Lets every link pass, trying all of them; the first error.
fn heal_links(env: &Env, links: &[(Link, Mode)]) -> anyhow::Result<()> {
    let mut first = Ok(());
    for &(link, _) in links {
        if let Err(error) = env.net.set(link, Mode::Pass) {
            if first.is_ok() {
                first = Err(error);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_cuts_only_the_far_pair() {
        let links = cut_links("bridge", 0, 3, Mode::Blackhole);
        assert_eq!(links.len(), 2);
        assert!(links.iter().all(|(l, _)| matches!(
            l,
            Link::Raft { from: 0, to: 2 } | Link::Raft { from: 2, to: 0 }
        )));
    }

    #[test]
    fn isolation_cuts_both_directions_of_every_link() {
        assert_eq!(cut_links("isolate-leader", 1, 3, Mode::Refuse).len(), 4);
        let one_way = cut_links("one-way", 1, 3, Mode::Refuse);
        assert!(one_way.contains(&(Link::Raft { from: 1, to: 0 }, Mode::Blackhole)));
        assert!(one_way.contains(&(Link::Raft { from: 0, to: 1 }, Mode::ForwardOnly)));
    }
}
