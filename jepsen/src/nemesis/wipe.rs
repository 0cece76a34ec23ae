//! State wipe ("nuke"): a follower is killed, its data dir moved aside, its node ID
//! removed from the cluster (and retired), and a fresh node with a new ID takes its slot
//! (same ports, empty data dir, `--join`), added through the Admin `JoinNode` RPC. It must
//! catch up from the leader's snapshot without losing anything (P4, P13).
//!
//! The peers learn the new node's real raft address from the membership; their
//! `--peer-route` for it takes effect the next time they are restarted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::endure::internal::{JoinNodeRequest, LeaveNodeRequest};
use rand_chacha::ChaCha8Rng;

use super::{pick_follower, Env};
use crate::rpc;

/// Deadline of the membership calls (a join waits for the learner to catch up).
const MEMBERSHIP_DEADLINE: Duration = Duration::from_secs(60);
/// Most wipes per run (each burns a node ID).
const MAX_WIPES: u64 = 3;
/// How long the new node may take to open its gRPC port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The next node ID to hand out (IDs are never reused).
static NEXT_NODE_ID: AtomicU64 = AtomicU64::new(0);

pub async fn run(env: &Env, rng: &mut ChaCha8Rng) {
    let n = env.cluster.len() as u64;
    let _ = NEXT_NODE_ID.compare_exchange(0, n + 1, Ordering::SeqCst, Ordering::SeqCst);
    let slot = pick_follower(env, rng).await;
    let old = env.cluster.node_id(slot);
    if NEXT_NODE_ID.load(Ordering::SeqCst) > n + MAX_WIPES {
        return env.skip("wipe", "wipe", &[old], "wipe limit of this run reached");
    }
    let Some(guard) = env.faults.take(&[slot]) else {
        return env.skip(
            "wipe",
            "wipe",
            &[old],
            "another fault holds the quorum margin",
        );
    };
    let new = NEXT_NODE_ID.fetch_add(1, Ordering::SeqCst);
    env.invoke("wipe", "wipe", &[old, new]);
    match wipe(env, slot, old, new).await {
        Ok(()) => env.done("wipe", "wipe", &[old, new], "installed", None),
        Err(error) => env.info("wipe", "wipe", &[old, new], &format!("{error:#}")),
    }
    drop(guard);
}

async fn wipe(env: &Env, slot: usize, old: u64, new: u64) -> anyhow::Result<()> {
    env.cluster.kill(slot).await;
    let data = env.cluster.data_dir(slot);
    let aside = data.with_file_name(format!("data.wiped-node{old}"));
    if data.exists() {
        std::fs::rename(&data, &aside)?;
    }
    let helper = (0..env.cluster.len())
        .find(|&s| s != slot && env.cluster.is_running(s) && !env.cluster.is_paused(s))
        .ok_or_else(|| anyhow::anyhow!("no live node to change the membership through"))?;
    let mut admin = AdminClient::new(rpc::channel(env.cluster.ports(helper).grpc_addr()));
    let leave = LeaveNodeRequest {
        node_id: old,
        shard: None,
    };
    rpc::call(
        MEMBERSHIP_DEADLINE,
        admin.leave_node(rpc::request(leave, MEMBERSHIP_DEADLINE)),
    )
    .await
    .map_err(|s| anyhow::anyhow!("leave {old}: {}", rpc::describe(&s)))?;
    env.cluster.replace_node(slot, new);
    env.cluster.spawn(slot)?;
    wait_port(env.cluster.ports(slot).grpc_addr()).await?;
    let address = env.cluster.ports(slot).raft_addr().to_string();
    let join = JoinNodeRequest {
        node_id: new,
        address,
        shard: None,
    };
    rpc::call(
        MEMBERSHIP_DEADLINE,
        admin.join_node(rpc::request(join, MEMBERSHIP_DEADLINE)),
    )
    .await
    .map_err(|s| anyhow::anyhow!("join {new}: {}", rpc::describe(&s)))?;
    Ok(())
}

async fn wait_port(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            started.elapsed() < START_TIMEOUT,
            "new node did not open {addr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
