//! Leader placement: every shard has a preferred leader, chosen by rendezvous hashing over
//! the voters that answer ([`endure_engine::shard::preferred_leaders`]), so the shards'
//! owning, dispatching and timing spread over the nodes. openraft 0.9 has no leader
//! transfer, so the hand-over is built from what it has: a shard's leader that sees the
//! preferred node up and holding its whole log asks that node to stand for election
//! (`TakeLeadership`); its vote request with the next term wins, because its log is as
//! long as any and the old leader steps down when it meets the higher term. A node that
//! dies loses its shards to the others by ordinary elections; once it is back and caught
//! up, the leaders hand its shards back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use endure_engine::shard::preferred_leaders;
use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::endure::internal::{ClusterStatusRequest, TakeLeadershipRequest};
use endure_raft::network::Channels;
use endure_raft::status::Role;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info};

use super::shards::{Shard, Shards};
use crate::service::Error;

/// How often placement looks at the shards.
const ROUND: Duration = Duration::from_secs(1);
/// How long a peer may take to answer "are you up?".
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Least time between two hand-overs of one shard, so a disagreement cannot churn.
const HANDOVER_BACKOFF: Duration = Duration::from_secs(5);
/// A node that has run this long takes part in placement (before, its shards settle).
const SETTLE: Duration = Duration::from_secs(2);

/// The preferred leader of each shard when every voter of shard 0 is up.
pub fn preferred(shards: &Shards) -> Vec<u64> {
    let voters: Vec<u64> = shards.first().node.voters().into_iter().collect();
    preferred_leaders(shards.count(), &voters)
}

/// Asks Raft to hold an election for `shard` at once, if this node is a voter that follows.
pub async fn stand_for_election(shard: &Shard) -> Result<(), Error> {
    if shard.node.role() != Role::Follower {
        return Ok(());
    }
    info!(
        shard = shard.id,
        "standing for election: this node is the preferred leader"
    );
    shard
        .node
        .raft
        .trigger()
        .elect()
        .await
        .map_err(|e| Error::unavailable(format!("raft stopped: {e}")))
}

/// The placement task of this node; see the module documentation.
pub async fn run(shards: Shards, channels: Channels, mut shutdown: watch::Receiver<bool>) {
    if shards.count() == 1 {
        return;
    }
    let started = Instant::now();
    let mut handed_over: BTreeMap<u32, Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(ROUND) => {}
        }
        if started.elapsed() < SETTLE {
            continue;
        }
        let live = live_voters(&shards, &channels).await;
        let preferred =
            preferred_leaders(shards.count(), &live.iter().copied().collect::<Vec<_>>());
        for shard in shards.iter() {
            let Some(target) = preferred.get(shard.id as usize).copied() else {
                continue;
            };
            if target == shard.node.node_id || !shard.node.is_leader() {
                continue;
            }
            if handed_over
                .get(&shard.id)
                .is_some_and(|at| at.elapsed() < HANDOVER_BACKOFF)
            {
                continue;
            }
            if !caught_up(shard, target) {
                debug!(
                    shard = shard.id,
                    target, "preferred leader not caught up yet"
                );
                continue;
            }
            handed_over.insert(shard.id, Instant::now());
            hand_over(shard, target, &channels).await;
        }
    }
}

/// Whether `target` holds every entry this leader has.
fn caught_up(shard: &Shard, target: u64) -> bool {
    let status = shard.node.status();
    status
        .members
        .iter()
        .find(|member| member.node_id == target && member.voter)
        .and_then(|member| member.matched_index)
        .is_some_and(|matched| matched >= status.last_log_index)
}

/// This node and the voters of shard 0 that answered a status call just now.
async fn live_voters(shards: &Shards, channels: &Channels) -> BTreeSet<u64> {
    let node = &shards.first().node;
    let mut live = BTreeSet::from([node.node_id]);
    let mut probes = tokio::task::JoinSet::new();
    for (id, address) in node.peer_voters() {
        let Ok(channel) = channels.get(&address) else {
            continue;
        };
        probes.spawn(async move {
            let mut admin = AdminClient::new(channel);
            let mut request = tonic::Request::new(ClusterStatusRequest {});
            request.set_timeout(PROBE_TIMEOUT);
            let answer = tokio::time::timeout(PROBE_TIMEOUT, admin.cluster_status(request)).await;
            match answer {
                Ok(Ok(status)) => Some((id, status.into_inner().shards.len())),
                _ => None,
            }
        });
    }
    let ours = shards.count() as usize;
    for (id, theirs) in probes.join_all().await.into_iter().flatten() {
        if theirs != ours {
            tracing::error!(
                peer = id,
                "peer {id} runs {theirs} shard(s) and this node {ours}: every node of a \
                 cluster must be started with the same --shards"
            );
            continue;
        }
        live.insert(id);
    }
    live
}

/// Asks `target` to stand for election for `shard`.
async fn hand_over(shard: &Shard, target: u64, channels: &Channels) {
    let Some(address) = shard
        .node
        .peer_voters()
        .into_iter()
        .find_map(|(id, address)| (id == target).then_some(address))
    else {
        return;
    };
    let Ok(channel) = channels.get(&address) else {
        return;
    };
    info!(
        shard = shard.id,
        target, "handing leadership to the preferred leader"
    );
    let mut admin = AdminClient::new(channel);
    let mut request = tonic::Request::new(TakeLeadershipRequest { shard: shard.id });
    request.set_timeout(PROBE_TIMEOUT);
    if let Err(status) = admin.take_leadership(request).await {
        info!(shard = shard.id, target, %status, "hand-over refused");
    }
}
