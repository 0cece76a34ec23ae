//! Changing the voters: add a node (as a learner until it has caught up), remove one and
//! retire its ID for good. Every shard's membership changes, one shard after another, each
//! by its own leader; changes are serialized on the node that coordinates them, because
//! openraft must never see two at once in one group.

use std::collections::BTreeSet;
use std::sync::Arc;

use endure_engine::records::command::Kind;
use endure_engine::records::RetireNode;
use endure_proto::endure::internal::{JoinNodeRequest, LeaveNodeRequest};

use super::shards::{Shard, Shards};

/// Tries per shard while its leader is unknown or unreachable, and the pause between.
const SHARD_CHANGE_ATTEMPTS: u32 = 40;
const SHARD_CHANGE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);
use crate::service::error::check;
use crate::service::{Call, Error};

/// Membership changes of this node's cluster.
#[derive(Clone)]
pub struct Membership {
    shards: Shards,
    /// Connections to peers (cluster secret, TLS), to ask a joining node about itself.
    channels: endure_raft::network::Channels,
    serialized: Arc<tokio::sync::Mutex<()>>,
}

fn raft_error(shard: &Shard, error: impl std::fmt::Display) -> Error {
    Error::unavailable(format!(
        "membership change of shard {} failed: {error}; retry",
        shard.id
    ))
}

/// One change, as every shard applies it.
#[derive(Clone, Debug)]
pub enum Change {
    Join { id: u64, address: String },
    Leave { id: u64 },
}

impl Membership {
    pub fn new(shards: Shards, channels: endure_raft::network::Channels) -> Membership {
        Membership {
            shards,
            channels,
            serialized: Arc::default(),
        }
    }

    /// Applies the change to every shard in order, each through its leader (this node's
    /// own groups directly, the others forwarded with the shard named). A shard that
    /// already has the change is passed over, so a retried change completes.
    pub async fn change(&self, call: &Call, change: Change) -> Result<(), Error> {
        let _serialized = self.serialized.lock().await;
        let voter_in = |id: u64| {
            self.shards
                .iter()
                .filter(|s| s.node.voters().contains(&id))
                .count()
        };
        match &change {
            Change::Join { id, .. } if voter_in(*id) == self.shards.count() as usize => {
                return Err(Error::already_exists(format!(
                    "node {id} is already a voter"
                )));
            }
            Change::Leave { id } if voter_in(*id) == 0 => {
                return Err(Error::not_found(format!("node {id} is not a voter")));
            }
            Change::Join { id, address } => self.same_shard_count(*id, address).await?,
            _ => {}
        }
        for shard in self.shards.iter() {
            // A shard whose leader just died has none for a moment: try again, the
            // change of one shard being idempotent.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.change_via_leader(call, shard, &change).await {
                    Err(Error::Unavailable(reason)) if attempt < SHARD_CHANGE_ATTEMPTS => {
                        tracing::info!(shard = shard.id, %reason, "membership change: retrying");
                        tokio::time::sleep(SHARD_CHANGE_BACKOFF).await;
                    }
                    result => break result?,
                }
            }
        }
        Ok(())
    }

    /// Refuses a joining node started with another `--shards` (its groups would never
    /// match the cluster's). A node that cannot be asked is left to the join itself.
    async fn same_shard_count(&self, id: u64, address: &str) -> Result<(), Error> {
        use endure_proto::endure::internal::admin_client::AdminClient;
        use endure_proto::endure::internal::ClusterStatusRequest;
        let Ok(channel) = self.channels.get(address) else {
            return Err(Error::invalid_argument(format!("bad address {address}")));
        };
        let mut request = tonic::Request::new(ClusterStatusRequest {});
        request.set_timeout(std::time::Duration::from_secs(2));
        let Ok(status) = AdminClient::new(channel).cluster_status(request).await else {
            return Ok(());
        };
        let theirs = status.into_inner().shards.len().max(1);
        let ours = self.shards.count() as usize;
        if theirs != ours {
            return Err(Error::failed_precondition(format!(
                "node {id} was started with --shards {theirs} but this cluster has {ours} \
                 shards: start it again with --shards {ours} (and an empty data directory)"
            )));
        }
        Ok(())
    }

    /// The change of one shard, here if this node leads it, else by its leader.
    async fn change_via_leader(
        &self,
        call: &Call,
        shard: &Shard,
        change: &Change,
    ) -> Result<(), Error> {
        let Some(leader) = shard.forward.leader_for(call).await? else {
            return change_shard(shard, change).await;
        };
        match change {
            Change::Join { id, address } => {
                let request = JoinNodeRequest {
                    node_id: *id,
                    address: address.clone(),
                    shard: Some(shard.id),
                };
                leader
                    .forward(call, request, |mut leader, request| async move {
                        leader.admin.join_node(request).await
                    })
                    .await?;
            }
            Change::Leave { id } => {
                let request = LeaveNodeRequest {
                    node_id: *id,
                    shard: Some(shard.id),
                };
                leader
                    .forward(call, request, |mut leader, request| async move {
                        leader.admin.leave_node(request).await
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Applies the change to one shard this node leads (a forwarded, per-shard request).
    pub async fn change_one(&self, call: &Call, shard: u32, change: Change) -> Result<(), Error> {
        let shard = self
            .shards
            .get(shard)
            .ok_or_else(|| Error::invalid_argument(format!("there is no shard {shard}")))?;
        shard.must_lead(call)?;
        change_shard(shard, &change).await
    }
}

async fn change_shard(shard: &Shard, change: &Change) -> Result<(), Error> {
    match change {
        Change::Join { id, address } => join(shard, *id, address.clone()).await,
        Change::Leave { id } => leave(shard, *id).await,
    }
}

/// Adds the node to one shard as a learner, waits until it has caught up (from a snapshot
/// where the log was purged), then makes it a voter.
async fn join(shard: &Shard, id: u64, address: String) -> Result<(), Error> {
    if id == 0 || address.is_empty() {
        return Err(Error::invalid_argument(
            "a node ID (at least 1) and its raft address are required",
        ));
    }
    if shard.node.shared.is_retired(id) {
        return Err(Error::already_exists(format!(
            "node ID {id} belonged to a node that left; IDs are never reused"
        )));
    }
    let voters: BTreeSet<u64> = shard.node.voters();
    if voters.contains(&id) {
        // A retried join that got this far before.
        return Ok(());
    }
    let node = openraft::BasicNode { addr: address };
    let raft = &shard.node.raft;
    raft.add_learner(id, node, true)
        .await
        .map_err(|e| raft_error(shard, e))?;
    let mut voters = voters;
    voters.insert(id);
    raft.change_membership(voters, false)
        .await
        .map_err(|e| raft_error(shard, e))?;
    Ok(())
}

/// Removes the node from one shard's voters and retires its ID there.
async fn leave(shard: &Shard, id: u64) -> Result<(), Error> {
    let mut voters = shard.node.voters();
    if voters.remove(&id) {
        if voters.is_empty() {
            return Err(Error::failed_precondition("the last voter cannot leave"));
        }
        shard
            .node
            .raft
            .change_membership(voters, false)
            .await
            .map_err(|e| raft_error(shard, e))?;
    }
    if !shard.node.shared.is_retired(id) {
        let retire = Kind::RetireNode(RetireNode { node_id: id });
        check(shard.proposer.propose(retire).await)?;
    }
    Ok(())
}
