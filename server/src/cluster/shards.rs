//! This node's shards: one Raft group per shard, each with its own proposer, clock,
//! forwarder and leader-only services. An instance belongs to the shard
//! [`endure_engine::shard::shard_of`] names; every call about it is served by that shard's
//! leader, wherever the call arrived.

use std::sync::Arc;

use endure_engine::shard::shard_of;
use endure_raft::node::Node;
use tokio::sync::watch;

use super::proposer::Proposer;
use crate::service::forward::Forwarder;
use crate::service::{Error, LeaderServices};

/// One shard's Raft group on this node and what the services need of it.
#[derive(Clone)]
pub struct Shard {
    pub id: u32,
    pub node: Node,
    pub proposer: Proposer,
    pub forward: Forwarder,
    /// The leader-only services while this node leads the shard (`None` otherwise).
    pub leading: watch::Receiver<Option<LeaderServices>>,
}

impl Shard {
    /// The dispatcher, or UNAVAILABLE while this node is not (yet) a serving leader.
    pub fn dispatcher(&self) -> Result<crate::dispatch::Handle, Error> {
        self.leading
            .borrow()
            .as_ref()
            .map(|services| services.dispatcher.clone())
            .ok_or_else(|| {
                Error::unavailable(format!(
                    "this node is not serving as leader of shard {} right now; retry",
                    self.id
                ))
            })
    }

    /// Refuses a call another node forwarded here for this shard unless this node leads
    /// it (UNAVAILABLE, so the caller retries with the new leader).
    pub fn must_lead(&self, call: &crate::service::Call) -> Result<(), Error> {
        if self.forward.leader_now_for(call)?.is_some() {
            return Err(Error::unavailable(format!(
                "this node does not lead shard {}; retry",
                self.id
            )));
        }
        Ok(())
    }

    /// Whether this node leads the shard and its services run.
    pub fn serving(&self) -> bool {
        self.leading.borrow().is_some()
    }
}

/// Every shard of this node, in shard order. Cheap to clone.
#[derive(Clone)]
pub struct Shards(Arc<Vec<Shard>>);

impl Shards {
    /// At least one shard, numbered from 0 in order.
    pub fn new(shards: Vec<Shard>) -> Shards {
        assert!(!shards.is_empty(), "a node has at least one shard");
        for (index, shard) in shards.iter().enumerate() {
            assert_eq!(shard.id as usize, index, "shards are in order");
        }
        Shards(Arc::new(shards))
    }

    /// The shard that owns `instance_id`.
    pub fn of(&self, instance_id: &str) -> &Shard {
        &self.0[shard_of(instance_id, self.count()) as usize]
    }

    /// The shard numbered `id`, if there is one.
    pub fn get(&self, id: u32) -> Option<&Shard> {
        self.0.get(id as usize)
    }

    /// Shard 0: the one whose Raft view stands for the node where one view is shown.
    pub fn first(&self) -> &Shard {
        &self.0[0]
    }

    pub fn count(&self) -> u32 {
        self.0.len() as u32
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Shard> {
        self.0.iter()
    }

    /// Every shard's Raft node.
    pub fn nodes(&self) -> Vec<Node> {
        self.0.iter().map(|shard| shard.node.clone()).collect()
    }
}
