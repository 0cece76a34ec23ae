//! The chaos suite for an Endure cluster (see the README's "Chaos testing").
//!
//! A run ([`run`]) starts three real `endure serve` processes ([`cluster`]) whose every
//! node-to-node and client link goes through a fault-injecting TCP proxy ([`net`]), drives
//! deterministic workflows and clients against them ([`workload`]) while seeded nemeses
//! break things ([`nemesis`]), records everything ([`recorder`]) into a Jepsen-shaped
//! history ([`history`]), heals, reads every replica ([`final_state`], [`state`]), and
//! judges the result ([`checker`], [`report`]).
//!
//! - [`history`]: the Jepsen-shaped operation history (JSONL).
//! - [`state`]: the final per-node state and the witness log the checkers read.
//! - [`checker`]: one property per file, pure functions over the history and final state.
//! - [`cluster`]: spawns, kills, pauses and restarts the server processes; never leaks one.
//! - [`net`]: per-link TCP proxies with switchable pass / refuse / blackhole / one-way modes.
//! - [`nemesis`]: the seeded fault scheduler and one file per fault.
//! - [`workload`]: the test worker, its deterministic orchestrator runner and the clients.
//! - [`recorder`]: the append-only history and witness writers, and the status sampler.
//! - [`final_state`]: drain, liveness probes and per-node replica reads after the heal.
//! - [`rpc`]: one channel constructor, one deadline, one gRPC-result → ok/fail/info mapping.
//! - [`decode`]: protocol history events into the checkers' events (with digests).
//! - [`sampler`]: the periodic `cluster-status` samples for P14.
//! - [`report`]: `results.json` and the one-screen summary.
//! - [`run`]: the phases of `endure-chaos run`.
//! - [`check`]: judging a run directory (also `endure-chaos check DIR`).

pub mod check;
pub mod checker;
pub mod cluster;
pub mod decode;
pub mod final_state;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod recorder;
pub mod report;
pub mod rpc;
pub mod run;
pub mod sampler;
pub mod state;
pub mod workload;
