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
//! - [`error`]: the one error type, [`Error`].

pub mod error;
pub mod keys;
pub mod memory;
pub mod rocks;
pub mod snapshot;

use endure_engine::records::{ActivityRecord, InstanceRecord, OutboxMessage, TimerKey};
use endure_engine::{StateView, Write};
use prost_types::Timestamp;

pub use error::Error;

/// Upper bound on rows one read returns, so no read builds an unbounded vector. A read of
/// one instance's rows that finds more fails with [`Error::TooManyRows`]; a page asked for
/// larger fails with [`Error::PageTooLarge`]. Nothing is silently cut short.
pub const MAX_SCAN_ROWS: usize = 100_000;

/// Page size [`Store::pending_activities`] reads the activities table in.
pub const PENDING_ACTIVITIES_PAGE_ROWS: usize = 1_000;

/// A scheduled activity without a result: its instance ID, task ID and record.
pub type PendingActivity = (String, i32, ActivityRecord);

/// A message in the outbox: its sequence number and the message.
pub type OutboxRow = (u64, OutboxMessage);

/// [`Error::PageTooLarge`] unless `limit` is within [`MAX_SCAN_ROWS`].
pub(crate) fn check_page(limit: usize) -> Result<(), Error> {
    if limit > MAX_SCAN_ROWS {
        return Err(Error::PageTooLarge {
            requested: limit,
            max_rows: MAX_SCAN_ROWS,
        });
    }
    Ok(())
}

/// [`Error::TooManyRows`] if a read of one instance's rows found more than [`MAX_SCAN_ROWS`].
pub(crate) fn check_rows(table: &'static str, instance_id: &str, rows: usize) -> Result<(), Error> {
    if rows > MAX_SCAN_ROWS {
        return Err(Error::TooManyRows {
            table,
            instance_id: instance_id.to_string(),
            max_rows: MAX_SCAN_ROWS,
        });
    }
    Ok(())
}

/// The tables of one state machine.
///
/// Contract: [`Store::commit`] applies all writes and the applied meta atomically, in order,
/// or nothing; reads see every commit that returned. No read returns more than
/// [`MAX_SCAN_ROWS`] rows, and none returns part of what it was asked for: the `StateView`
/// reads of one instance's rows fail with [`Error::TooManyRows`] instead.
///
/// Object safe: the node and the services above it hold an `Arc<dyn Store>`.
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
    /// Instances in key order (shorter IDs first, then bytewise), after `after`, at most
    /// `limit` ([`Error::PageTooLarge`] above [`MAX_SCAN_ROWS`]).
    fn list_instances(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, Error>;
    /// Scheduled activities without a result in key order (instance as in
    /// [`Store::list_instances`], then task ID), after the `(instance ID, task ID)` cursor,
    /// at most `limit` ([`Error::PageTooLarge`] above [`MAX_SCAN_ROWS`]). Fewer than
    /// `limit` rows: the last page.
    fn pending_activities_page(
        &self,
        after: Option<(&str, i32)>,
        limit: usize,
    ) -> Result<Vec<PendingActivity>, Error>;
    /// Every scheduled activity without a result (re-dispatched after a restart), read in
    /// pages of [`PENDING_ACTIVITIES_PAGE_ROWS`]. As large as the number of activities in
    /// flight; a caller that can work page by page should use
    /// [`Store::pending_activities_page`].
    fn pending_activities(&self) -> Result<Vec<PendingActivity>, Error> {
        let mut all: Vec<PendingActivity> = Vec::new();
        loop {
            let after = all.last().map(|(id, task_id, _)| (id.as_str(), *task_id));
            let page = self.pending_activities_page(after, PENDING_ACTIVITIES_PAGE_ROWS)?;
            let last_page = page.len() < PENDING_ACTIVITIES_PAGE_ROWS;
            all.extend(page);
            if last_page {
                return Ok(all);
            }
        }
    }
    /// Outbox messages with a sequence number above `after`, in order, at most `limit`
    /// ([`Error::PageTooLarge`] above [`MAX_SCAN_ROWS`]).
    fn outbox_page(&self, after: u64, limit: usize) -> Result<Vec<OutboxRow>, Error>;
    /// About how many timers are armed (cheap; for metrics).
    fn estimate_timers(&self) -> Result<Option<u64>, Error>;
    /// The whole state machine as bytes, from one consistent point in time.
    fn export(&self) -> Result<Vec<u8>, Error>;
    /// Replaces the whole state machine with an export.
    fn import(&self, bytes: &[u8]) -> Result<(), Error>;
}
