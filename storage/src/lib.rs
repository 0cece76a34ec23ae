//! The state machine's tables behind the [`Store`] trait, with two implementations:
//! [`rocks::RocksStore`] (RocksDB, one column family per table, big-endian keys) and
//! [`memory::MemoryStore`] (ordered maps, for tests).
//!
//! Modules:
//! - [`keys`]: the byte layout of every key, ordered as the tables need.
//! - [`rocks`]: the RocksDB store; one atomic batch per apply with the applied meta.
//! - [`memory`]: the in-memory store.
//! - [`snapshot`]: the snapshot format both stores export and import ([`snapshot::Dump`]),
//!   with the named tables ([`snapshot::Table`]) and the applied meta's key.
//! - [`error`]: [`Error`].

pub mod error;
pub mod keys;
pub mod memory;
pub mod rocks;
pub mod snapshot;

use endure_engine::records::{ActivityRecord, InstanceRecord, TimerKey};
use endure_engine::{StateView, Write};
use prost_types::Timestamp;

pub use error::Error;

/// Upper bound on rows one scan returns, so no read builds an unbounded vector.
pub const MAX_SCAN_ROWS: usize = 100_000;

/// The tables of one state machine.
///
/// Contract: [`Store::commit`] applies all writes and the applied meta atomically, in order,
/// or nothing; reads see every commit that returned.
pub trait Store: StateView + Send + Sync + 'static {
    /// Commits one batch of writes together with the applier's meta (last applied log id,
    /// membership), atomically.
    fn commit(&self, writes: &[Write], applied_meta: &[u8]) -> Result<(), Error>;
    /// The meta stored by the last commit.
    fn applied_meta(&self) -> Result<Option<Vec<u8>>, Error>;
    /// Timers due at or before `now`, earliest first, at most `limit`.
    fn due_timers(&self, now: &Timestamp, limit: usize) -> Result<Vec<TimerKey>, Error>;
    /// Due time of the earliest armed timer.
    fn next_timer(&self) -> Result<Option<Timestamp>, Error>;
    /// Instances in key order (shorter IDs first, then bytewise), after `after`, at most `limit`.
    fn list_instances(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, Error>;
    /// Every scheduled activity without a result (re-dispatched after a restart).
    fn pending_activities(&self) -> Result<Vec<(String, i32, ActivityRecord)>, Error>;
    /// About how many timers are armed (cheap; for metrics).
    fn estimate_timers(&self) -> Result<Option<u64>, Error>;
    /// The whole state machine as bytes, from one consistent point in time.
    fn export(&self) -> Result<Vec<u8>, Error>;
    /// Replaces the whole state machine with an export.
    fn import(&self, bytes: &[u8]) -> Result<(), Error>;
}
