//! What the conformance suite does not check: the log store's state survives closing and
//! reopening the DB, and corrupt stored bytes surface as errors instead of panics.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use endure_proto::endure::internal::Command;
use endure_raft::group_commit::GroupCommit;
use endure_raft::types::{Entry, LogId, Membership, Vote};
use endure_raft::{Error, LogStore, Request, LOG_COLUMN_FAMILIES};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload};

fn open_db(path: &Path, column_families: &[&str]) -> rocksdb::DB {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    rocksdb::DB::open_cf(&options, path, column_families).expect("open rocksdb")
}

fn open_store(path: &Path) -> LogStore {
    store_on(Arc::new(open_db(path, &LOG_COLUMN_FAMILIES))).expect("log store")
}

/// Shard 0's log in `db`, with its own group commit.
fn store_on(db: Arc<rocksdb::DB>) -> Result<LogStore, Error> {
    let group_commit = GroupCommit::start(&db, 1).expect("sync thread");
    LogStore::new(db, 0, group_commit)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes
        .map(|index| {
            let payload = match index % 3 {
                0 => EntryPayload::Blank,
                1 => EntryPayload::Normal(Request(Command {
                    id_seed: format!("seed-{index}"),
                    ..Command::default()
                })),
                _ => {
                    EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1, 2, 3])], None))
                }
            };
            Entry {
                log_id: log_id(term, index),
                payload,
            }
        })
        .collect()
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = entries(2, 1..=9);
    {
        let mut store = open_store(dir.path());
        store
            .blocking_append(written.clone())
            .await
            .expect("append");
        store.save_vote(&Vote::new(2, 1)).await.expect("vote");
        store
            .save_committed(Some(log_id(2, 6)))
            .await
            .expect("committed");
        store.purge(log_id(2, 3)).await.expect("purge");
        store.truncate(log_id(2, 8)).await.expect("truncate");
    }
    let mut store = open_store(dir.path());
    assert_eq!(
        store.read_vote().await.expect("vote"),
        Some(Vote::new(2, 1))
    );
    assert_eq!(
        store.read_committed().await.expect("committed"),
        Some(log_id(2, 6))
    );
    let state = store.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 3)));
    assert_eq!(state.last_log_id, Some(log_id(2, 7)));
    let read = store
        .get_log_reader()
        .await
        .try_get_log_entries(..)
        .await
        .expect("read");
    assert_eq!(read, written[3..7].to_vec());
}

#[tokio::test]
async fn purge_of_the_whole_log_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open_store(dir.path());
        store
            .blocking_append(entries(1, 0..=4))
            .await
            .expect("append");
        store.purge(log_id(1, 4)).await.expect("purge");
    }
    let state = open_store(dir.path())
        .get_log_state()
        .await
        .expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
    assert_eq!(state.last_log_id, Some(log_id(1, 4)));
}

/// openraft purges a follower's log up to a snapshot it received as soon as it hands the
/// snapshot to the state machine, before the install is written (a chaos run sampled a node
/// purged to 17548 while applied at 17290). A crash there left neither the entries nor the
/// state they make. The log store bound to the state machine waits until it has written
/// them, then purges all that was asked (purging less left a hole after the snapshot).
#[tokio::test]
async fn a_purge_waits_for_the_state_machine_to_write_what_it_removes() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let written = Arc::new(AtomicU64::new(5));
    let all = entries(1, 0..=20);
    let db = Arc::new(open_db(dir.path(), &LOG_COLUMN_FAMILIES));
    let mut store = store_on(db)
        .expect("log store")
        .keeping_unapplied(written.clone());
    store.blocking_append(all.clone()).await.expect("append");
    let installer = {
        let written = written.clone();
        let reader = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            // Nothing was purged while the state machine had not written it.
            let before = reader.purged_index();
            written.store(20, Ordering::Release);
            before
        })
    };
    store.purge(log_id(1, 20)).await.expect("purge");
    assert_eq!(
        installer.await.unwrap(),
        0,
        "purged before the state was written"
    );
    assert_eq!(store.purged_index(), 20);
    let state = store.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 20)));
}

#[tokio::test]
async fn corrupt_entry_is_a_storage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(open_db(dir.path(), &LOG_COLUMN_FAMILIES));
    let mut store = store_on(db.clone()).expect("log store");
    store
        .blocking_append(entries(1, 1..=3))
        .await
        .expect("append");
    let log_cf = db.cf_handle(LOG_COLUMN_FAMILIES[0]).expect("raft_log cf");
    db.put_cf(&log_cf, 2u64.to_be_bytes(), b"garbage")
        .expect("overwrite");

    assert!(store.try_get_log_entries(1..4).await.is_err());
    assert!(store.try_get_log_entries(1..2).await.is_ok());

    db.put_cf(&log_cf, 3u64.to_be_bytes(), [1u8, 2, 3])
        .expect("overwrite");
    assert!(store.get_log_state().await.is_err());
}

#[tokio::test]
async fn corrupt_vote_is_a_storage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(open_db(dir.path(), &LOG_COLUMN_FAMILIES));
    let mut store = store_on(db.clone()).expect("log store");
    let state_cf = db.cf_handle(LOG_COLUMN_FAMILIES[1]).expect("raft_state cf");
    db.put_cf(&state_cf, b"vote", b"{not json")
        .expect("overwrite");
    assert!(store.read_vote().await.is_err());
}

#[test]
fn missing_column_family_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_db(dir.path(), &["raft_log"]);
    let result = store_on(Arc::new(db));
    assert!(matches!(
        result,
        Err(Error::MissingColumnFamily(name)) if name == "raft_state"
    ));
}
