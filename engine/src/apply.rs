//! The entry point of the state machine: one command in, writes and effects out.

use prost_types::Timestamp;

use crate::records::command::Kind;
use crate::records::Command;
use crate::view::{StateView, Tx, Write};
use crate::{activity, complete_turn, lifecycle, timers, Error};

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
    InstanceChanged { instance_id: String },
    /// An activity was scheduled and should be sent to a worker.
    ActivityScheduled { instance_id: String, task_id: i32 },
    /// A durable timer was armed for this time.
    TimerArmed { fire_at: Timestamp },
    /// The instance's status changed (`None`: it did not exist / no longer exists).
    /// Feeds the lifecycle metrics.
    StatusChanged {
        instance_id: String,
        name: String,
        from: Option<i32>,
        to: Option<i32>,
    },
}

/// Why a command changed nothing. (Serde: the Raft response carries it to the proposer.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RejectionCode {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    /// A completion that does not match the instance's current run or dispatch.
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
}

impl Rejection {
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
            format!("no such instance exists: '{instance_id}'"),
        )
    }
}

/// The answer for the proposer: applied (with a purge count) or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied { purged: u32 },
    Rejected(Rejection),
}

impl Outcome {
    pub const OK: Outcome = Outcome::Applied { purged: 0 };
}

/// The result of applying one command.
#[derive(Debug, Default)]
pub struct Applied {
    /// Writes to commit in one atomic batch; empty when the command was refused.
    pub writes: Vec<Write>,
    pub effects: Vec<Effect>,
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
pub struct Ctx {
    pub now: Timestamp,
    pub id_seed: String,
    pub log_index: u64,
}

impl Ctx {
    /// The `n`-th ID generated by this command (execution IDs of new runs).
    pub fn generated_id(&self, n: u32) -> String {
        crate::ids::derive(&self.id_seed, self.log_index, n)
    }
}
