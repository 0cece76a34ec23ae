//! What the run reads after the heal: the drain (every acknowledged start terminal, timed
//! for P12), a new start through every node (timed for P12's `T_recover`), and every
//! node's own replica of every instance (Admin `LocalState`, read locally and never
//! forwarded) once all applied indexes agree, for P4, P9, P13 and P14.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::endure::internal::{LocalInstance, LocalStateRequest};
use serde_json::json;

use crate::cluster::Cluster;
use crate::decode::{self, status_name};
use crate::history::{Event, Op, OpType};
use crate::rpc;
use crate::state::{FinalState, NodeInstance, NodeState};
use crate::workload::client::{is_final, Client, Env as ClientEnv};

/// Longest wait for every acknowledged instance to be terminal.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Longest wait for a new start to succeed through one node.
pub const NEW_START_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for every node's applied index to agree.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// Pause between two drain rounds and two convergence probes.
const POLL: Duration = Duration::from_secs(1);
/// Instances per LocalState page.
const LOCAL_STATE_PAGE: u32 = 200;
/// Deadline of one LocalState page (histories make pages large).
const LOCAL_STATE_DEADLINE: Duration = Duration::from_secs(20);
/// History `process` of the final-phase reader of slot 0.
pub const FINAL_PROCESS_BASE: u64 = 2_000;

/// Instance IDs whose start was acknowledged, from the history.
pub fn acked_starts(history: &[Op]) -> Vec<String> {
    let ids: BTreeSet<String> = history
        .iter()
        .filter(|op| op.f == "start" && op.kind == OpType::Ok)
        .filter_map(|op| op.value.get("instance_id")?.as_str().map(str::to_owned))
        .collect();
    ids.into_iter().collect()
}

/// One final-phase client per slot.
pub fn readers(env: &ClientEnv, seed: u64) -> Vec<Client> {
    (0..env.cluster.len())
        .map(|slot| Client::new(FINAL_PROCESS_BASE + slot as u64, slot, seed, env.clone()))
        .collect()
}

/// Reads `ids` (spread over the readers, one task each) until all are terminal;
/// seconds since `since`, or None after `limit`. Gives the readers back.
pub async fn drain(
    mut readers: Vec<Client>,
    ids: Vec<String>,
    since: Instant,
    limit: Duration,
) -> (Vec<Client>, Option<f64>) {
    let started = Instant::now();
    let mut pending = ids;
    let mut round = 0usize;
    while !pending.is_empty() {
        if started.elapsed() > limit {
            return (readers, None);
        }
        let n = readers.len();
        let mut buckets: Vec<Vec<String>> = vec![Vec::new(); n];
        for (i, id) in pending.into_iter().enumerate() {
            buckets[(i + round) % n].push(id);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (reader, bucket) in readers.drain(..).zip(buckets) {
            tasks.spawn(read_all(reader, bucket));
        }
        pending = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (reader, left) = joined.expect("a drain reader panicked");
            readers.push(reader);
            pending.extend(left);
        }
        readers.sort_by_key(|r| r.slot);
        round += 1;
        if !pending.is_empty() {
            tokio::time::sleep(POLL).await;
        }
    }
    (readers, Some(since.elapsed().as_secs_f64()))
}

async fn read_all(mut reader: Client, ids: Vec<String>) -> (Client, Vec<String>) {
    let mut left = Vec::new();
    for id in ids {
        match reader.status(&id).await {
            Some(status) if is_final(&status) => {}
            _ => left.push(id),
        }
    }
    (reader, left)
}

/// Per node: seconds from `since` until a new start through it succeeded (the probes
/// are ordinary acknowledged starts in the history, drained like the others).
pub async fn new_starts(readers: &mut [Client], since: Instant) -> BTreeMap<u64, Option<f64>> {
    let mut out = BTreeMap::new();
    for reader in readers.iter_mut() {
        let node = reader.env.cluster.node_id(reader.slot);
        let started = Instant::now();
        let mut secs = None;
        for attempt in 0.. {
            if started.elapsed() > NEW_START_LIMIT {
                break;
            }
            let id = format!("probe-n{node}-{attempt}");
            let kind = reader.start(&id, "chain", json!({ "n": 1 }), None).await;
            if kind == OpType::Ok {
                secs = Some(since.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        out.insert(node, secs);
    }
    out
}

/// Waits until every node reports the same applied index; whether they did.
pub async fn converge(cluster: &Cluster) -> bool {
    let started = Instant::now();
    while started.elapsed() < CONVERGE_LIMIT {
        let mut applied = BTreeSet::new();
        let mut all = true;
        for slot in 0..cluster.len() {
            match cluster.status(slot).await {
                Ok(status) => {
                    applied.insert(status.applied_index);
                }
                Err(_) => all = false,
            }
        }
        if all && applied.len() == 1 {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

/// Reads one node's whole replica, page by page.
pub async fn read_node(cluster: &Cluster, slot: usize) -> NodeState {
    let node_id = cluster.node_id(slot);
    let mut state = NodeState {
        node_id,
        ..Default::default()
    };
    let mut admin = AdminClient::new(rpc::channel(cluster.ports(slot).grpc_addr()));
    let mut after = String::new();
    loop {
        let request = LocalStateRequest {
            after_instance_id: after.clone(),
            limit: LOCAL_STATE_PAGE,
            with_history: true,
        };
        let page = match rpc::call(
            LOCAL_STATE_DEADLINE,
            admin.local_state(rpc::request(request, LOCAL_STATE_DEADLINE)),
        )
        .await
        {
            Ok(page) => page,
            Err(status) => {
                state.applied_index = None;
                state.error = Some(rpc::describe(&status));
                return state;
            }
        };
        // The first page's index stands for the node (the cluster is quiet by now).
        state.applied_index.get_or_insert(page.applied_index);
        for instance in page.instances {
            after = instance.instance_id.clone();
            state
                .instances
                .insert(after.clone(), node_instance(instance));
        }
        if !page.more || after.is_empty() {
            return state;
        }
    }
}

fn node_instance(instance: LocalInstance) -> NodeInstance {
    let history = instance
        .history
        .iter()
        .map(|bytes| {
            decode::event_from_bytes(bytes).unwrap_or_else(|| Event {
                event_id: i32::MIN,
                kind: "Other".into(),
                timestamp_ns: 0,
                scheduled_id: None,
                name: None,
                fire_at_ns: None,
                data: None,
                digest: decode::digest(bytes),
            })
        })
        .collect();
    NodeInstance {
        instance_id: instance.instance_id,
        name: instance.name,
        status: status_name(instance.status),
        execution_id: instance.execution_id,
        output: instance.output,
        history,
        inbox_len: instance.inbox_len,
        pending_activities: instance.pending_activities,
    }
}

/// Reads every node after convergence and puts the final state together.
pub async fn read_all_nodes(cluster: &Cluster) -> (Vec<NodeState>, bool) {
    let converged_wait = converge(cluster).await;
    let mut nodes = Vec::new();
    for slot in 0..cluster.len() {
        nodes.push(read_node(cluster, slot).await);
    }
    let indexes: BTreeSet<Option<u64>> = nodes.iter().map(|n| n.applied_index).collect();
    let converged = converged_wait && indexes.len() == 1 && !indexes.contains(&None);
    (nodes, converged)
}

/// The final state of a run with the measured drain and start times.
pub fn assemble(
    nodes: Vec<NodeState>,
    converged: bool,
    max_skew_ms: i64,
    drain_secs: Option<f64>,
    new_start_secs: BTreeMap<u64, Option<f64>>,
) -> FinalState {
    FinalState {
        nodes,
        max_skew_ms,
        converged,
        drain_secs,
        new_start_secs,
    }
}
