//! The durable Raft log: openraft's v2 [`RaftLogStorage`] over a shared RocksDB.
//!
//! Two column families hold it:
//! - `raft_log`: one entry per log index, keyed by the index as a big-endian u64 (so key order
//!   is log order), valued by [`codec::encode_entry`].
//! - `raft_state`: the `vote`, the `last_purged` log id and the `committed` log id, as JSON.
//!
//! Durability contract: everything openraft must find after a crash is durable before
//! openraft is told it is: the vote, truncations and purges are written with `sync = true`
//! before the call returns; an append is one unsynced `WriteBatch` (readable at once) whose
//! callback reports it flushed only after the node's group commit has synced the WAL
//! ([`crate::group_commit`]), one fsync for every append waiting, of every shard (a node
//! with one shard syncs the append's own write instead). Any
//! RocksDB failure or undecodable stored bytes is returned as a `StorageError`, on which
//! openraft stops the shard; nothing here retries or panics on stored data (DESIGN §7).
//!
//! RocksDB calls are blocking and run on the caller's task: openraft drives the log store
//! from its single Raft core task; the fsync of appends runs on the group commit's thread.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use endure_storage::rocks::shard_column_family;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, StorageError, StorageIOError};
use rocksdb::{
    AsColumnFamilyRef, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::de::DeserializeOwned;

use crate::codec::{
    self, decode_entry, decode_entry_log_id, decode_log_key, encode_entry, log_key,
};
use crate::error::Error;
use crate::group_commit::GroupCommit;
use crate::types::{Entry, LogId, NodeId, TypeConfig, Vote};

/// Column family of the log entries, keyed by big-endian log index.
const LOG_CF: &str = "raft_log";
/// Column family of the Raft metadata (vote, last purged, committed).
const STATE_CF: &str = "raft_state";

/// Column families the caller must open the DB with (next to its own) before [`LogStore::new`].
pub const LOG_COLUMN_FAMILIES: [&str; 2] = [LOG_CF, STATE_CF];

/// `raft_state` key of the last saved vote: a node must never vote twice in one term.
const VOTE_KEY: &[u8] = b"vote";
/// `raft_state` key of the last committed log id openraft reported, to re-apply on restart.
const COMMITTED_KEY: &[u8] = b"committed";
/// `raft_state` key of the last purged log id: the log state after a purge that emptied the log.
const LAST_PURGED_KEY: &[u8] = b"last_purged";

/// How long a purge waits for the state machine to write what it would purge; past it the
/// purge fails (a storage error stops the node, with nothing lost).
pub const PURGE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The Raft log of one node, stored in RocksDB.
///
/// Cloning is cheap and shares the DB: openraft's log reader is such a clone.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// The shard whose log this is (its column families, see `shard_column_family`).
    shard: u32,
    /// The state machine's written index, when bound to one ([`LogStore::keeping_unapplied`]).
    written: Option<Arc<AtomicU64>>,
    /// The purge point on disk (index, 0: none), for the node's status.
    purged: Arc<AtomicU64>,
    /// Makes appends durable, many per sync, shared by every shard of the DB.
    group_commit: GroupCommit,
}

impl LogStore {
    /// The log of `shard` in a DB the caller opened with [`LOG_COLUMN_FAMILIES`] for that
    /// shard; fails if one is missing, so a misconfigured node stops at startup instead of
    /// at its first append.
    pub fn new(db: Arc<DB>, shard: u32, group_commit: GroupCommit) -> Result<Self, Error> {
        let store = Self {
            db,
            shard,
            group_commit,
            written: None,
            purged: Arc::default(),
        };
        for name in LOG_COLUMN_FAMILIES {
            store.cf(name)?;
        }
        let purged = store.read_state::<LogId>(LAST_PURGED_KEY, "last_purged")?;
        store
            .purged
            .store(purged.map_or(0, |id| id.index), Ordering::Release);
        Ok(store)
    }

    /// Never purges entries the state machine has not written yet (`written`, its last
    /// written index). openraft purges a follower's log up to a snapshot it received while
    /// the state machine may still be installing that snapshot; a crash in between would
    /// leave the node with neither the entries nor the state they make, unable to restart.
    /// A purge asked beyond `written` waits (up to [`PURGE_WAIT`]) until the state machine
    /// has written that far. It must not purge less instead: openraft then appends after
    /// the snapshot and the log gets a hole that a restart cannot load (chaos seed 3001).
    pub fn keeping_unapplied(mut self, written: Arc<AtomicU64>) -> Self {
        self.written = Some(written);
        self
    }

    /// The index the log is purged up to on disk (0: none).
    pub fn purged_index(&self) -> u64 {
        self.purged.load(Ordering::Acquire)
    }

    /// Handle of one of our column families (checked present by [`LogStore::new`]).
    fn cf(&self, name: &'static str) -> Result<impl AsColumnFamilyRef + '_, Error> {
        let name = shard_column_family(self.shard, name);
        self.db
            .cf_handle(&name)
            .ok_or_else(|| Error::MissingColumnFamily(name.into_owned()))
    }

    /// Entries with index in `[start, end)` (`end = None`: to the last one), in log order.
    fn read_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, Error> {
        let cf = self.cf(LOG_CF)?;
        let mut options = ReadOptions::default();
        if let Some(end) = end {
            options.set_iterate_upper_bound(log_key(end));
        }
        let start_key = log_key(start);
        let mode = IteratorMode::From(&start_key, Direction::Forward);
        let mut entries = Vec::new();
        for item in self.db.iterator_cf_opt(&cf, options, mode) {
            let (key, value) = item?;
            let entry = decode_entry(&value)?;
            check_key_matches(decode_log_key(&key)?, &entry.log_id)?;
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Log id of the last entry present, `None` when the log is empty.
    fn last_entry_log_id(&self) -> Result<Option<LogId>, Error> {
        let cf = self.cf(LOG_CF)?;
        let Some(item) = self.db.iterator_cf(&cf, IteratorMode::End).next() else {
            return Ok(None);
        };
        let (key, value) = item?;
        let log_id = decode_entry_log_id(&value)?;
        check_key_matches(decode_log_key(&key)?, &log_id)?;
        Ok(Some(log_id))
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, Error> {
        let last_purged_log_id = self.read_state::<LogId>(LAST_PURGED_KEY, "last_purged")?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// A JSON value of `raft_state`, `None` if it was never written.
    fn read_state<T: DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, Error> {
        let cf = self.cf(STATE_CF)?;
        match self.db.get_pinned_cf(&cf, key)? {
            Some(bytes) => codec::decode_json(what, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Writes all `entries` in one batch: unsynced when the group commit's thread makes them
    /// durable with its next sync (readers see them at once), synced when it
    /// [syncs inline](GroupCommit::syncs_inline).
    fn write_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), Error> {
        let cf = self.cf(LOG_CF)?;
        let mut batch = WriteBatch::default();
        let mut previous_index: Option<u64> = None;
        for entry in entries {
            check_consecutive(previous_index, entry.log_id.index)?;
            previous_index = Some(entry.log_id.index);
            batch.put_cf(&cf, log_key(entry.log_id.index), encode_entry(&entry)?);
        }
        let mut options = WriteOptions::default();
        let inline = self.group_commit.syncs_inline();
        options.set_sync(inline);
        #[cfg(feature = "chaos")]
        if inline {
            fail::fail_point!("storage::append::before_sync", |_| Err(Error::Injected(
                "storage::append::before_sync"
            )));
        }
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    fn save_vote_synced(&self, vote: &Vote) -> Result<(), Error> {
        let cf = self.cf(STATE_CF)?;
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .put_cf_opt(&cf, VOTE_KEY, codec::encode_json("vote", vote)?, &options)?;
        Ok(())
    }

    /// Records the committed log id without an fsync of its own (see `save_committed`).
    fn save_committed_unsynced(&self, committed: Option<LogId>) -> Result<(), Error> {
        let cf = self.cf(STATE_CF)?;
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db.put_cf_opt(
            &cf,
            COMMITTED_KEY,
            codec::encode_json("committed", &committed)?,
            &options,
        )?;
        Ok(())
    }

    /// Deletes the entries from `log_id.index` on, synced.
    fn truncate_synced(&self, log_id: &LogId) -> Result<(), Error> {
        let cf = self.cf(LOG_CF)?;
        let mut batch = WriteBatch::default();
        delete_indexes(&mut batch, &cf, log_id.index, u64::MAX);
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// Deletes the entries up to `log_id.index` and records `log_id` as last purged, atomically
    /// and synced: a restart never sees the entries gone without the purge point moved.
    fn purge_synced(&self, log_id: &LogId) -> Result<(), Error> {
        let log_cf = self.cf(LOG_CF)?;
        let state_cf = self.cf(STATE_CF)?;
        let mut batch = WriteBatch::default();
        delete_indexes(&mut batch, &log_cf, 0, log_id.index);
        batch.put_cf(
            &state_cf,
            LAST_PURGED_KEY,
            codec::encode_json("last_purged", log_id)?,
        );
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        self.purged.store(log_id.index, Ordering::Release);
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        self.read_entries(start, end).map_err(read_logs_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state().map_err(read_logs_error)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        self.save_vote_synced(vote).map_err(write_vote_error)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.read_state(VOTE_KEY, "vote").map_err(read_vote_error)
    }

    /// Not fsynced on its own: a committed id lost in a crash only means openraft re-applies
    /// less on restart (it takes `max(committed, last_applied)` and the leader re-sends the
    /// commit point), and the next synced append or vote makes it durable anyway. Syncing it
    /// would add one fsync to every apply.
    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        self.save_committed_unsynced(committed).map_err(write_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        let committed = self.read_state::<Option<LogId>>(COMMITTED_KEY, "committed");
        committed.map(Option::flatten).map_err(read_error)
    }

    /// Returns once the entries are written (readable); reports them flushed through
    /// `callback` only after the group commit's next sync has made them durable.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let written_at = std::time::Instant::now();
        match self.write_entries(entries) {
            Ok(()) if self.group_commit.syncs_inline() => {
                self.group_commit.synced_inline(written_at);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Ok(()) => {
                self.group_commit.after_sync(callback, written_at);
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_error(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.truncate_synced(&log_id).map_err(write_logs_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        if let Some(written) = &self.written {
            let started = std::time::Instant::now();
            while written.load(Ordering::Acquire) < log_id.index {
                if started.elapsed() > PURGE_WAIT {
                    let error = Error::PurgeAheadOfState {
                        purge: log_id.index,
                        written: written.load(Ordering::Acquire),
                    };
                    return Err(write_logs_error(error));
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        self.purge_synced(&log_id).map_err(write_logs_error)
    }
}

/// `[start, end)` of log indexes covered by `range`; `None` when it is empty by construction.
fn index_range(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&start) => start,
        Bound::Excluded(&start) => start.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&last) => last.checked_add(1),
        Bound::Excluded(&end) => Some(end),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

/// Adds to `batch` the deletion of every entry with index in `[first, last]`.
fn delete_indexes(batch: &mut WriteBatch, cf: &impl AsColumnFamilyRef, first: u64, last: u64) {
    // delete_range excludes its end key, so the entry at `last` is deleted on its own.
    batch.delete_range_cf(cf, log_key(first), log_key(last));
    batch.delete_cf(cf, log_key(last));
}

/// An entry stored under another index than its own means the log is corrupt.
fn check_key_matches(key_index: u64, log_id: &LogId) -> Result<(), Error> {
    if key_index == log_id.index {
        return Ok(());
    }
    Err(Error::Corruption {
        what: "log entry",
        reason: format!("entry {log_id} stored under index {key_index}"),
    })
}

/// openraft hands over consecutive entries; a gap inside one batch would leave a hole.
fn check_consecutive(previous_index: Option<u64>, index: u64) -> Result<(), Error> {
    match previous_index {
        Some(previous) if previous.checked_add(1) != Some(index) => Err(Error::LogGap {
            after: previous,
            next: index,
        }),
        _ => Ok(()),
    }
}

fn read_logs_error(e: Error) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::read_logs(&e),
    }
}

fn write_logs_error(e: Error) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write_logs(&e),
    }
}

fn read_vote_error(e: Error) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::read_vote(&e),
    }
}

fn write_vote_error(e: Error) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write_vote(&e),
    }
}

fn read_error(e: Error) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::read(&e),
    }
}

fn write_error(e: Error) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write(&e),
    }
}
