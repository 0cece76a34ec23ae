//! The stateful parts of a client: the event sender of each `events` instance it started
//! (raises in seq order, an ambiguous raise retried with the same seq until ok or fail) and
//! the life cycle of each `control` instance (suspend → resume, terminate, purge once it
//! ended). At the end of the run [`Client::finish`] completes what the drain needs: the
//! remaining raises, and a resume of everything left suspended.

use std::time::{Duration, Instant};

use super::client::{is_final, Client};
use crate::history::OpType;

/// Longest time the finish phase spends per client.
const FINISH_LIMIT: Duration = Duration::from_secs(60);
/// Pause between two finish retries.
const FINISH_RETRY: Duration = Duration::from_millis(500);

/// The sender of one `events` instance.
pub struct Sender {
    pub instance_id: String,
    /// Events the workflow waits for.
    pub wanted: u64,
    /// The seq to raise next (from 1).
    pub next_seq: u64,
    /// Set after a definite failure (the instance does not exist or refuses events).
    pub abandoned: bool,
}

impl Sender {
    pub fn new(instance_id: &str, wanted: u64) -> Sender {
        Sender {
            instance_id: instance_id.to_owned(),
            wanted,
            next_seq: 1,
            abandoned: false,
        }
    }

    fn pending(&self) -> bool {
        !self.abandoned && self.next_seq <= self.wanted
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlState {
    Running,
    /// Suspended (or maybe: an ambiguous suspend); a resume follows.
    Suspended,
    /// Terminated or completed (or maybe terminated); a purge follows.
    Ended,
    Purged,
}

/// One `control` instance this client started.
pub struct Controlled {
    pub instance_id: String,
    pub state: ControlState,
}

impl Controlled {
    pub fn new(instance_id: &str) -> Controlled {
        Controlled {
            instance_id: instance_id.to_owned(),
            state: ControlState::Running,
        }
    }
}

impl Client {
    /// Raises the next event of one pending sender; false if there is none.
    pub async fn step_raise(&mut self) -> bool {
        let pending: Vec<usize> = (0..self.senders.len())
            .filter(|&i| self.senders[i].pending())
            .collect();
        if pending.is_empty() {
            return false;
        }
        let i = pending[rand::Rng::random_range(&mut self.rng, 0..pending.len())];
        self.raise_one(i).await;
        true
    }

    async fn raise_one(&mut self, i: usize) -> OpType {
        let (id, seq) = (
            self.senders[i].instance_id.clone(),
            self.senders[i].next_seq,
        );
        let kind = self.raise(&id, seq).await;
        match kind {
            OpType::Ok => self.senders[i].next_seq += 1,
            OpType::Fail => self.senders[i].abandoned = true,
            _ => {}
        }
        kind
    }

    /// Moves one control instance a step along its life cycle; false if there is none.
    pub async fn step_control(&mut self) -> bool {
        let live: Vec<usize> = (0..self.controls.len())
            .filter(|&i| self.controls[i].state != ControlState::Purged)
            .collect();
        if live.is_empty() {
            return false;
        }
        let i = live[rand::Rng::random_range(&mut self.rng, 0..live.len())];
        let id = self.controls[i].instance_id.clone();
        let roll: u32 = rand::Rng::random_range(&mut self.rng, 0..100);
        let next = match self.controls[i].state {
            ControlState::Running if roll < 40 => self.suspend(&id).await,
            ControlState::Running if roll < 60 => self.terminate(&id).await,
            ControlState::Running => self.observe(&id).await,
            ControlState::Suspended => self.resume(&id).await,
            ControlState::Ended => self.purge(&id).await,
            ControlState::Purged => ControlState::Purged,
        };
        self.controls[i].state = next;
        true
    }

    async fn suspend(&mut self, id: &str) -> ControlState {
        match self.control("suspend", id).await {
            OpType::Fail => self.observe(id).await,
            _ => ControlState::Suspended,
        }
    }

    async fn resume(&mut self, id: &str) -> ControlState {
        match self.control("resume", id).await {
            OpType::Ok => ControlState::Running,
            OpType::Fail => self.observe(id).await,
            _ => ControlState::Suspended,
        }
    }

    async fn terminate(&mut self, id: &str) -> ControlState {
        match self.control("terminate", id).await {
            OpType::Fail => self.observe(id).await,
            _ => ControlState::Ended,
        }
    }

    async fn purge(&mut self, id: &str) -> ControlState {
        match self.control("purge", id).await {
            OpType::Ok => ControlState::Purged,
            OpType::Fail => self.observe(id).await,
            _ => ControlState::Ended,
        }
    }

    /// A status read deciding the state (Running when unreadable).
    async fn observe(&mut self, id: &str) -> ControlState {
        match self.status(id).await.as_deref() {
            Some("NOT_FOUND") => ControlState::Purged,
            Some("SUSPENDED") => ControlState::Suspended,
            Some(status) if is_final(status) => ControlState::Ended,
            _ => ControlState::Running,
        }
    }

    /// After the heal: raise every remaining event and resume every suspended instance,
    /// retrying ambiguous calls, so that every instance can reach a terminal state.
    pub async fn finish(&mut self) {
        let started = Instant::now();
        while started.elapsed() < FINISH_LIMIT {
            let mut left = false;
            for i in 0..self.senders.len() {
                while self.senders[i].pending() && started.elapsed() < FINISH_LIMIT {
                    if self.raise_one(i).await == OpType::Info {
                        left = true;
                        tokio::time::sleep(FINISH_RETRY).await;
                        break;
                    }
                }
            }
            for i in 0..self.controls.len() {
                if self.controls[i].state == ControlState::Suspended {
                    let id = self.controls[i].instance_id.clone();
                    self.controls[i].state = self.resume(&id).await;
                    left |= self.controls[i].state == ControlState::Suspended;
                }
            }
            if !left {
                return;
            }
            tokio::time::sleep(FINISH_RETRY).await;
        }
    }
}
