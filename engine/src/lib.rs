//! The workflow state machine of Endure: pure, deterministic, no IO.
//!
//! `apply(view, command, meta) -> Applied` turns one replicated [`Command`] into the table
//! writes to commit atomically and the effects the leader acts on after commit. Every
//! replica applies the same commands in the same order and reaches the same state, so
//! nothing here reads a clock, draws a random number or touches the network.
//!
//! Modules:
//! - [`view`]: the read-only [`StateView`] of the tables, the [`Write`]s apply produces and
//!   the transaction overlay that lets one apply read its own writes.
//! - [`apply`]: the entry point; routes each command to its handler.
//! - [`lifecycle`]: start, raise event, terminate, suspend/resume, purge, rerun.
//! - `complete_turn`: applying a worker's answer to a turn: the fence, the event prologue
//!   and one file per action of `OrchestratorResponse` (continue-as-new among them).
//! - [`activity`] and [`timers`]: activity results and due timers.
//! - [`work_items`]: building the work items (turns and activity requests) from the tables.
//! - [`query`]: the client-facing view of an instance (`OrchestrationState`).
//! - [`memory`]: the tables in ordered maps, for tests.
//! - [`ids`] and [`time`]: deterministic ID derivation and timestamp arithmetic.

pub mod activity;
pub mod apply;
pub mod complete_turn;
pub mod error;
pub mod ids;
pub mod lifecycle;
pub mod memory;
pub mod query;
pub mod time;
pub mod timers;
pub mod view;
pub mod work_items;

#[cfg(test)]
mod scenarios;

pub use apply::{apply, Applied, Effect, EntryMeta, Outcome, Rejection, RejectionCode};
pub use endure_proto::endure::internal as records;
pub use error::Error;
pub use records::Command;
pub use view::{StateView, Write};
