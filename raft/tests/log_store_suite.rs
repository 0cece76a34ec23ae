//! openraft's storage conformance suite (`openraft::testing::Suite`) over the RocksDB
//! [`LogStore`] and Endure's real [`StateMachine`], each suite case on its own temporary DB:
//! once with the tables in RocksDB next to the log (as a node runs), once in memory.
//!
//! `Suite::test_all` returns an error, or panics, on the first case that does not conform.

use std::sync::Arc;

use endure_raft::group_commit::GroupCommit;
use endure_raft::state_machine::StateMachine;
use endure_raft::types::NodeId;
use endure_raft::{LogStore, TypeConfig, LOG_COLUMN_FAMILIES};
use endure_storage::memory::MemoryStore;
use endure_storage::rocks::{open_db, RocksStore};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use tempfile::TempDir;

fn build_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write(&std::io::Error::other(e.to_string())),
    }
}

/// Shard 0's log store on a fresh temporary DB of `shards` shards opened as a node opens it
/// (state machine and log column families), and the RocksStore on the same DB; the guard
/// deletes it. One shard syncs each append inline; more share the group commit's thread.
#[allow(clippy::result_large_err)] // StoreBuilder::build returns openraft's StorageError.
fn open(dir: &TempDir, shards: u32) -> Result<(LogStore, RocksStore), StorageError<NodeId>> {
    let db = open_db(dir.path(), shards, &LOG_COLUMN_FAMILIES).map_err(build_error)?;
    let group_commit = GroupCommit::start(&db, shards).map_err(|e| build_error(e.to_string()))?;
    let log = LogStore::new(db.clone(), 0, group_commit).map_err(build_error)?;
    Ok((log, RocksStore::new(db, 0)))
}

/// The state machine over RocksDB, sharing the log's DB as in `node::start`.
struct OnRocks;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<RocksStore>, TempDir> for OnRocks {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachine<RocksStore>), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(build_error)?;
        let (log, tables) = open(&dir, 1)?;
        let state_machine = StateMachine::open(Arc::new(tables))?;
        Ok((dir, log, state_machine))
    }
}

/// The state machine over the in-memory tables, the log in a DB of two shards (so its
/// appends go through the group commit's sync thread).
struct InMemory;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<MemoryStore>, TempDir> for InMemory {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachine<MemoryStore>), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(build_error)?;
        let (log, _) = open(&dir, 2)?;
        let state_machine = StateMachine::open(Arc::new(MemoryStore::default()))?;
        Ok((dir, log, state_machine))
    }
}

/// Every case of openraft 0.9.25's storage suite, with the tables in RocksDB (one shard:
/// appends synced inline).
///
/// A plain `#[test]`, not `#[tokio::test]`: the suite builds its own multi-thread tokio
/// runtime for each case and would panic inside another runtime.
#[test]
fn log_store_and_state_machine_on_rocksdb_pass_openraft_storage_suite() {
    Suite::test_all(OnRocks).expect("a suite case failed");
}

/// The same suite with the state machine over [`MemoryStore`].
#[test]
fn log_store_and_state_machine_in_memory_pass_openraft_storage_suite() {
    Suite::test_all(InMemory).expect("a suite case failed");
}
