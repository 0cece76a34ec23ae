//! openraft's storage conformance suite (`openraft::testing::Suite`) over the RocksDB
//! [`LogStore`], each suite case on its own temporary DB.
//!
//! The suite needs a state machine next to the log store. `SuiteStateMachine` below is a
//! minimal in-memory one that exists ONLY to drive the conformance suite over the log store;
//! Endure's real, durable state machine lives in `raft/src/state_machine.rs`.

// openraft's storage traits answer `StorageError`, a large type this crate does not choose.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use endure_raft::types::{Entry, LogId, NodeId, SnapshotMeta, StoredMembership};
use endure_raft::{LogStore, Response, TypeConfig, LOG_COLUMN_FAMILIES};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

/// Everything the suite checks of a state machine: what was applied last, and the membership.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Normal (application) entries applied, so snapshots carry some application state.
    normal_entries: u64,
}

/// The last snapshot built or installed: its metadata and its serde_json bytes.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    state: AppliedState,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
}

/// In-memory state machine for the conformance suite only (see the module docs).
///
/// Shared behind a mutex because the snapshot builder openraft asks for is a separate value;
/// the lock is never held across an `.await`.
#[derive(Clone, Default)]
struct SuiteStateMachine {
    inner: Arc<Mutex<Inner>>,
}

impl SuiteStateMachine {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("suite state machine mutex poisoned")
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SuiteStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(&inner.state).map_err(|e| StorageError::IO {
            source: StorageIOError::write_snapshot(None, &e),
        })?;
        inner.snapshots_built += 1;
        let last = inner
            .state
            .last_applied
            .map(|id| id.to_string())
            .unwrap_or_default();
        let meta = SnapshotMeta {
            last_log_id: inner.state.last_applied,
            last_membership: inner.state.membership.clone(),
            snapshot_id: format!("{last}-{}", inner.snapshots_built),
        };
        inner.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            bytes: bytes.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SuiteStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        let inner = self.lock();
        Ok((inner.state.last_applied, inner.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut responses = Vec::new();
        for entry in entries {
            inner.state.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(_) => inner.state.normal_entries += 1,
                EntryPayload::Membership(membership) => {
                    inner.state.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            responses.push(Response::default());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let state: AppliedState = serde_json::from_slice(&bytes).map_err(|e| StorageError::IO {
            source: StorageIOError::read_snapshot(Some(meta.signature()), &e),
        })?;
        let mut inner = self.lock();
        inner.state = state;
        inner.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            bytes,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner.snapshot.clone().map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.bytes)),
        }))
    }
}

/// Opens a RocksDB with the log store's column families, as a node would.
fn open_db(dir: &TempDir) -> Result<rocksdb::DB, rocksdb::Error> {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    rocksdb::DB::open_cf(&options, dir.path(), LOG_COLUMN_FAMILIES)
}

fn build_error(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write(e),
    }
}

/// Builds a fresh log store on its own temporary DB (the guard deletes it) per suite case.
struct TempRocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, SuiteStateMachine, TempDir> for TempRocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, SuiteStateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| build_error(&e))?;
        let db = open_db(&dir).map_err(|e| build_error(&e))?;
        let store = LogStore::new(Arc::new(db)).map_err(|e| build_error(&e))?;
        Ok((dir, store, SuiteStateMachine::default()))
    }
}

/// Runs every case of openraft 0.9.25's storage suite.
///
/// A plain `#[test]`, not `#[tokio::test]`: the suite builds its own multi-thread tokio
/// runtime for each case and would panic inside another runtime.
#[test]
fn log_store_passes_openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(TempRocksBuilder)
}
