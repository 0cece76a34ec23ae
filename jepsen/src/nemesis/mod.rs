//! The nemesis: independent, seeded schedules of faults that may overlap (a composite
//! nemesis is several of them at once), a bookkeeper that keeps a quorum alive in the
//! `safe` profile, and the final heal. Each fault kind lives in its own file; each runs
//! on its own `ChaCha8` stream derived from the run's seed and the fault's name, so a
//! seed reproduces the schedule (when, what kind, which role), whatever the others do.
//!
//! Every action is recorded: an `invoke` `{name, action, targets}`, then `ok` with
//! `outcome` `installed`, `skipped` (with `reason`) or `indeterminate`, or `info` on error.

pub mod clock;
pub mod disk;
pub mod heal;
pub mod kill;
pub mod partition;
pub mod pause;
pub mod wipe;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::history::{OpType, NEMESIS_PROCESS};
use crate::net::Net;
use crate::recorder::Recorder;

/// Every fault kind, in `list` order.
pub const ALL: [&str; 7] = [
    "kill",
    "kill-all",
    "pause",
    "partition",
    "clock",
    "disk",
    "wipe",
];

/// One line per nemesis, for `endure-chaos list`.
pub const DESCRIPTIONS: [(&str, &str); 7] = [
    (
        "kill",
        "kill -9 the leader or a random node, restart it after 2-8 s",
    ),
    (
        "kill-all",
        "kill -9 all nodes at once, restart them after 2-5 s (coordinated crash)",
    ),
    (
        "pause",
        "SIGSTOP the leader or a follower for 1-20 s, or stutter 200 ms stop/200 ms cont",
    ),
    (
        "partition",
        "isolate a node, leader in minority, one-way, bridge, or flapping 5 s on/off",
    ),
    (
        "clock",
        "shift a node's clock by ±1-60 s and jump it back (chaos builds only)",
    ),
    (
        "disk",
        "fill a node's tmpfs data dir (root only), or fail fsync by failpoint (chaos builds)",
    ),
    (
        "wipe",
        "kill a follower, move its data aside, replace it by a fresh node with a new ID",
    ),
];

/// Whether faults may take a quorum away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// At most a minority of nodes is impaired at any time (kill-all excepted, which runs
    /// alone).
    Safe,
    /// Faults overlap freely; only liveness after the heal is expected.
    Unsafe,
}

/// Which slots are impaired right now, and when the last fault ended.
pub struct Faults {
    inner: Mutex<FaultState>,
    profile: Profile,
    nodes: usize,
    /// Largest absolute clock offset injected, ms.
    pub max_skew_ms: AtomicI64,
}

struct FaultState {
    down: BTreeSet<usize>,
    exclusive: bool,
    last_end: Option<Instant>,
}

/// Holds slots impaired; releasing it (drop) records the end of the fault.
pub struct Guard {
    faults: Arc<Faults>,
    slots: Vec<usize>,
    exclusive: bool,
}

impl Faults {
    pub fn new(profile: Profile, nodes: usize) -> Arc<Faults> {
        Arc::new(Faults {
            inner: Mutex::new(FaultState {
                down: BTreeSet::new(),
                exclusive: false,
                last_end: None,
            }),
            profile,
            nodes,
            max_skew_ms: AtomicI64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Impairs `slots` if the profile allows it now.
    pub fn take(self: &Arc<Self>, slots: &[usize]) -> Option<Guard> {
        let mut state = self.lock();
        if state.exclusive || slots.iter().any(|s| state.down.contains(s)) {
            return None;
        }
        let minority = (self.nodes - 1) / 2;
        if self.profile == Profile::Safe && state.down.len() + slots.len() > minority {
            return None;
        }
        state.down.extend(slots.iter().copied());
        Some(Guard {
            faults: self.clone(),
            slots: slots.to_vec(),
            exclusive: false,
        })
    }

    /// Impairs every slot (kill-all): only when nothing else is impaired.
    pub fn take_all(self: &Arc<Self>) -> Option<Guard> {
        let mut state = self.lock();
        if state.exclusive || (self.profile == Profile::Safe && !state.down.is_empty()) {
            return None;
        }
        state.exclusive = true;
        Some(Guard {
            faults: self.clone(),
            slots: Vec::new(),
            exclusive: true,
        })
    }

    /// Marks that a fault ended now (clock and the heal use it directly).
    pub fn mark_end(&self) {
        self.lock().last_end = Some(Instant::now());
    }

    pub fn last_end(&self) -> Option<Instant> {
        self.lock().last_end
    }

    pub fn note_skew(&self, offset_ms: i64) {
        self.max_skew_ms
            .fetch_max(offset_ms.abs(), Ordering::Relaxed);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut state = self.faults.lock();
        for slot in &self.slots {
            state.down.remove(slot);
        }
        if self.exclusive {
            state.exclusive = false;
        }
        state.last_end = Some(Instant::now());
    }
}

/// What every fault needs.
#[derive(Clone)]
pub struct Env {
    pub cluster: Arc<Cluster>,
    pub net: Arc<Net>,
    pub recorder: Arc<Recorder>,
    pub faults: Arc<Faults>,
    pub stop: watch::Receiver<bool>,
    /// Whether raft links can be cut: with proxies only when node-to-node traffic really
    /// goes through them (`--peer-route`); always with namespaces.
    pub partitionable: bool,
    /// Whether each slot's data dir is a size-capped tmpfs the disk nemesis may fill.
    pub tmpfs: bool,
    pub chaos: Arc<clock::ChaosSupport>,
}

impl Env {
    pub fn invoke(&self, name: &str, action: &str, targets: &[u64]) {
        let value = json!({ "name": name, "action": action, "targets": targets });
        self.recorder
            .invoke(NEMESIS_PROCESS, "nemesis", value, None);
    }

    /// Records the completion of an action: `outcome`, and `reason` when skipped.
    pub fn done(
        &self,
        name: &str,
        action: &str,
        targets: &[u64],
        outcome: &str,
        reason: Option<&str>,
    ) {
        let mut value =
            json!({ "name": name, "action": action, "targets": targets, "outcome": outcome });
        if let Some(reason) = reason {
            value["reason"] = Value::String(reason.to_owned());
        }
        self.recorder
            .record(NEMESIS_PROCESS, OpType::Ok, "nemesis", value, None, None);
    }

    /// Records an action that went wrong (it may or may not have taken effect).
    pub fn info(&self, name: &str, action: &str, targets: &[u64], error: &str) {
        let value = json!({ "name": name, "action": action, "targets": targets, "outcome": "indeterminate" });
        self.recorder.record(
            NEMESIS_PROCESS,
            OpType::Info,
            "nemesis",
            value,
            None,
            Some(error.to_owned()),
        );
    }

    /// An action that could not run, recorded as invoke + skipped.
    pub fn skip(&self, name: &str, action: &str, targets: &[u64], reason: &str) {
        self.invoke(name, action, targets);
        self.done(name, action, targets, "skipped", Some(reason));
    }

    /// Sleeps `duration`, or less if the run is stopping; false when stopping.
    pub async fn hold(&self, duration: Duration) -> bool {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = stop.changed() => false,
        }
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// A random duration in `[lo_ms, hi_ms]`.
pub fn millis(rng: &mut ChaCha8Rng, lo_ms: u64, hi_ms: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo_ms..=hi_ms))
}

/// Base pause between two faults of a kind (jittered 0.5-1.5x).
fn base_interval(kind: &str) -> Duration {
    Duration::from_secs(match kind {
        "kill" | "pause" => 15,
        "partition" => 20,
        "clock" => 15,
        "disk" => 30,
        "kill-all" | "wipe" => 45,
        _ => 30,
    })
}

/// Expands `all` and checks names.
pub fn parse_list(list: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "all" {
            out.extend(ALL.iter().map(|s| s.to_string()));
        } else if name == "none" {
        } else if ALL.contains(&name) {
            out.push(name.to_owned());
        } else {
            anyhow::bail!(
                "unknown nemesis {name:?}; known: all, none, {}",
                ALL.join(", ")
            );
        }
    }
    out.dedup();
    Ok(out)
}

/// A stable 64-bit mix of the seed and a name (FNV-1a over the name).
fn stream_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Starts one schedule per kind; they stop when `env.stop` turns true.
pub fn spawn_all(env: &Env, kinds: &[String], seed: u64) -> Vec<tokio::task::JoinHandle<()>> {
    kinds
        .iter()
        .map(|kind| {
            let env = env.clone();
            let kind = kind.clone();
            let rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, &kind));
            tokio::spawn(schedule(env, kind, rng))
        })
        .collect()
}

async fn schedule(env: Env, kind: String, mut rng: ChaCha8Rng) {
    let base = base_interval(&kind);
    let mut first = true;
    loop {
        let mut wait = base.mul_f64(rng.random_range(0.5..1.5));
        if first {
            wait /= 2;
            first = false;
        }
        if !env.hold(wait).await {
            return;
        }
        match kind.as_str() {
            "kill" => kill::kill_one(&env, &mut rng).await,
            "kill-all" => kill::kill_all(&env, &mut rng).await,
            "pause" => pause::run(&env, &mut rng).await,
            "partition" => partition::run(&env, &mut rng).await,
            "clock" => clock::run(&env, &mut rng).await,
            "disk" => disk::run(&env, &mut rng).await,
            "wipe" => wipe::run(&env, &mut rng).await,
            _ => return,
        }
    }
}

/// Picks the leader (if `leader`) or a random slot; the slot and its node ID.
pub async fn pick_target(env: &Env, rng: &mut ChaCha8Rng, leader: bool) -> usize {
    let random = rng.random_range(0..env.cluster.len());
    if leader {
        if let Some(slot) = env.cluster.leader().await {
            return slot;
        }
    }
    random
}

/// Picks a slot that is not the leader (any slot when no leader is known).
pub async fn pick_follower(env: &Env, rng: &mut ChaCha8Rng) -> usize {
    let n = env.cluster.len();
    let offset = rng.random_range(0..n);
    let leader = env.cluster.leader().await;
    (0..n)
        .map(|i| (i + offset) % n)
        .find(|s| Some(*s) != leader)
        .unwrap_or(offset)
}
