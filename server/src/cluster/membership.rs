//! Changing the voters: add a node (as a learner until it has caught up), remove one and
//! retire its ID for good. Runs on the leader; changes are serialized, because openraft
//! must never see two at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use endure_engine::records::command::Kind;
use endure_engine::records::RetireNode;
use endure_raft::node::Node;

use super::proposer::Proposer;
use crate::service::error::check;
use crate::service::Error;

/// Membership changes of this node's cluster.
#[derive(Clone)]
pub struct Membership {
    node: Node,
    proposer: Proposer,
    serialized: Arc<tokio::sync::Mutex<()>>,
}

fn raft_error(error: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("membership change failed: {error}; retry"))
}

impl Membership {
    pub fn new(node: Node, proposer: Proposer) -> Membership {
        Membership {
            node,
            proposer,
            serialized: Arc::default(),
        }
    }

    fn voters(&self) -> BTreeSet<u64> {
        self.node.voters()
    }

    /// Adds the node as a learner, waits until it has caught up, then makes it a voter.
    pub async fn join(&self, id: u64, address: String) -> Result<(), Error> {
        let _serialized = self.serialized.lock().await;
        if id == 0 || address.is_empty() {
            return Err(Error::invalid_argument(
                "a node ID (at least 1) and its raft address are required",
            ));
        }
        if self.node.shared.is_retired(id) {
            return Err(Error::already_exists(format!(
                "node ID {id} belonged to a node that left; IDs are never reused"
            )));
        }
        if self.voters().contains(&id) {
            return Err(Error::already_exists(format!(
                "node {id} is already a voter"
            )));
        }
        let node = openraft::BasicNode { addr: address };
        self.node
            .raft
            .add_learner(id, node, true)
            .await
            .map_err(raft_error)?;
        let mut voters = self.voters();
        voters.insert(id);
        self.node
            .raft
            .change_membership(voters, false)
            .await
            .map_err(raft_error)?;
        Ok(())
    }

    /// Removes the node from the voters and retires its ID.
    pub async fn leave(&self, id: u64) -> Result<(), Error> {
        let _serialized = self.serialized.lock().await;
        let mut voters = self.voters();
        if !voters.remove(&id) {
            return Err(Error::not_found(format!("node {id} is not a voter")));
        }
        if voters.is_empty() {
            return Err(Error::failed_precondition("the last voter cannot leave"));
        }
        self.node
            .raft
            .change_membership(voters, false)
            .await
            .map_err(raft_error)?;
        let retire = Kind::RetireNode(RetireNode { node_id: id });
        check(self.proposer.propose(retire).await)?;
        Ok(())
    }
}
