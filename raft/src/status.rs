//! The cluster as this node sees it, read from openraft's metrics, so that code above this
//! crate asks [`crate::node::Node`] (or a [`RaftWatch`]) instead of reading openraft types.
//!
//! Every function here reads one consistent copy of the metrics; nothing holds the metrics
//! borrow across an `.await`.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::Fatal;
use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::sync::watch;

use crate::network::Routes;
use crate::types::NodeId;

/// openraft's metrics for Endure's types.
pub(crate) type Metrics = RaftMetrics<NodeId, BasicNode>;

/// This node's Raft role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Replicates the log, neither votes nor campaigns (not yet or no longer a voter).
    Learner,
    /// A voter that follows a leader.
    Follower,
    /// A voter campaigning to lead.
    Candidate,
    /// The leader.
    Leader,
    /// Raft stopped: on shutdown, or after a storage failure.
    Shutdown,
}

impl Role {
    /// The role's name as the admin API and metrics show it (`Leader`, `Follower`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Learner => "Learner",
            Role::Follower => "Follower",
            Role::Candidate => "Candidate",
            Role::Leader => "Leader",
            Role::Shutdown => "Shutdown",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ServerState> for Role {
    fn from(state: ServerState) -> Self {
        match state {
            ServerState::Learner => Role::Learner,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Leader => Role::Leader,
            ServerState::Shutdown => Role::Shutdown,
        }
    }
}

/// One member of the membership this node knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: NodeId,
    /// Its internal address as the membership records it (not route-resolved).
    pub address: String,
    /// A voter, or else a learner.
    pub voter: bool,
    /// On the leader only: the highest log index the member is known to hold (0: none yet).
    pub matched_index: Option<u64>,
}

/// This node's view of the cluster at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub node_id: NodeId,
    /// The leader this node knows of, itself included; `None` during an election.
    pub leader: Option<NodeId>,
    pub term: u64,
    pub role: Role,
    /// Voters and learners, by node ID.
    pub members: Vec<Member>,
    /// Highest log index stored here (0: none).
    pub last_log_index: u64,
    /// Highest index known committed (see [`committed_index`]).
    pub committed_index: u64,
    /// Highest index applied to the state machine (0: none).
    pub applied_index: u64,
    /// Last index covered by this node's snapshot (0: none).
    pub snapshot_index: u64,
    /// Log purged up to this index (0: none).
    pub purged_index: u64,
}

impl Status {
    pub(crate) fn of(metrics: &Metrics) -> Status {
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                node_id: *id,
                address: node.addr.clone(),
                voter: voters.contains(id),
                matched_index: metrics
                    .replication
                    .as_ref()
                    .and_then(|replication| replication.get(id))
                    .map(|matched| matched.map(|log_id| log_id.index).unwrap_or(0)),
            })
            .collect();
        Status {
            node_id: metrics.id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            role: metrics.state.into(),
            members,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            committed_index: committed_index(metrics, &voters),
            applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
            snapshot_index: metrics.snapshot.map(|id| id.index).unwrap_or(0),
            purged_index: metrics.purged.map(|id| id.index).unwrap_or(0),
        }
    }
}

/// The highest index a majority of voters hold, as the leader sees replication; on other
/// nodes the applied index (which never passes the committed one) is the best known bound.
fn committed_index(metrics: &Metrics, voters: &BTreeSet<NodeId>) -> u64 {
    let applied = metrics.last_applied.map(|id| id.index).unwrap_or(0);
    let Some(replication) = &metrics.replication else {
        return applied;
    };
    let mut matched: Vec<u64> = voters
        .iter()
        .map(|id| {
            if *id == metrics.id {
                metrics.last_log_index.unwrap_or(0)
            } else {
                replication
                    .get(id)
                    .copied()
                    .flatten()
                    .map(|log_id| log_id.index)
                    .unwrap_or(0)
            }
        })
        .collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    let quorum = voters.len() / 2;
    matched.get(quorum).copied().unwrap_or(0).max(applied)
}

/// Leads: in the Leader state and knows itself as the leader.
pub(crate) fn is_leader(metrics: &Metrics) -> bool {
    metrics.state == ServerState::Leader && metrics.current_leader == Some(metrics.id)
}

/// The known leader and the address to reach it at (`routes` applied); `None` when no
/// leader is known or the membership has no address for it.
pub(crate) fn leader_address(metrics: &Metrics, routes: &Routes) -> Option<(NodeId, String)> {
    let leader = metrics.current_leader?;
    let node = metrics.membership_config.membership().get_node(&leader)?;
    Some((leader, routes.resolve(leader, &node.addr).to_string()))
}

/// The voters other than this node, with the address to reach each at (`routes` applied).
pub(crate) fn peer_voters(metrics: &Metrics, routes: &Routes) -> Vec<(NodeId, String)> {
    let membership = metrics.membership_config.membership();
    membership
        .voter_ids()
        .filter(|id| *id != metrics.id)
        .filter_map(|id| {
            let node = membership.get_node(&id)?;
            Some((id, routes.resolve(id, &node.addr).to_string()))
        })
        .collect()
}

/// Follows this node's view of the cluster as it changes (a subscription to the metrics).
#[derive(Clone)]
pub struct RaftWatch {
    metrics: watch::Receiver<Metrics>,
}

impl RaftWatch {
    pub(crate) fn new(metrics: watch::Receiver<Metrics>) -> Self {
        RaftWatch { metrics }
    }

    /// The whole view now.
    pub fn status(&self) -> Status {
        Status::of(&self.metrics.borrow())
    }

    /// The leader known now (this node included); `None` during an election.
    pub fn leader(&self) -> Option<NodeId> {
        self.metrics.borrow().current_leader
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        is_leader(&self.metrics.borrow())
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        self.metrics.borrow().state.into()
    }

    /// Why Raft stopped, when it stopped on a fatal error (a storage failure, a panic);
    /// `None` while it runs and after a normal shutdown.
    pub fn fatal_error(&self) -> Option<String> {
        match &self.metrics.borrow().running_state {
            Ok(()) | Err(Fatal::Stopped) => None,
            Err(fatal) => Some(fatal.to_string()),
        }
    }

    /// Waits for the next change; false once Raft is gone (nothing will change again).
    pub async fn changed(&mut self) -> bool {
        self.metrics.changed().await.is_ok()
    }

    /// Waits until `condition` holds (checked now, then on every change); false if Raft is
    /// gone first. Cancel-safe: use it in `select!` next to a shutdown signal.
    pub async fn wait_until(&mut self, condition: impl Fn(&RaftWatch) -> bool) -> bool {
        loop {
            if condition(self) {
                return true;
            }
            if !self.changed().await {
                return false;
            }
        }
    }

    /// Returns once the known leader is no longer `leader` (another, none, or Raft gone).
    pub async fn leader_moved_from(&mut self, leader: NodeId) {
        self.wait_until(|watch| watch.leader() != Some(leader))
            .await;
    }

    /// Returns once Raft stopped (shut down, or stopped by a fatal error); then
    /// [`RaftWatch::fatal_error`] says why.
    pub async fn stopped(&mut self) {
        self.wait_until(|watch| watch.role() == Role::Shutdown)
            .await;
    }
}

/// A map of members to their recorded addresses.
pub(crate) fn members(metrics: &Metrics) -> BTreeMap<NodeId, String> {
    metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| (*id, node.addr.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::{CommittedLeaderId, Membership, StoredMembership};

    use super::*;
    use crate::types::LogId;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// Node 1's metrics in a cluster of voters 1, 2, 3 and learner 4.
    fn metrics(state: ServerState, leader: Option<NodeId>) -> Metrics {
        let nodes: BTreeMap<NodeId, BasicNode> = (1..=4)
            .map(|id| (id, BasicNode::new(format!("10.0.0.{id}:7000"))))
            .collect();
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
        let mut metrics = Metrics::new_initial(1);
        metrics.state = state;
        metrics.current_leader = leader;
        metrics.current_term = 3;
        metrics.membership_config = Arc::new(StoredMembership::new(Some(log_id(1)), membership));
        metrics.last_log_index = Some(9);
        metrics.last_applied = Some(log_id(5));
        metrics
    }

    #[test]
    fn a_leader_sees_members_replication_and_the_majority_index() {
        let mut leading = metrics(ServerState::Leader, Some(1));
        leading.replication = Some(BTreeMap::from([
            (2, Some(log_id(7))),
            (3, None),
            (4, Some(log_id(8))),
        ]));
        let status = Status::of(&leading);
        assert_eq!(status.role, Role::Leader);
        assert_eq!(status.leader, Some(1));
        // Voters hold 9 (itself), 7, 0: a majority holds 7; the learner does not count.
        assert_eq!(status.committed_index, 7);
        let voters: Vec<bool> = status.members.iter().map(|m| m.voter).collect();
        assert_eq!(voters, [true, true, true, false]);
        let matched: Vec<Option<u64>> = status.members.iter().map(|m| m.matched_index).collect();
        assert_eq!(matched, [None, Some(7), Some(0), Some(8)]);
        assert!(is_leader(&leading));
    }

    #[test]
    fn a_follower_knows_the_applied_index_and_the_leader_address() {
        let following = metrics(ServerState::Follower, Some(2));
        let status = Status::of(&following);
        assert_eq!(status.committed_index, 5, "the applied index bounds it");
        assert_eq!(status.role.as_str(), "Follower");
        assert!(!is_leader(&following));
        let routes = Routes::new(BTreeMap::from([(2, "127.0.0.1:9002".to_string())]));
        assert_eq!(
            leader_address(&following, &routes),
            Some((2, "127.0.0.1:9002".to_string())),
            "a peer route wins over the recorded address"
        );
        assert_eq!(
            leader_address(&following, &Routes::default()),
            Some((2, "10.0.0.2:7000".to_string()))
        );
        assert_eq!(
            leader_address(&metrics(ServerState::Candidate, None), &routes),
            None
        );
        assert_eq!(
            peer_voters(&following, &routes),
            [
                (2, "127.0.0.1:9002".to_string()),
                (3, "10.0.0.3:7000".to_string())
            ]
        );
        assert_eq!(members(&following).len(), 4);
    }

    #[test]
    fn a_node_that_thinks_another_leads_is_not_the_leader() {
        // Stale state: the Leader state with another leader known.
        assert!(!is_leader(&metrics(ServerState::Leader, Some(2))));
    }

    #[tokio::test]
    async fn the_watch_sees_leader_changes_and_the_stop() {
        let (sender, receiver) = watch::channel(metrics(ServerState::Follower, Some(2)));
        let mut watch = RaftWatch::new(receiver);
        let mut moved = {
            let mut watch = watch.clone();
            tokio::spawn(async move { watch.leader_moved_from(2).await })
        };
        tokio::task::yield_now().await;
        assert!(!moved.is_finished(), "the leader is still 2");
        sender.send_modify(|m| m.last_applied = Some(log_id(6)));
        tokio::task::yield_now().await;
        assert!(!moved.is_finished(), "other changes do not count");
        sender.send_modify(|m| m.current_leader = None);
        (&mut moved).await.unwrap();

        sender.send_modify(|m| {
            m.state = ServerState::Leader;
            m.current_leader = Some(1);
        });
        assert!(watch.wait_until(RaftWatch::is_leader).await);
        sender.send_modify(|m| {
            m.state = ServerState::Shutdown;
            m.running_state = Err(Fatal::Panicked);
        });
        watch.stopped().await;
        assert_eq!(watch.fatal_error().as_deref(), Some("panicked"));
        sender.send_modify(|m| m.running_state = Err(Fatal::Stopped));
        assert_eq!(watch.fatal_error(), None, "a shutdown, not a failure");
        drop(sender);
        assert!(
            !watch.wait_until(|w| w.leader() == Some(3)).await,
            "Raft gone"
        );
    }
}
