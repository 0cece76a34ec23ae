//! The workload: the test workers ([`worker`]) that run the deterministic workflows
//! ([`workflows`], replayed by [`orchestrator`]) and the clients ([`client`]) that start,
//! signal, control and read instances through the client proxies while the nemeses work.
//! Everything a client does lands in the history; everything a worker executes lands in
//! the witness log.

pub mod client;
pub mod control;
pub mod orchestrator;
pub mod worker;
pub mod workflows;

use std::sync::Mutex;

/// What the clients are asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Issue operations at the configured rate.
    Run,
    /// Stop issuing (the nemesis heals).
    Hold,
    /// Finish what must finish for the drain: the remaining raises, resume suspended.
    Finish,
}

/// Instance IDs any client has started (or may have), for status and history reads.
#[derive(Default)]
pub struct Known {
    ids: Mutex<Vec<String>>,
}

impl Known {
    pub fn add(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.to_owned());
    }

    /// The instance at `pick` modulo the count (None while there is none).
    pub fn pick(&self, pick: usize) -> Option<String> {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        (!ids.is_empty()).then(|| ids[pick % ids.len()].clone())
    }

    pub fn all(&self) -> Vec<String> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One line per workflow, for `endure-chaos list`.
pub const DESCRIPTIONS: [(&str, &str); 5] = [
    (
        "chain",
        "N (2-5) sequential activities, each output the next input",
    ),
    (
        "fanout",
        "20 parallel activities and a child chain workflow",
    ),
    (
        "timers",
        "a timer of 0.5-30 s, then activity after-timer; some with a delayed start",
    ),
    (
        "events",
        "waits for M (3-6) events `e` raised in seq order by one client",
    ),
    (
        "control",
        "a long timer+activity loop the client suspends, resumes, terminates, purges",
    ),
];
