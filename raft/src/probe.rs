//! "Does a cluster already exist?": what a node with no Raft state asks its peers before it
//! initializes a membership of its own.
//!
//! Raft assumes a member never loses its log; a member whose data was lost must rejoin under
//! a new ID rather than start empty under its old one. So before initializing, a node asks
//! each peer what it knows ([`PeerProbe`]); this module decides from the answers
//! ([`existing_cluster`]). How a peer is asked is the caller's business: the server asks
//! its `Admin.ClusterStatus` ([`AdminStatusProbe`]), tests answer from a table.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::network::Routes;
use crate::types::NodeId;

/// What one peer answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAnswer {
    /// The peer leads a cluster.
    pub leads: bool,
    /// As that leader sees replication: the highest log index the asking node holds
    /// (`None`: it does not know, or the asking node is not a member).
    pub matched_index: Option<u64>,
}

/// Asks one peer about the cluster it belongs to.
pub trait PeerProbe: Send + Sync {
    /// Asks `peer` at `address` (routes already applied) on behalf of node `asking`;
    /// `None` when the peer does not answer (down, not started yet, a bad address).
    fn ask(
        &self,
        asking: NodeId,
        peer: NodeId,
        address: &str,
    ) -> impl Future<Output = Option<PeerAnswer>> + Send;
}

/// What the peers say about an existing cluster, for a node that has no Raft state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingCluster {
    /// No peer leads a cluster: a first start, initialize.
    None,
    /// A cluster with a leader exists and has never replicated to this node: wait for it.
    Waiting,
    /// The leader has replicated entries to this node before: its data was lost.
    DataLost,
}

/// Asks the peers other than `node_id`, in ID order, until one leads; decides from it.
pub async fn existing_cluster(
    probe: &impl PeerProbe,
    node_id: NodeId,
    peers: &BTreeMap<NodeId, String>,
    routes: &Routes,
) -> ExistingCluster {
    for (id, recorded) in peers {
        if *id == node_id {
            continue;
        }
        let address = routes.resolve(*id, recorded);
        let Some(answer) = probe.ask(node_id, *id, address).await else {
            continue;
        };
        if !answer.leads {
            continue;
        }
        tracing::info!(leader = id, "a cluster with a leader exists");
        return match answer.matched_index {
            Some(matched) if matched > 0 => ExistingCluster::DataLost,
            _ => ExistingCluster::Waiting,
        };
    }
    ExistingCluster::None
}

/// Never finds a cluster: for a node that has no peers to ask, and for tests.
pub struct NoPeers;

impl PeerProbe for NoPeers {
    async fn ask(&self, _: NodeId, _: NodeId, _: &str) -> Option<PeerAnswer> {
        None
    }
}

/// How long asking a peer whether a cluster exists may take.
pub const PEER_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Asks a peer's `Admin.ClusterStatus` (the server's admin service, on the internal port).
///
/// This is the server's protocol: it lives here only until the server owns it; `raft`
/// itself never calls it, the server passes it to [`crate::node::start`].
pub struct AdminStatusProbe {
    /// The connections to peers, with the cluster secret and TLS they expect.
    pub channels: crate::network::Channels,
}

impl PeerProbe for AdminStatusProbe {
    async fn ask(&self, asking: NodeId, _peer: NodeId, address: &str) -> Option<PeerAnswer> {
        use endure_proto::endure::internal::admin_client::AdminClient;
        use endure_proto::endure::internal::ClusterStatusRequest;
        let channel = self.channels.get(address).ok()?;
        let mut request = tonic::Request::new(ClusterStatusRequest {});
        request.set_timeout(PEER_PROBE_TIMEOUT);
        let mut admin = AdminClient::new(channel);
        let status = tokio::time::timeout(PEER_PROBE_TIMEOUT, admin.cluster_status(request))
            .await
            .ok()?
            .ok()?
            .into_inner();
        let me = status.members.iter().find(|m| m.node_id == asking);
        Some(PeerAnswer {
            leads: status.state == "Leader",
            matched_index: me.and_then(|m| m.matched_index),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers from a table, and records whom it was asked at which address.
    #[derive(Default)]
    struct Table {
        answers: BTreeMap<NodeId, PeerAnswer>,
        asked: Mutex<Vec<(NodeId, String)>>,
    }

    impl PeerProbe for Table {
        async fn ask(&self, asking: NodeId, peer: NodeId, address: &str) -> Option<PeerAnswer> {
            assert_eq!(asking, 1);
            self.asked.lock().unwrap().push((peer, address.to_string()));
            self.answers.get(&peer).copied()
        }
    }

    fn peers() -> BTreeMap<NodeId, String> {
        (1..=3).map(|id| (id, format!("n{id}:7000"))).collect()
    }

    fn answer(leads: bool, matched_index: Option<u64>) -> PeerAnswer {
        PeerAnswer {
            leads,
            matched_index,
        }
    }

    #[tokio::test]
    async fn the_first_leader_decides() {
        let routes = Routes::new(BTreeMap::from([(3, "proxy:3".to_string())]));
        let cases = [
            (vec![], ExistingCluster::None),
            (vec![(2, answer(false, None))], ExistingCluster::None),
            (vec![(3, answer(true, None))], ExistingCluster::Waiting),
            (vec![(3, answer(true, Some(0)))], ExistingCluster::Waiting),
            (vec![(2, answer(true, Some(4)))], ExistingCluster::DataLost),
            (
                vec![(2, answer(false, Some(4))), (3, answer(true, None))],
                ExistingCluster::Waiting,
            ),
        ];
        for (answers, expected) in cases {
            let probe = Table {
                answers: answers.into_iter().collect(),
                ..Table::default()
            };
            let found = existing_cluster(&probe, 1, &peers(), &routes).await;
            assert_eq!(found, expected, "{:?}", probe.answers);
        }
        let probe = Table::default();
        existing_cluster(&probe, 1, &peers(), &routes).await;
        assert_eq!(
            *probe.asked.lock().unwrap(),
            [(2, "n2:7000".to_string()), (3, "proxy:3".to_string())],
            "never itself; routes applied"
        );
    }
}
