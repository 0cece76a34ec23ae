//! Group commit: one thread per node makes the appended log entries of every shard
//! durable, many appends per fsync.
//!
//! An append writes its batch to RocksDB unsynced (readable at once, so openraft can
//! replicate it) and hands its [`LogFlushed`] callback to the [`GroupCommit`] thread. The
//! thread takes every callback waiting, syncs RocksDB's write-ahead log once, and only then
//! reports each of those appends flushed. The WAL is one ordered file for the whole DB, so
//! one sync makes durable every write before it: the appends of every shard's log, and the
//! state machines' unsynced applies. openraft counts an entry toward the commit quorum only
//! once its callback reports it flushed, so nothing is acknowledged before it is on disk
//! (DESIGN §7.1).
//!
//! With one shard the thread would save nothing (openraft keeps one append of a log in
//! flight, so every sync would cover one append) and its hand-off costs 10-15 % of the
//! throughput (bench/RESULTS.md): a node with one shard syncs each append in the appending
//! task instead ([`GroupCommit::syncs_inline`]). With N shards on a node the thread keeps
//! the fsyncs from growing with N: appends of several shards that wait together share one.
//!
//! A failed sync is reported to every waiting append; openraft then stops the shard (§7.3).

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::Instant;

use openraft::storage::LogFlushed;
use rocksdb::DB;

use crate::types::TypeConfig;

/// Most appends one sync reports, so one callback list stays bounded under any load.
pub const MAX_APPENDS_PER_SYNC: usize = 4_096;

/// An append waiting for the next sync, and when it was written.
struct Waiting {
    flushed: LogFlushed<TypeConfig>,
    written_at: Instant,
}

/// The handle appends send their callbacks to. Cloning shares the one thread; the thread
/// ends when the last handle is dropped.
#[derive(Clone)]
pub struct GroupCommit {
    /// `None`: appends sync inline (one shard).
    waiting: Option<Sender<Waiting>>,
}

impl GroupCommit {
    /// The group commit of a DB holding `shards` logs: a sync thread when there are several
    /// (it holds the DB only while it syncs, so dropping every other owner closes the DB),
    /// inline syncs for one.
    pub fn start(db: &Arc<DB>, shards: u32) -> std::io::Result<Self> {
        if shards <= 1 {
            return Ok(Self { waiting: None });
        }
        let (waiting, queue) = mpsc::channel();
        let db = Arc::downgrade(db);
        std::thread::Builder::new()
            .name("endure-log-sync".to_string())
            .spawn(move || run(db, queue))?;
        Ok(Self {
            waiting: Some(waiting),
        })
    }

    /// Whether an append writes with `sync = true` itself and then calls
    /// [`GroupCommit::synced_inline`], instead of writing unsynced and calling
    /// [`GroupCommit::after_sync`].
    pub fn syncs_inline(&self) -> bool {
        self.waiting.is_none()
    }

    /// Records an append that synced inline, written at `written_at`.
    pub fn synced_inline(&self, written_at: Instant) {
        metrics::counter!("endure_raft_log_syncs_total").increment(1);
        metrics::counter!("endure_raft_log_appends_total").increment(1);
        metrics::histogram!("endure_raft_append_seconds")
            .record(written_at.elapsed().as_secs_f64());
    }

    /// Reports `flushed` once everything written to the DB before this call is synced;
    /// `written_at` is when its append started, for the append latency histogram.
    pub fn after_sync(&self, flushed: LogFlushed<TypeConfig>, written_at: Instant) {
        let waiting = Waiting {
            flushed,
            written_at,
        };
        let sent = match &self.waiting {
            Some(thread) => thread.send(waiting).map_err(|mpsc::SendError(w)| w),
            None => Err(waiting),
        };
        if let Err(waiting) = sent {
            waiting.flushed.log_io_completed(Err(std::io::Error::other(
                "the log sync thread has stopped",
            )));
        }
    }
}

fn run(db: Weak<DB>, queue: Receiver<Waiting>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_APPENDS_PER_SYNC {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let result = sync(&db);
        metrics::counter!("endure_raft_log_syncs_total").increment(1);
        metrics::counter!("endure_raft_log_appends_total").increment(batch.len() as u64);
        for waiting in batch {
            let result = result
                .as_ref()
                .map_err(|e| std::io::Error::other(e.clone()));
            metrics::histogram!("endure_raft_append_seconds")
                .record(waiting.written_at.elapsed().as_secs_f64());
            waiting.flushed.log_io_completed(result.copied());
        }
    }
}

/// One fsync of the DB's write-ahead log; the DB is released before the callbacks run.
fn sync(db: &Weak<DB>) -> Result<(), String> {
    #[cfg(feature = "chaos")]
    fail::fail_point!("storage::append::before_sync", |_| Err(
        "injected failure at storage::append::before_sync".to_string()
    ));
    let Some(db) = db.upgrade() else {
        return Err("the database was closed before the log was synced".to_string());
    };
    let started = Instant::now();
    let result = db.flush_wal(true).map_err(|e| e.to_string());
    metrics::histogram!("endure_raft_log_sync_seconds").record(started.elapsed().as_secs_f64());
    result
}
