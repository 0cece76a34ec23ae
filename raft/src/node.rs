//! Starting a Raft node on a data directory: open RocksDB, the log store and the state
//! machine, start openraft, and form the cluster on first start only.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use endure_storage::rocks::{open_db, RocksStore};
use openraft::{BasicNode, Config, SnapshotPolicy};

use crate::log_store::{LogStore, LOG_COLUMN_FAMILIES};
use crate::network::{Network, Routes};
use crate::state_machine::{Shared, StateMachine};
use crate::types::{NodeId, Raft};

/// Default number of entries between two snapshots; the log behind a snapshot is purged.
pub const SNAPSHOT_EVERY_LOG_ENTRIES: u64 = 20_000;
/// How long asking a peer whether a cluster exists may take.
const PEER_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
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
}

/// A running node: the Raft handle and the state it applies into.
#[derive(Clone)]
pub struct Node {
    pub raft: Raft,
    pub store: Arc<RocksStore>,
    pub shared: Arc<Shared>,
    pub node_id: NodeId,
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

/// What the peers say about an existing cluster, for a node that has no Raft state.
enum Existing {
    /// No peer belongs to a cluster that has a leader: a first start, initialize.
    None,
    /// A cluster with a leader exists and has never replicated to this node: wait for it.
    Waiting,
    /// The leader has replicated entries to this node before: its data was lost.
    DataLost,
}

/// Asks the peers whether a cluster exists and what its leader knows of this node. Raft
/// assumes a member never loses its log; a member whose data was lost must rejoin under a
/// new ID rather than start empty under its old one.
async fn probe_peers(options: &NodeOptions) -> Existing {
    use endure_proto::endure::internal::admin_client::AdminClient;
    use endure_proto::endure::internal::ClusterStatusRequest;
    for (id, addr) in &options.peers {
        if *id == options.node_id {
            continue;
        }
        let addr = options.routes.resolve(*id, addr);
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
            continue;
        };
        let endpoint = endpoint
            .connect_timeout(PEER_PROBE_TIMEOUT)
            .timeout(PEER_PROBE_TIMEOUT);
        let Ok(channel) = endpoint.connect().await else {
            continue;
        };
        let Ok(status) = AdminClient::new(channel)
            .cluster_status(ClusterStatusRequest {})
            .await
        else {
            continue;
        };
        let status = status.into_inner();
        if status.state != "Leader" {
            continue;
        }
        let me = status.members.iter().find(|m| m.node_id == options.node_id);
        tracing::info!(leader = id, "a cluster with a leader exists");
        return match me.and_then(|m| m.matched_index) {
            Some(matched) if matched > 0 => Existing::DataLost,
            _ => Existing::Waiting,
        };
    }
    Existing::None
}

/// Opens the data directory and starts Raft. Initializes the membership (the peers, or
/// this node alone) only when this node has never been part of a cluster, so a restart
/// never re-initializes or forks it. Every peer may initialize with the same voters:
/// openraft accepts the same initial membership from all of them.
pub async fn start(data_dir: &Path, options: NodeOptions) -> Result<Node, StartError> {
    let open_error = |reason: String| StartError::Open {
        path: data_dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| open_error(e.to_string()))?;
    let db = open_db(data_dir, &LOG_COLUMN_FAMILIES).map_err(|e| open_error(e.to_string()))?;
    let log_store = LogStore::new(db.clone()).map_err(|e| open_error(e.to_string()))?;
    let store = Arc::new(RocksStore::new(db));
    let state_machine = StateMachine::open(store.clone()).map_err(|e| open_error(e.to_string()))?;
    let shared = state_machine.shared();
    let config = Config {
        cluster_name: "endure".to_string(),
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
    let raft = Raft::new(
        options.node_id,
        Arc::new(config),
        Network {
            routes: options.routes.clone(),
        },
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let existing = if initialized || options.join {
        Existing::None
    } else {
        probe_peers(&options).await
    };
    if let Existing::DataLost = existing {
        return Err(StartError::Raft(format!(
            "this node has no Raft state, but the leader has replicated to node {id} before: \
             its data was lost. Remove it (`endure cluster leave --node-id {id}`) and add the node \
             back under a new ID (`endure serve --join --node-id <new>` and `endure cluster join`)",
            id = options.node_id
        )));
    }
    if !initialized && !options.join && matches!(existing, Existing::None) {
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
        raft.initialize(members)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
    }
    Ok(Node {
        raft,
        store,
        shared,
        node_id: options.node_id,
        routes: options.routes,
    })
}
