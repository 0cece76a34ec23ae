//! The entry point of the state machine: one command in, writes and effects out.

use prost_types::Timestamp;

use crate::records::command::Kind;
use crate::records::Command;
use crate::view::{StateView, Tx, Write};
use crate::{activity, complete_turn, lifecycle, outbox, protocol_text, timers, Error};

/// What the log entry tells the state machine besides the command itself.
#[derive(Clone, Debug, Default)]
pub struct EntryMeta {
    /// Raft log index of the entry; used in invariant checks and error messages.
    pub log_index: u64,
}

/// Something the leader does after the writes are committed. Followers drop effects.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// The instance's record or inbox changed: waiting clients re-check it and the
    /// dispatcher looks whether a turn is ready.
    InstanceChanged {
        /// The instance whose rows changed.
        instance_id: String,
    },
    /// An activity was scheduled and should be sent to a worker.
    ActivityScheduled {
        /// The instance that scheduled it.
        instance_id: String,
        /// The activity's task ID (the ScheduleTask action's ID).
        task_id: i32,
    },
    /// A durable timer was armed for this time.
    TimerArmed {
        /// When it is due: the timer service wakes up no later than this.
        fire_at: Timestamp,
    },
    /// Messages were added to the outbox: the leader delivers them.
    OutboxAppended,
    /// The instance's status changed (`None`: it did not exist / no longer exists).
    /// Feeds the lifecycle metrics.
    StatusChanged {
        /// The instance.
        instance_id: String,
        /// Its workflow name, the metrics' label.
        name: String,
        /// The status before (an `OrchestrationStatus` value).
        from: Option<i32>,
        /// The status after (an `OrchestrationStatus` value).
        to: Option<i32>,
    },
}

/// Why a command changed nothing. (Serde: the Raft response carries it to the proposer.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RejectionCode {
    /// The instance (or the rerun's source) does not exist.
    NotFound,
    /// The instance ID is held by an active instance (or must be unique).
    AlreadyExists,
    /// The command itself is malformed or asks for what the instance's state forbids.
    InvalidArgument,
    /// The instance is in a state that refuses this command (stalled).
    FailedPrecondition,
    /// A completion that does not match the instance's current run or dispatch.
    Stale,
    /// The instance holds as much of something as its cap allows (its inbox); retrying
    /// later can succeed.
    ResourceExhausted,
}

/// A refused command: the code the server maps to a gRPC status and an HTTP code, and the
/// text the client sees.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    /// What kind of refusal; callers act on it.
    pub code: RejectionCode,
    /// The text clients see (some of it is matched by the SDKs).
    pub message: String,
}

impl Rejection {
    /// A refusal with this code and text.
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }

    /// The refusal every client RPC gives for an unknown instance (the SDKs match the text).
    pub fn no_such_instance(instance_id: &str) -> Self {
        Rejection::new(
            RejectionCode::NotFound,
            protocol_text::no_such_instance(instance_id),
        )
    }
}

/// The answer for the proposer: applied (with a purge count) or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The command took effect (its writes are in [`Applied::writes`]).
    Applied {
        /// How many instances a purge deleted; 0 for every other command.
        purged: u32,
    },
    /// The command changed nothing, for this reason.
    Rejected(Rejection),
}

impl Outcome {
    /// Applied, nothing purged: what almost every command answers.
    pub const OK: Outcome = Outcome::Applied { purged: 0 };
}

/// The result of applying one command.
#[derive(Debug, Default)]
pub struct Applied {
    /// Writes to commit in one atomic batch; empty when the command was refused.
    pub writes: Vec<Write>,
    /// What the leader does once the writes are committed; empty when refused.
    pub effects: Vec<Effect>,
    /// The answer for the proposer (always set by [`apply`]; `Option` for `Default`).
    pub outcome: Option<Outcome>,
}

/// Applies one command to the view. A refused command produces no writes and no effects.
pub fn apply(view: &dyn StateView, command: &Command, meta: &EntryMeta) -> Result<Applied, Error> {
    let mut tx = Tx::new(view);
    let now = command.leader_time.unwrap_or_default();
    let ctx = Ctx {
        now,
        id_seed: command.id_seed.clone(),
        log_index: meta.log_index,
    };
    let outcome = match &command.kind {
        None => Outcome::Rejected(Rejection::new(
            RejectionCode::InvalidArgument,
            "command has no kind",
        )),
        Some(Kind::StartInstance(start)) => lifecycle::start::apply(&mut tx, &ctx, start)?,
        Some(Kind::RaiseEvent(raise)) => lifecycle::raise::apply(&mut tx, &ctx, raise)?,
        Some(Kind::Terminate(terminate)) => lifecycle::terminate::apply(&mut tx, &ctx, terminate)?,
        Some(Kind::Suspend(suspend)) => lifecycle::suspend::suspend(&mut tx, &ctx, suspend)?,
        Some(Kind::Resume(resume)) => lifecycle::suspend::resume(&mut tx, &ctx, resume)?,
        Some(Kind::Purge(purge)) => lifecycle::purge::apply(&mut tx, purge)?,
        Some(Kind::CompleteTurn(done)) => complete_turn::apply(&mut tx, &ctx, done)?,
        Some(Kind::CompleteActivity(done)) => activity::apply(&mut tx, &ctx, done)?,
        Some(Kind::FireTimers(fire)) => timers::apply(&mut tx, &ctx, fire)?,
        // Cluster membership bookkeeping: the Raft adapter records it; no workflow state.
        Some(Kind::RetireNode(_)) => Outcome::OK,
        Some(Kind::StallForPayload(stall)) => lifecycle::stall::apply(&mut tx, &ctx, stall)?,
        Some(Kind::Rerun(rerun)) => lifecycle::rerun::apply(&mut tx, &ctx, rerun)?,
        Some(Kind::DeliverMessages(deliver)) => outbox::deliver(&mut tx, &ctx, deliver)?,
        Some(Kind::AckOutbox(ack)) => outbox::ack(&mut tx, ack)?,
    };
    if let Outcome::Rejected(_) = outcome {
        return Ok(Applied {
            outcome: Some(outcome),
            ..Applied::default()
        });
    }
    let (writes, effects) = tx.finish();
    Ok(Applied {
        writes,
        effects,
        outcome: Some(outcome),
    })
}

/// Deterministic context of one apply: the entry's time and the seed for generated IDs.
pub(crate) struct Ctx {
    /// The leader's time stamped on the entry: the time of every event this apply records.
    pub(crate) now: Timestamp,
    /// The proposer's random seed, shared by every replica through the entry.
    pub(crate) id_seed: String,
    /// The entry's log index, mixed into generated IDs.
    pub(crate) log_index: u64,
}

impl Ctx {
    /// The `n`-th ID generated by this command (execution IDs of new runs).
    pub(crate) fn generated_id(&self, n: u32) -> String {
        crate::ids::derive(&self.id_seed, self.log_index, n)
    }
}
