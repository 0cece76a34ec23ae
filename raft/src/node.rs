//! Starting a Raft node on a data directory: open RocksDB, the log store and the state
//! machine, start openraft, and form the cluster on first start only. A running [`Node`]
//! answers what the layers above ask of Raft (who leads, the members, a watch on changes),
//! so they need not read openraft's metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use endure_engine::shard::MAX_SHARDS;
use endure_storage::rocks::{open_db, stored_shard_count, RocksStore};
use endure_storage::Store;
use openraft::{BasicNode, Config, SnapshotPolicy};

use crate::group_commit::GroupCommit;
use crate::log_store::{LogStore, LOG_COLUMN_FAMILIES};
use crate::network::{Channels, Network, Routes};
use crate::probe::{existing_cluster, ExistingCluster, PeerProbe};
use crate::state_machine::{Shared, StateMachine};
use crate::status::{self, RaftWatch, Role, Status};
use crate::types::{NodeId, Raft};

/// Default number of entries between two snapshots; the log behind a snapshot is purged.
pub const SNAPSHOT_EVERY_LOG_ENTRIES: u64 = 20_000;
/// Default number of entries kept behind a snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1_000;

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub node_id: NodeId,
    /// Address other nodes reach this one's internal service at (kept in the membership).
    pub raft_addr: String,
    /// The initial voters with their internal addresses (this node included). Empty: a
    /// single-voter cluster of this node alone.
    pub peers: BTreeMap<NodeId, String>,
    /// Start empty and wait to be added by `endure cluster join` (never initialize).
    pub join: bool,
    /// Log entries between two snapshots.
    pub snapshot_every_logs: u64,
    /// Log entries kept behind a snapshot, for followers that are a little behind.
    pub logs_kept_after_snapshot: u64,
    /// Per peer, the address to connect to instead of its membership address.
    pub routes: Routes,
    /// Shards (Raft groups) of the cluster, fixed when it is created (1 to [`MAX_SHARDS`]).
    pub shards: u32,
    /// Whether the operator chose `shards`: a data directory created with another count is
    /// then refused. A default count gives way to the directory's own.
    pub shards_explicit: bool,
    /// The connections to peers (with the cluster secret they send), shared with the
    /// server's forwarding.
    pub channels: Channels,
}

/// A running node: the Raft handle and the state it applies into.
#[derive(Clone)]
pub struct Node {
    /// openraft itself, for proposing (`client_write`, `ensure_linearizable`), membership
    /// changes and serving the Raft RPCs. Read the cluster through [`Node`]'s methods.
    pub raft: Raft,
    /// The log store openraft drives (a clone), read for the purge point on disk.
    log: LogStore,
    /// The tables the state machine applies into (RocksDB behind the trait).
    pub store: Arc<dyn Store>,
    pub shared: Arc<Shared>,
    pub node_id: NodeId,
    /// The shard this Raft group replicates.
    pub shard: u32,
    /// How this node reaches its peers.
    pub routes: Routes,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the data directory {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("raft: {0}")]
    Raft(String),
}

/// Opens the data directory and starts one Raft group per shard in it (all shards in one
/// RocksDB, each with its own column families). Initializes each group's membership (the
/// peers, or this node alone) only when this node has never been part of a cluster, so a
/// restart never re-initializes or forks it. Every peer may initialize with the same
/// voters: openraft accepts the same initial membership from all of them.
///
/// A node with no Raft state that is not told to join first asks its peers through
/// `probe` whether a cluster already exists ([`crate::probe`]): it then waits to be
/// replicated to, or refuses to start if the leader has replicated to it before.
///
/// Returns the shards' nodes in shard order.
pub async fn start(
    data_dir: &Path,
    options: NodeOptions,
    probe: &impl PeerProbe,
) -> Result<Vec<Node>, StartError> {
    let open_error = |reason: String| StartError::Open {
        path: data_dir.display().to_string(),
        reason,
    };
    if options.shards == 0 || options.shards > MAX_SHARDS {
        return Err(StartError::Raft(format!(
            "--shards must be between 1 and {MAX_SHARDS}, not {}",
            options.shards
        )));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| open_error(e.to_string()))?;
    let mut options = options;
    if !options.shards_explicit {
        let stored = stored_shard_count(data_dir).map_err(|e| open_error(e.to_string()))?;
        options.shards = stored.unwrap_or(options.shards);
    }
    let db = open_db(data_dir, options.shards, &LOG_COLUMN_FAMILIES)
        .map_err(|e| open_error(e.to_string()))?;
    let channels = options.channels.clone();
    let group_commit =
        GroupCommit::start(&db, options.shards).map_err(|e| open_error(e.to_string()))?;
    let mut nodes = Vec::new();
    for shard in 0..options.shards {
        nodes.push(start_shard(&db, shard, &options, &channels, &group_commit, &open_error).await?);
    }
    let initialized = nodes[0]
        .raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let existing = if initialized || options.join {
        ExistingCluster::None
    } else {
        existing_cluster(probe, options.node_id, &options.peers, &options.routes).await
    };
    if existing == ExistingCluster::DataLost {
        return Err(StartError::Raft(format!(
            "this node has no Raft state, but the leader has replicated to node {id} before: \
             its data was lost. Remove it (`endure cluster leave --node-id {id}`) and add the node \
             back under a new ID (`endure serve --join --node-id <new>` and `endure cluster join`)",
            id = options.node_id
        )));
    }
    if options.join || existing != ExistingCluster::None {
        return Ok(nodes);
    }
    let members = initial_members(&options)?;
    for node in &nodes {
        // A crash between two shards' initialization leaves some initialized: each shard
        // is initialized once, on its own record.
        let done = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !done {
            node.raft
                .initialize(members.clone())
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        }
    }
    Ok(nodes)
}

/// Opens one shard's log and state machine in the shared database and starts its Raft.
async fn start_shard(
    db: &Arc<rocksdb::DB>,
    shard: u32,
    options: &NodeOptions,
    channels: &Channels,
    group_commit: &GroupCommit,
    open_error: &impl Fn(String) -> StartError,
) -> Result<Node, StartError> {
    let store = Arc::new(RocksStore::new(db.clone(), shard));
    let state_machine = StateMachine::open(store.clone()).map_err(|e| open_error(e.to_string()))?;
    let shared = state_machine.shared();
    let log_store = LogStore::new(db.clone(), shard, group_commit.clone())
        .map_err(|e| open_error(e.to_string()))?
        .keeping_unapplied(shared.written());
    let log = log_store.clone();
    let config = Config {
        cluster_name: format!("endure-shard-{shard}"),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every_logs.max(1)),
        // Never 0: a follower installing a snapshot still needs the log right behind it.
        max_in_snapshot_log_to_keep: options.logs_kept_after_snapshot.max(1),
        ..Config::default()
    }
    .validate()
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let network = Network {
        routes: options.routes.clone(),
        shard,
        channels: channels.clone(),
    };
    let raft = Raft::new(
        options.node_id,
        Arc::new(config),
        network,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    Ok(Node {
        raft,
        log,
        store,
        shared,
        node_id: options.node_id,
        shard,
        routes: options.routes.clone(),
    })
}

/// The voters a new cluster starts with: the peers, or this node alone.
fn initial_members(options: &NodeOptions) -> Result<BTreeMap<NodeId, BasicNode>, StartError> {
    let members: BTreeMap<NodeId, BasicNode> = if options.peers.is_empty() {
        BTreeMap::from([(
            options.node_id,
            BasicNode {
                addr: options.raft_addr.clone(),
            },
        )])
    } else {
        options
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect()
    };
    if !members.contains_key(&options.node_id) {
        return Err(StartError::Raft(format!(
            "node {} is not among the peers {:?}",
            options.node_id,
            members.keys().collect::<Vec<_>>()
        )));
    }
    Ok(members)
}

/// The cluster as this node sees it now. Each method reads one copy of openraft's metrics.
impl Node {
    /// The whole view: role, leader, term, members with replication, log indexes.
    /// The applied, snapshot and purged indexes are read from this node's storage, not
    /// from openraft's metrics, which learn of them only when its core hears back (a sample
    /// mixing the two showed a purge above the snapshot it followed).
    pub fn status(&self) -> Status {
        let mut status = Status::of(&self.raft.metrics().borrow());
        status.applied_index = status.applied_index.max(self.shared.written_index());
        status.committed_index = status.committed_index.max(status.applied_index);
        status.snapshot_index = status.snapshot_index.max(self.shared.snapshot_index());
        status.purged_index = self.log.purged_index();
        status
    }

    /// The leader this node knows (itself included); `None` during an election.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The known leader and the address to reach it at (its `--peer-route` if one is set,
    /// else its membership address); `None` if no leader is known or it has no address.
    pub fn leader_address(&self) -> Option<(NodeId, String)> {
        status::leader_address(&self.raft.metrics().borrow(), &self.routes)
    }

    /// Whether this node leads: in the Leader state and knowing itself as the leader.
    pub fn is_leader(&self) -> bool {
        status::is_leader(&self.raft.metrics().borrow())
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.raft.metrics().borrow().state.into()
    }

    /// The voters of the membership this node knows.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.membership_config.membership().voter_ids().collect()
    }

    /// Every member (voters and learners) with its recorded address.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        status::members(&self.raft.metrics().borrow())
    }

    /// The voters other than this node, each with the address to reach it at (routes
    /// applied), in ID order.
    pub fn peer_voters(&self) -> Vec<(NodeId, String)> {
        status::peer_voters(&self.raft.metrics().borrow(), &self.routes)
    }

    /// Highest log index applied to the state machine (0: none).
    pub fn applied_index(&self) -> u64 {
        let applied = self.raft.metrics().borrow().last_applied;
        applied.map(|id| id.index).unwrap_or(0)
    }

    /// A subscription to this view: wait for leadership changes, or for Raft to stop.
    pub fn watch(&self) -> RaftWatch {
        RaftWatch::new(self.raft.metrics())
    }
}
