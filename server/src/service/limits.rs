//! Per-node limits on what clients can make a node hold: client writes waiting to commit,
//! long polls waiting for an instance, and worker streams. Over a limit a request is
//! refused at once with [`Error::Overloaded`] (gRPC RESOURCE_EXHAUSTED, HTTP 429 with
//! `Retry-After`) instead of queueing without bound; nothing it asked for has happened.
//!
//! Each admitted request holds a [`Slot`] until it finishes, so the counts are exact and
//! a cancelled request (its future dropped) frees its slot.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Error;
use crate::dispatch;
use crate::telemetry::names;

/// Client writes (start, raise, terminate, suspend, resume, purge, rerun) this node's
/// shard leaders may be proposing at once.
pub const DEFAULT_MAX_PENDING_PROPOSALS: usize = 4_096;
/// WaitForInstanceStart/Completion (and gRPC starts waiting for their first turn) open
/// on this node at once.
pub const DEFAULT_MAX_WAITING_POLLS: usize = 10_000;
/// GetWorkItems streams workers may hold open on this node at once.
pub const DEFAULT_MAX_WORKER_STREAMS: usize = 1_024;
/// Turns one worker stream may hold unanswered.
pub const DEFAULT_MAX_TURNS_PER_WORKER: usize = 1_000;
/// Activities one worker stream may hold unanswered.
pub const DEFAULT_MAX_ACTIVITIES_PER_WORKER: usize = 1_000;
/// Turns this node's shard leaders may have out at once, over all workers.
pub const DEFAULT_MAX_TURNS_IN_FLIGHT: usize = 10_000;
/// Activities this node's shard leaders may have out at once.
pub const DEFAULT_MAX_ACTIVITIES_IN_FLIGHT: usize = 10_000;
/// Events one instance's inbox may hold before a client's raise is refused.
pub const DEFAULT_MAX_INBOX_EVENTS: u64 = 10_000;
/// What a refused client is told to wait before it retries, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;
/// Metadata key (gRPC) and header (HTTP) of that wait; on a RESOURCE_EXHAUSTED status it
/// also tells a forwarding node the refusal is a limit, not a size.
pub const RETRY_AFTER_HEADER: &str = "retry-after";

/// The limits, each named after its flag. The first three are gates on requests (this
/// module); the caps on work in flight are kept by the dispatchers (`dispatch::budget`),
/// the history cap and the timeouts by the dispatcher too, the inbox cap by the engine
/// (the raise carries it) and the payload cap by the service layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub pending_proposals: usize,
    pub waiting_polls: usize,
    pub worker_streams: usize,
    pub turns_per_worker: usize,
    pub activities_per_worker: usize,
    pub turns_in_flight: usize,
    pub activities_in_flight: usize,
    pub history_events: u64,
    pub inbox_events: u64,
    pub payload_bytes: usize,
    pub turn_timeout: Duration,
    pub activity_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pending_proposals: DEFAULT_MAX_PENDING_PROPOSALS,
            waiting_polls: DEFAULT_MAX_WAITING_POLLS,
            worker_streams: DEFAULT_MAX_WORKER_STREAMS,
            turns_per_worker: DEFAULT_MAX_TURNS_PER_WORKER,
            activities_per_worker: DEFAULT_MAX_ACTIVITIES_PER_WORKER,
            turns_in_flight: DEFAULT_MAX_TURNS_IN_FLIGHT,
            activities_in_flight: DEFAULT_MAX_ACTIVITIES_IN_FLIGHT,
            history_events: dispatch::state::MAX_HISTORY_EVENTS,
            inbox_events: DEFAULT_MAX_INBOX_EVENTS,
            payload_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
            turn_timeout: dispatch::state::TURN_REDELIVERY_AFTER,
            activity_timeout: dispatch::state::ACTIVITY_REDELIVERY_AFTER,
        }
    }
}

/// A place under one limit, held until the request ends.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

#[derive(Clone)]
struct Gate {
    slots: Arc<Semaphore>,
    limit: usize,
    /// The metric label and the flag that sets it.
    label: &'static str,
    flag: &'static str,
    what: &'static str,
}

impl Gate {
    fn new(limit: usize, label: &'static str, flag: &'static str, what: &'static str) -> Gate {
        Gate {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            label,
            flag,
            what,
        }
    }

    fn enter(&self) -> Result<Slot, Error> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(Slot(permit)),
            Err(_) => {
                metrics::counter!(names::REQUESTS_OVERLOADED, "limit" => self.label).increment(1);
                Err(Error::overloaded(format!(
                    "this node already has {} {} ({}); retry in {RETRY_AFTER_SECS} s",
                    self.limit, self.what, self.flag
                )))
            }
        }
    }
}

/// The node's gates; clones share the same counts.
#[derive(Clone)]
pub struct Gates {
    proposals: Gate,
    polls: Gate,
    streams: Gate,
}

impl Gates {
    pub fn new(limits: Limits) -> Gates {
        Gates {
            proposals: Gate::new(
                limits.pending_proposals,
                "pending_proposals",
                "--max-pending-proposals",
                "client writes waiting to commit",
            ),
            polls: Gate::new(
                limits.waiting_polls,
                "waiting_polls",
                "--max-waiting-polls",
                "calls waiting for an instance",
            ),
            streams: Gate::new(
                limits.worker_streams,
                "worker_streams",
                "--max-worker-streams",
                "worker streams open",
            ),
        }
    }

    /// A client write about to be proposed.
    pub fn proposal(&self) -> Result<Slot, Error> {
        self.proposals.enter()
    }

    /// A call that waits for an instance's state.
    pub fn poll(&self) -> Result<Slot, Error> {
        self.polls.enter()
    }

    /// A worker's stream.
    pub fn stream(&self) -> Result<Slot, Error> {
        self.streams.enter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_gate_refuses_with_the_flag_and_a_freed_slot_is_reused() {
        let gates = Gates::new(Limits {
            pending_proposals: 2,
            waiting_polls: 1,
            worker_streams: 1,
            ..Limits::default()
        });
        let first = gates.proposal().unwrap();
        let _second = gates.proposal().unwrap();
        let refused = gates.proposal().unwrap_err();
        assert!(matches!(refused, Error::Overloaded(_)), "{refused:?}");
        assert!(
            refused.message().contains("--max-pending-proposals")
                && refused.message().contains("retry in 1 s"),
            "{refused}"
        );
        drop(first);
        let _third = gates.proposal().unwrap();
        // The gates are separate.
        let _poll = gates.poll().unwrap();
        assert!(gates.poll().is_err());
        let _stream = gates.stream().unwrap();
        assert!(gates
            .stream()
            .unwrap_err()
            .message()
            .contains("--max-worker-streams"));
    }
}
