//! The workflow state machine of Endure: pure, deterministic, no IO.
//!
//! `apply(view, command, meta) -> Applied` turns one replicated [`Command`] into the table
//! writes to commit atomically and the effects the leader acts on after commit. Every
//! replica applies the same commands in the same order and reaches the same state, so
//! nothing here reads a clock, draws a random number or touches the network.
//!
//! Modules, in the order a command meets them (public ones are linked):
//! - [`apply`]: the entry point; routes each command to its handler and returns the
//!   writes, the effects and the outcome.
//! - `view`: the read-only [`StateView`] of the tables, the [`Write`]s apply produces and
//!   the transaction overlay (`Tx`) through which one apply reads its own writes.
//! - [`lifecycle`]: client commands, one file each (start, raise event, terminate,
//!   suspend/resume, purge, rerun, payload stall), and finishing a run.
//! - `complete_turn`: applying a worker's answer to a turn: the fence, the event prologue,
//!   then one file per orchestrator action (continue-as-new among them).
//! - `activity`: applying an activity's result, fenced by the run that scheduled it.
//! - `timers`: firing due durable timers into the run that armed them.
//! - `outbox`: messages between instances: applying a delivery from a shard's outbox
//!   (deduplicated by source shard and sequence) and deleting what was delivered.
//! - [`work_items`]: the other direction: building from the tables the turns and activity
//!   requests workers are sent, and the command that records a turn's answer.
//! - [`query`]: the client-facing view of an instance (`OrchestrationState`).
//! - [`protocol_text`]: the refusal texts and failure types the SDKs and Dapr clients
//!   match on, in one place.
//! - [`memory`]: the tables in ordered maps, for tests and snapshots.
//! - [`shard`]: which shard owns an instance (jump consistent hash), stable forever.
//! - [`time`] and `ids`: timestamp arithmetic and deterministic ID derivation.
//! - `error`: the crate's [`Error`] (only storage reads fail; refusals are outcomes).

#![warn(missing_docs)]

mod activity;
pub mod apply;
mod complete_turn;
mod error;
mod ids;
pub mod lifecycle;
pub mod memory;
mod outbox;
pub mod protocol_text;
pub mod query;
pub mod shard;
pub mod time;
mod timers;
mod view;
pub mod work_items;

pub use apply::{apply, Applied, Effect, EntryMeta, Outcome, Rejection, RejectionCode};
/// The replicated commands and stored records (`endure.internal` protobuf messages).
pub use endure_proto::endure::internal as records;
pub use error::Error;
pub use records::Command;
pub use view::{Mark, StateView, Write};
