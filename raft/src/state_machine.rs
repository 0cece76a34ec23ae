//! The Raft state machine: applies committed entries through the pure engine into the
//! store, one atomic commit per entry together with the applied log id and membership.
//!
//! Effects of applied commands are published on a bounded broadcast channel; the leader's
//! dispatcher and waiting clients listen. A listener that falls behind re-reads the tables.

// openraft's storage traits return its `StorageError` (over 200 bytes); the helpers here
// return it too rather than box it only to unbox it at the trait boundary.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use endure_engine::{Effect, EntryMeta, Outcome};
use endure_storage::snapshot::Dump;
use endure_storage::Store;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageError, StorageIOError};
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::types::{Entry, LogId, NodeId, Response, SnapshotMeta, StoredMembership, TypeConfig};

/// Capacity of the effects channel, in applied entries; a slower listener gets `Lagged`.
pub const EFFECTS_CHANNEL_ENTRIES: usize = 16_384;

/// What the state machine stores next to its tables in every commit.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Largest leader time of any applied command (seconds, nanos).
    max_leader_time: (i64, i32),
    /// Node IDs that left the cluster; never accepted again.
    #[serde(default)]
    retired: std::collections::BTreeSet<NodeId>,
}

/// State shared between the state machine and the rest of the node.
pub struct Shared {
    effects: broadcast::Sender<Arc<Vec<Effect>>>,
    /// The largest applied leader time, and when (this node's monotonic clock) it was applied.
    max_leader_time: Mutex<(Timestamp, Instant)>,
    retired: Mutex<std::collections::BTreeSet<NodeId>>,
    /// Counts installed snapshots: the tables were replaced wholesale, without effects, so
    /// anything derived from effects (gauges) must be recomputed.
    snapshot_installs: tokio::sync::watch::Sender<u64>,
    /// Index of the last entry whose state is written to the store (0: none). Not fsynced
    /// by that write; RocksDB's log is in order, so any later synced write (a log append or
    /// purge) makes it durable. The log store never purges past it ([`Shared::written`]).
    written: Arc<AtomicU64>,
    /// Index of the last snapshot built or installed here (0: none).
    snapshot: AtomicU64,
}

impl Shared {
    /// Listens to the effects of entries applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Effect>>> {
        self.effects.subscribe()
    }

    /// Whether the node ID left the cluster before (IDs are never reused).
    pub fn is_retired(&self, node_id: NodeId) -> bool {
        locked(&self.retired).contains(&node_id)
    }

    /// Changes each time a snapshot replaced the tables.
    pub fn snapshot_installs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.snapshot_installs.subscribe()
    }

    /// The index up to which the store holds the state: shared with the log store, which
    /// keeps every entry after it (openraft may ask to purge a snapshot's log before the
    /// state machine has installed that snapshot).
    pub fn written(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// Index of the last snapshot this node built or installed (0: none), known as soon as
    /// it exists (openraft's metrics learn it later).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.load(Ordering::Acquire)
    }

    /// Index of the last entry whose effects the store holds (0: none).
    pub fn written_index(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The largest leader time applied so far: a proposer's clock must not go below it.
    pub fn max_leader_time(&self) -> Timestamp {
        locked(&self.max_leader_time).0
    }

    /// The cluster's time line as this node last saw it, continued: the largest applied
    /// leader time advanced by the time elapsed on this node's monotonic clock since it was
    /// applied (or since the node started, for times it found on disk). Never ahead of the
    /// line it continues, since the entry took time to arrive, and deaf to wall-clock jumps.
    /// A new leader starts its term no earlier, so a lagging wall clock cannot set cluster
    /// time back against real time (timers armed then would fire early in real time).
    pub fn continued_leader_time(&self) -> Timestamp {
        let (at, applied) = *locked(&self.max_leader_time);
        let elapsed = i64::try_from(applied.elapsed().as_nanos()).unwrap_or(i64::MAX);
        endure_engine::time::add_nanos(&at, elapsed)
    }
}

/// Locks a mutex held for a few instructions, never across an `.await`. A poisoned lock
/// means a thread panicked holding it, and a panic already stops the node.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().expect("a thread panicked holding this lock")
}

/// The state machine over a [`Store`].
pub struct StateMachine<S: Store> {
    store: Arc<S>,
    shared: Arc<Shared>,
    meta: AppliedMeta,
    current_snapshot: Arc<Mutex<Option<CurrentSnapshot>>>,
}

/// The last snapshot built or installed: its meta and its bytes.
type CurrentSnapshot = (SnapshotMeta, Vec<u8>);

fn io_error(error: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&std::io::Error::other(error.to_string())).into()
}

impl<S: Store> Clone for StateMachine<S> {
    fn clone(&self) -> Self {
        StateMachine {
            store: self.store.clone(),
            shared: self.shared.clone(),
            meta: self.meta.clone(),
            current_snapshot: self.current_snapshot.clone(),
        }
    }
}

impl<S: Store> StateMachine<S> {
    /// Opens the state machine on a store, resuming from its last commit.
    pub fn open(store: Arc<S>) -> Result<Self, StorageError<NodeId>> {
        let meta = match store.applied_meta().map_err(io_error)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(io_error)?,
            None => AppliedMeta::default(),
        };
        let (seconds, nanos) = meta.max_leader_time;
        let shared = Arc::new(Shared {
            effects: broadcast::channel(EFFECTS_CHANNEL_ENTRIES).0,
            max_leader_time: Mutex::new((Timestamp { seconds, nanos }, Instant::now())),
            retired: Mutex::new(meta.retired.clone()),
            snapshot_installs: tokio::sync::watch::channel(0).0,
            written: Arc::new(AtomicU64::new(index_of(meta.last_applied.as_ref()))),
            snapshot: AtomicU64::new(0),
        });
        Ok(StateMachine {
            store,
            shared,
            meta,
            current_snapshot: Arc::new(Mutex::new(None)),
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    pub fn store(&self) -> Arc<S> {
        self.store.clone()
    }

    fn apply_one(&mut self, entry: Entry) -> Result<Response, StorageError<NodeId>> {
        if let Some(last) = &self.meta.last_applied {
            // Invariant kept in release builds: entries apply once, in order.
            assert!(
                entry.log_id.index > last.index,
                "applied index must strictly increase"
            );
        }
        self.meta.last_applied = Some(entry.log_id);
        let mut response = Response::default();
        let mut effects = Vec::new();
        let mut writes = Vec::new();
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(membership) => {
                self.meta.membership = StoredMembership::new(Some(entry.log_id), membership);
            }
            EntryPayload::Normal(request) => {
                let command = request.0;
                if let Some(endure_engine::records::command::Kind::RetireNode(retire)) =
                    &command.kind
                {
                    self.meta.retired.insert(retire.node_id);
                    locked(&self.shared.retired).insert(retire.node_id);
                }
                let leader_time = command.leader_time.unwrap_or_default();
                let meta = EntryMeta {
                    log_index: entry.log_id.index,
                };
                let applied =
                    endure_engine::apply(self.store.as_ref(), &command, &meta).map_err(io_error)?;
                writes = applied.writes;
                effects = applied.effects;
                response = to_response(applied.outcome);
                self.advance_leader_time(leader_time);
            }
        }
        let appended = writes
            .iter()
            .filter(|w| matches!(w, endure_engine::Write::PutHistory { .. }))
            .count();
        metrics::counter!("endure_history_events_appended_total").increment(appended as u64);
        let meta_bytes = serde_json::to_vec(&self.meta).map_err(io_error)?;
        self.store.commit(&writes, &meta_bytes).map_err(io_error)?;
        self.shared
            .written
            .store(entry.log_id.index, Ordering::Release);
        if !effects.is_empty() {
            // No listener (a follower's dispatcher is idle) is fine.
            let _ = self.shared.effects.send(Arc::new(effects));
        }
        Ok(response)
    }

    fn advance_leader_time(&mut self, leader_time: Timestamp) {
        let current = (leader_time.seconds, leader_time.nanos);
        if current > self.meta.max_leader_time {
            self.meta.max_leader_time = current;
            *locked(&self.shared.max_leader_time) = (leader_time, Instant::now());
        }
    }
}

fn index_of(log_id: Option<&LogId>) -> u64 {
    log_id.map_or(0, |id| id.index)
}

fn to_response(outcome: Option<Outcome>) -> Response {
    match outcome {
        Some(Outcome::Applied { purged }) => Response {
            rejection: None,
            purged,
        },
        Some(Outcome::Rejected(rejection)) => Response {
            rejection: Some(rejection),
            purged: 0,
        },
        None => Response::default(),
    }
}

impl<S: Store> RaftSnapshotBuilder<TypeConfig> for StateMachine<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // The export is one RocksDB point-in-time view; the applied meta comes from the same
        // view, since apply may run on while this builds.
        let bytes = self.store.export().map_err(io_error)?;
        let dump = Dump::decode_export(&bytes).map_err(io_error)?;
        let meta: AppliedMeta = match dump.applied_meta() {
            Some(bytes) => serde_json::from_slice(bytes).map_err(io_error)?,
            None => AppliedMeta::default(),
        };
        let snapshot_id = match &meta.last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id.term, log_id.index, bytes.len()),
            None => format!("empty-{}", bytes.len()),
        };
        let snapshot_meta = SnapshotMeta {
            last_log_id: meta.last_applied,
            last_membership: meta.membership.clone(),
            snapshot_id,
        };
        *locked(&self.current_snapshot) = Some((snapshot_meta.clone(), bytes.clone()));
        self.shared.snapshot.store(
            index_of(snapshot_meta.last_log_id.as_ref()),
            Ordering::Release,
        );
        Ok(Snapshot {
            meta: snapshot_meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl<S: Store> RaftStateMachine<TypeConfig> for StateMachine<S> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        Ok((self.meta.last_applied, self.meta.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        entries
            .into_iter()
            .map(|entry| self.apply_one(entry))
            .collect()
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
        self.store.import(&bytes).map_err(io_error)?;
        let reopened = Self::open(self.store.clone())?;
        self.meta = reopened.meta;
        *locked(&self.shared.retired) = self.meta.retired.clone();
        let (seconds, nanos) = self.meta.max_leader_time;
        *locked(&self.shared.max_leader_time) = (Timestamp { seconds, nanos }, Instant::now());
        self.meta.last_applied = meta.last_log_id;
        self.meta.membership = meta.last_membership.clone();
        self.shared
            .written
            .store(index_of(meta.last_log_id.as_ref()), Ordering::Release);
        *locked(&self.current_snapshot) = Some((meta.clone(), bytes));
        self.shared
            .snapshot
            .store(index_of(meta.last_log_id.as_ref()), Ordering::Release);
        self.shared
            .snapshot_installs
            .send_modify(|installs| *installs += 1);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = locked(&self.current_snapshot).clone();
        Ok(current.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
