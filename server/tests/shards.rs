//! Three real nodes with eight shards: the shards' leadership spreads over the nodes, a
//! parent's children on other shards run and are terminated and purged with it, and a
//! node that leads several shards can die mid-run and come back without losing or
//! repeating anything.

mod cluster_support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use cluster_support::{chain_worker, start_named, wait_completed, Cluster};
use endure_engine::shard::shard_of;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::*;
use tonic::transport::Channel;

const SHARDS: u32 = 8;

/// How many shards each node leads, as node `index` sees it; `None` while a shard has no
/// leader known.
async fn leaders(cluster: &Cluster, index: usize) -> Option<BTreeMap<u64, usize>> {
    let status = cluster.status(index).await.ok()?;
    assert_eq!(status.shards.len(), SHARDS as usize, "{status:?}");
    let mut counts = BTreeMap::new();
    for shard in &status.shards {
        *counts.entry(shard.leader_id?).or_default() += 1;
    }
    Some(counts)
}

/// Waits until the shards' leadership is spread over `nodes` (node IDs): each leads
/// `SHARDS / n` shards, give or take one, and no other node leads any.
async fn wait_spread(cluster: &Cluster, via: usize, nodes: &[u64], within: Duration) {
    let started = Instant::now();
    let low = SHARDS as usize / nodes.len();
    let high = (SHARDS as usize).div_ceil(nodes.len());
    let mut last = None;
    while started.elapsed() < within {
        if let Some(counts) = leaders(cluster, via).await {
            let spread = counts.keys().all(|id| nodes.contains(id))
                && nodes.iter().all(|id| {
                    let led = counts.get(id).copied().unwrap_or(0);
                    (low..=high).contains(&led)
                });
            if spread {
                return;
            }
            last = Some(counts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What placement saw and did, from every node's log, to tell a slow election from a
    // hand-over that never came.
    let mut logs = String::new();
    for index in 0..cluster.nodes.len() {
        let text = cluster.logs(index);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        logs.push_str(&format!(
            "\n--- node {} (last 40 lines) ---\n{tail}",
            index + 1
        ));
    }
    panic!("leadership did not spread over {nodes:?} within {within:?}: {last:?}{logs}");
}

/// An ID that lands on `shard`.
fn id_on(shard: u32, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| shard_of(id, SHARDS) == shard)
        .unwrap()
}

async fn history(client: &mut TaskHubSidecarServiceClient<Channel>, id: &str) -> Vec<HistoryEvent> {
    client
        .get_instance_history(GetInstanceHistoryRequest {
            instance_id: id.to_string(),
        })
        .await
        .unwrap_or_else(|status| panic!("history of {id}: {status}"))
        .into_inner()
        .events
}

/// How often each task or child ID completed, and each timer fired, in the instance's
/// history.
fn completions(events: &[HistoryEvent]) -> HashMap<(&'static str, i32), usize> {
    let mut seen = HashMap::new();
    for event in events {
        let key = match &event.event_type {
            Some(history_event::EventType::TaskCompleted(e)) => ("task", e.task_scheduled_id),
            Some(history_event::EventType::SubOrchestrationInstanceCompleted(e)) => {
                ("child", e.task_scheduled_id)
            }
            Some(history_event::EventType::TimerFired(e)) => ("timer", e.timer_id),
            _ => continue,
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

async fn state(
    client: &mut TaskHubSidecarServiceClient<Channel>,
    id: &str,
) -> Option<OrchestrationState> {
    let request = GetInstanceRequest {
        instance_id: id.to_string(),
        ..Default::default()
    };
    client
        .get_instance(request)
        .await
        .unwrap()
        .into_inner()
        .orchestration_state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_on_other_shards_run_end_and_are_purged_with_their_parent() {
    let cluster = Cluster::sharded(SHARDS);
    wait_spread(&cluster, 0, &[1, 2, 3], Duration::from_secs(30)).await;
    // The worker on one node, the client on another: every call crosses nodes somewhere.
    let _worker = chain_worker(cluster.endpoint(1));
    let mut client = cluster.client(2).await;

    let parent = id_on(0, "parent");
    let children: Vec<String> = (1..=3).map(|shard| id_on(shard, "child")).collect();
    for (shard, child) in (1..).zip(&children) {
        assert_eq!(shard_of(child, SHARDS), shard, "{child}");
    }
    start_named(
        &mut client,
        &parent,
        "parent",
        &format!("chain:{}", children.join(",")),
    )
    .await;
    let done = wait_completed(&mut client, &parent).await;
    assert_eq!(
        done.orchestration_status,
        OrchestrationStatus::Completed as i32,
        "{done:?}"
    );
    assert_eq!(done.output.as_deref(), Some("39"), "three chains of 10 + 3");
    for child in &children {
        let state = wait_completed(&mut client, child).await;
        assert_eq!(state.output.as_deref(), Some("13"), "{child}: {state:?}");
        assert_eq!(state.parent_instance_id.as_deref(), Some(parent.as_str()));
    }

    // A parent whose children never finish: a recursive terminate reaches each shard.
    let holder = id_on(5, "holder");
    let waiting: Vec<String> = [6, 7, 5].iter().map(|s| id_on(*s, "waiting")).collect();
    start_named(
        &mut client,
        &holder,
        "parent",
        &format!("waiter:{}", waiting.join(",")),
    )
    .await;
    for child in &waiting {
        let started = Instant::now();
        while state(&mut client, child).await.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{child} never started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    client
        .terminate_instance(TerminateRequest {
            instance_id: holder.clone(),
            recursive: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for id in waiting.iter().chain([&holder]) {
        let state = wait_completed(&mut client, id).await;
        assert_eq!(
            state.orchestration_status,
            OrchestrationStatus::Terminated as i32,
            "{id}: {state:?}"
        );
    }

    // Purge is recursive across shards too, and counts every instance it deleted.
    for (root, tree) in [(&parent, &children), (&holder, &waiting)] {
        let purged = client
            .purge_instances(PurgeInstancesRequest {
                request: Some(purge_instances_request::Request::InstanceId(root.clone())),
                recursive: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(purged.deleted_instance_count, 4, "{root}: {purged:?}");
        assert_eq!(purged.is_complete, Some(true));
        for id in tree.iter().chain([root]) {
            assert!(
                state(&mut client, id).await.is_none(),
                "{id} is still there"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leading_several_shards_dies_mid_run_and_nothing_is_lost_or_repeated() {
    let mut cluster = Cluster::sharded(SHARDS);
    wait_spread(&cluster, 0, &[1, 2, 3], Duration::from_secs(30)).await;
    let _worker = chain_worker(cluster.endpoint(0));
    let mut client = cluster.client(1).await;
    let parents: Vec<String> = (0..40).map(|i| format!("family-{i}")).collect();
    let children_of =
        |parent: &str| -> Vec<String> { (0..3).map(|c| format!("{parent}-child-{c}")).collect() };
    // Timers and events too: 40 families of 4 and 40 timed workflows, 200 in all.
    let timed: Vec<String> = (0..40).map(|i| format!("timed-{i}")).collect();
    for (parent, timed) in parents[..20].iter().zip(&timed[..20]) {
        let input = format!("chain:{}", children_of(parent).join(","));
        start_named(&mut client, parent, "parent", &input).await;
        start_named(&mut client, timed, "timed", "").await;
    }
    for (i, id) in timed[..10].iter().enumerate() {
        raise_go(&mut client, id, i).await;
    }
    // Node 3 leads two or three shards; it dies with work in flight on them.
    cluster.kill9(2);
    for (parent, timed) in parents[20..].iter().zip(&timed[20..]) {
        let input = format!("chain:{}", children_of(parent).join(","));
        start_named(&mut client, parent, "parent", &input).await;
        start_named(&mut client, timed, "timed", "").await;
    }
    for (i, id) in timed.iter().enumerate().skip(10) {
        raise_go(&mut client, id, i).await;
    }
    wait_spread(&cluster, 0, &[1, 2], Duration::from_secs(30)).await;
    for parent in &parents {
        let done = wait_completed(&mut client, parent).await;
        assert_eq!(done.output.as_deref(), Some("39"), "{parent}: {done:?}");
    }
    for (i, id) in timed.iter().enumerate() {
        let done = wait_completed(&mut client, id).await;
        assert_eq!(done.output, Some(format!("{i}+timer")), "{id}: {done:?}");
    }
    // Node 3 comes back, catches up, and gets its share of the shards again.
    cluster.restart(2);
    wait_spread(&cluster, 0, &[1, 2, 3], Duration::from_secs(60)).await;

    // Everything survives all three nodes dying at once.
    for index in 0..3 {
        cluster.kill9(index);
    }
    for index in 0..3 {
        cluster.restart(index);
    }
    let mut client = cluster.client(2).await;
    for parent in &parents {
        let done = wait_completed(&mut client, parent).await;
        assert_eq!(done.output.as_deref(), Some("39"), "{parent}: {done:?}");
        let seen = completions(&history(&mut client, parent).await);
        assert_eq!(seen.len(), 3, "{parent}: {seen:?}");
        assert!(
            seen.values().all(|n| *n == 1),
            "{parent}: a child's end recorded twice: {seen:?}"
        );
        for child in children_of(parent) {
            let seen = completions(&history(&mut client, &child).await);
            assert_eq!(seen.len(), 3, "{child}: {seen:?}");
            assert!(
                seen.values().all(|n| *n == 1),
                "{child}: a result recorded twice: {seen:?}"
            );
        }
    }
    for id in &timed {
        let seen = completions(&history(&mut client, id).await);
        assert_eq!(
            seen.get(&("timer", 1)),
            Some(&1),
            "{id}: the timer fired once: {seen:?}"
        );
    }
    let listed = list_all(&mut client).await;
    assert_eq!(
        listed.len(),
        parents.len() * 4 + timed.len(),
        "every instance of every shard is listed"
    );
}

/// Raises "go" with payload `i` on `id`, retrying while a failover is under way (a raise
/// applied twice would only add a second event; the workflow takes the first).
async fn raise_go(client: &mut TaskHubSidecarServiceClient<Channel>, id: &str, i: usize) {
    let started = Instant::now();
    loop {
        let request = RaiseEventRequest {
            instance_id: id.to_string(),
            name: "go".into(),
            input: Some(i.to_string()),
            ..Default::default()
        };
        match client.raise_event(request).await {
            Ok(_) => return,
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "raise {id}: {status}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("raise {id}: {status}"),
        }
    }
}

/// Every instance ID, page by page (small pages, so the token crosses shards).
async fn list_all(client: &mut TaskHubSidecarServiceClient<Channel>) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_instance_i_ds(ListInstanceIDsRequest {
                page_size: Some(7),
                continuation_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.instance_ids);
        match page.continuation_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
    sorted.dedup();
    assert_eq!(sorted, all, "pages are in key order with no repeats");
    all
}
