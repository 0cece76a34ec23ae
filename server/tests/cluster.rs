//! Three real nodes on loopback: failover, rejoin from a snapshot, a full restart, and a
//! minority that must refuse writes.

mod cluster_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cluster_support::{chain_worker, start_chain, wait_completed, Cluster};
use endure_proto::endure::internal::{JoinNodeRequest, LeaveNodeRequest};
use endure_proto::*;
use tonic::Code;

fn others(all: &[usize], not: usize) -> Vec<usize> {
    all.iter().copied().filter(|i| *i != not).collect()
}

/// Every activity result is in the history exactly once, three of them, in order.
async fn assert_history_exact(
    client: &mut task_hub_sidecar_service_client::TaskHubSidecarServiceClient<
        tonic::transport::Channel,
    >,
    id: &str,
) {
    let history = client
        .get_instance_history(GetInstanceHistoryRequest {
            instance_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut completed: HashMap<i32, usize> = HashMap::new();
    for event in &history.events {
        if let Some(history_event::EventType::TaskCompleted(done)) = &event.event_type {
            *completed.entry(done.task_scheduled_id).or_default() += 1;
        }
    }
    assert_eq!(completed.len(), 3, "{id}: {completed:?}");
    assert!(
        completed.values().all(|n| *n == 1),
        "{id}: a result was recorded twice: {completed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_workflow_and_runs_nothing_twice() {
    let mut cluster = Cluster::start(None);
    let all = [0, 1, 2];
    let leader = cluster.leader(&all).await;
    let followers = others(&all, leader);
    let worker = chain_worker(cluster.endpoint(followers[0]));
    let mut client = cluster.client(followers[1]).await;
    let ids: Vec<String> = (0..200).map(|i| format!("chain-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        start_chain(&mut client, id, i as i64).await;
    }
    cluster.kill9(leader);
    let killed_at = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let state = wait_completed(&mut client, id).await;
        assert_eq!(
            state.orchestration_status,
            OrchestrationStatus::Completed as i32,
            "{id}"
        );
        assert_eq!(state.output, Some((i as i64 + 3).to_string()), "{id}");
        assert_history_exact(&mut client, id).await;
    }
    println!(
        "all 200 completed {:?} after the leader was killed",
        killed_at.elapsed()
    );
    let new_leader = cluster.leader(&followers).await;
    assert_ne!(new_leader, leader);

    cluster.restart(leader);
    let target = cluster.status(new_leader).await.unwrap().applied_index;
    let started = Instant::now();
    loop {
        let status = cluster.status(leader).await;
        if status.as_ref().is_ok_and(|s| s.applied_index >= target) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the restarted node did not catch up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut through_restarted = cluster.client(leader).await;
    let state = wait_completed(&mut through_restarted, &ids[17]).await;
    assert_eq!(state.output.as_deref(), Some("20"));
    worker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_is_refused_then_rebuilt_from_a_snapshot_under_a_new_id() {
    let mut cluster = Cluster::start(Some(50));
    let all = [0, 1, 2];
    let leader = cluster.leader(&all).await;
    let followers = others(&all, leader);
    let worker = chain_worker(cluster.endpoint(leader));
    let mut client = cluster.client(leader).await;
    // Enough for shard 0 to snapshot however many shards share the work.
    let shards = cluster.status(leader).await.unwrap().shards.len().max(1);
    let chains = 40 * shards as i64;
    for i in 0..chains {
        start_chain(&mut client, &format!("before-{i}"), i).await;
    }
    for i in 0..chains {
        wait_completed(&mut client, &format!("before-{i}")).await;
    }
    let leader_status = cluster.status(leader).await.unwrap();
    assert!(
        leader_status.purged_index > 0,
        "the leader purged its log behind a snapshot: {leader_status:?}"
    );

    // Raft assumes a member never loses its log: the wiped node may not come back as itself.
    let wiped = followers[0];
    let wiped_id = cluster.nodes[wiped].id;
    cluster.wipe(wiped);
    cluster.spawn(wiped);
    let refused = cluster.wait_exit(wiped);
    assert!(!refused.success());
    assert!(
        cluster.logs(wiped).contains("its data was lost"),
        "{}",
        cluster.logs(wiped)
    );

    // The operator's way back: retire the old ID, add the node under a new one.
    let mut admin = cluster.admin(leader).await;
    admin
        .leave_node(LeaveNodeRequest {
            node_id: wiped_id,
            shard: None,
        })
        .await
        .unwrap();
    let rejoined = cluster.add_joining_node(4);
    cluster.wait_port(rejoined);
    let address = format!("127.0.0.1:{}", cluster.nodes[rejoined].raft_port);
    let status = admin
        .join_node(JoinNodeRequest {
            node_id: 4,
            address: address.clone(),
            shard: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        status
            .members
            .iter()
            .any(|m| m.node_id == 4 && m.role == "voter"),
        "{status:?}"
    );
    let reused = admin
        .join_node(JoinNodeRequest {
            node_id: wiped_id,
            address,
            shard: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        reused.code(),
        Code::AlreadyExists,
        "node IDs are never reused: {reused:?}"
    );

    let target = cluster.status(leader).await.unwrap().applied_index;
    let started = Instant::now();
    loop {
        let status = cluster.status(rejoined).await;
        if let Ok(status) = &status {
            if status.applied_index >= target && status.snapshot_index > 0 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "new node not rebuilt: {status:?}\n{}",
            cluster.logs(rejoined)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The rebuilt node serves requests: a workflow started through it completes.
    let mut through_new = cluster.client(rejoined).await;
    start_chain(&mut through_new, "after", 100).await;
    assert_eq!(
        wait_completed(&mut through_new, "after")
            .await
            .output
            .as_deref(),
        Some("103")
    );
    worker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_all_three_nodes_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(None);
    let all = [0, 1, 2];
    let leader = cluster.leader(&all).await;
    let mut client = cluster.client(leader).await;
    let later = prost_types::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    };
    for i in 0..30 {
        let request = CreateInstanceRequest {
            instance_id: format!("scheduled-{i:02}"),
            name: "chain".into(),
            scheduled_start_timestamp: Some(later),
            ..Default::default()
        };
        client.start_instance(request).await.unwrap();
    }
    for index in all {
        cluster.kill9(index);
    }
    for index in all {
        cluster.spawn(index);
    }
    for index in all {
        cluster.wait_port(index);
    }
    let leader = cluster.leader(&all).await;
    let mut client = cluster.client(others(&all, leader)[0]).await;
    let ids = client
        .list_instance_i_ds(ListInstanceIDsRequest {
            page_size: Some(100),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instance_ids;
    assert_eq!(ids.len(), 30, "{ids:?}");
    let worker = chain_worker(cluster.endpoint(leader));
    start_chain(&mut client, "after-restart", 1).await;
    assert_eq!(
        wait_completed(&mut client, "after-restart")
            .await
            .output
            .as_deref(),
        Some("4")
    );
    worker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_refuses_writes_with_unavailable() {
    let mut cluster = Cluster::start(None);
    let all = [0, 1, 2];
    let leader = cluster.leader(&all).await;
    let followers = others(&all, leader);
    // The leader alone: it cannot commit, so it must not acknowledge.
    cluster.kill9(followers[0]);
    cluster.kill9(followers[1]);
    let mut client = cluster.client(leader).await;
    let request = CreateInstanceRequest {
        instance_id: "lonely".into(),
        name: "chain".into(),
        ..Default::default()
    };
    let refused = client.start_instance(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let read = client
        .get_instance(GetInstanceRequest {
            instance_id: "lonely".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        read.code(),
        Code::Unavailable,
        "no stale linearizable read: {read:?}"
    );

    // A lone follower: no leader it can reach, so UNAVAILABLE too.
    cluster.kill9(leader);
    cluster.restart(followers[0]);
    let mut client = cluster.client(followers[0]).await;
    let request = CreateInstanceRequest {
        instance_id: "lonely-2".into(),
        name: "chain".into(),
        ..Default::default()
    };
    let refused = client.start_instance(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    // With a majority back, the writes that were refused were never applied.
    cluster.restart(followers[1]);
    let leader = cluster.leader(&[followers[0], followers[1]]).await;
    let mut client = cluster.client(leader).await;
    // The instance's shard may still be led, as far as this node knows, by the node just
    // killed: UNAVAILABLE until its election is over.
    let started = std::time::Instant::now();
    let lonely = loop {
        let read = client
            .get_instance(GetInstanceRequest {
                instance_id: "lonely-2".into(),
                ..Default::default()
            })
            .await;
        match read {
            Ok(reply) => break reply.into_inner(),
            Err(status) if status.code() == Code::Unavailable => {
                assert!(started.elapsed() < Duration::from_secs(30), "{status:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    assert!(!lonely.exists);
}

/// A leader that hangs (SIGSTOP keeps its sockets open) must not hold the workers of the
/// other nodes: their relayed streams end once those nodes see the new leader, the
/// workers reconnect, and workflows started through a healthy node complete while the
/// old leader is still stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_does_not_stop_the_healthy_majority() {
    let cluster = Cluster::start(None);
    let all = [0, 1, 2];
    let leader = cluster.leader(&all).await;
    let followers = others(&all, leader);
    let worker = chain_worker(cluster.endpoint(followers[0]));
    let mut client = cluster.client(followers[1]).await;
    start_chain(&mut client, "before-pause", 0).await;
    wait_completed(&mut client, "before-pause").await;

    cluster.pause(leader);
    let paused_at = Instant::now();
    let ids: Vec<String> = (0..20).map(|i| format!("during-pause-{i:02}")).collect();
    let run_all = async {
        for (i, id) in ids.iter().enumerate() {
            start_chain(&mut client, id, i as i64).await;
        }
        for (i, id) in ids.iter().enumerate() {
            let state = wait_completed(&mut client, id).await;
            assert_eq!(state.output, Some((i as i64 + 3).to_string()), "{id}");
        }
    };
    // Without a bound, calls forwarded to the stopped leader would hang the test.
    tokio::time::timeout(Duration::from_secs(60), run_all)
        .await
        .expect("no progress in 60 s while the leader was paused");
    let took = paused_at.elapsed();
    cluster.resume(leader);
    println!("20 workflows completed {took:?} into the leader's pause");
    // An election takes about a second; the 30 s turn redelivery must not be what saved
    // them, nor the leader's return.
    assert!(
        took < Duration::from_secs(15),
        "workflows waited {took:?} for a paused leader"
    );
    worker.abort();
}

/// The forward-once rule, on every kind of client call: a call marked as forwarded that
/// reaches a node which is not the leader is refused with UNAVAILABLE, not sent on again
/// (two nodes that disagree about the leader would bounce it between them), and nothing
/// of it is applied. The leader serves a marked call itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_call_is_never_forwarded_again() {
    fn marked<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("endure-forwarded", "1".parse().unwrap());
        request
    }
    fn refused<T: std::fmt::Debug>(rpc: &str, answer: Result<tonic::Response<T>, tonic::Status>) {
        let status = answer.expect_err(rpc);
        assert_eq!(status.code(), Code::Unavailable, "{rpc}: {status:?}");
        assert!(status.message().contains("forwarded"), "{rpc}: {status:?}");
    }
    let cluster = Cluster::start(None);
    let all = [0, 1, 2];
    // Every shard has its leader (a call for a shard without one would be refused for
    // that reason instead).
    cluster.settled(&all).await;
    let leader = cluster.leader(&all).await;
    let follower = others(&all, leader)[0];
    let mut client = cluster.client(follower).await;
    let id = || "forwarded-once".to_string();
    let start = CreateInstanceRequest {
        instance_id: id(),
        name: "chain".into(),
        ..Default::default()
    };
    refused("start", client.start_instance(marked(start)).await);
    let get = GetInstanceRequest {
        instance_id: id(),
        ..Default::default()
    };
    refused("get", client.get_instance(marked(get.clone())).await);
    let raise = RaiseEventRequest {
        instance_id: id(),
        name: "go".into(),
        ..Default::default()
    };
    refused("raise", client.raise_event(marked(raise)).await);
    let suspend = SuspendRequest {
        instance_id: id(),
        ..Default::default()
    };
    refused("suspend", client.suspend_instance(marked(suspend)).await);
    let terminate = TerminateRequest {
        instance_id: id(),
        ..Default::default()
    };
    refused(
        "terminate",
        client.terminate_instance(marked(terminate)).await,
    );
    let purge = PurgeInstancesRequest {
        request: Some(purge_instances_request::Request::InstanceId(id())),
        ..Default::default()
    };
    refused("purge", client.purge_instances(marked(purge)).await);

    // Unmarked, the follower forwards the read once: the refused start left nothing.
    let read = client.get_instance(get.clone()).await.unwrap().into_inner();
    assert!(!read.exists, "a refused start was applied: {read:?}");
    // The leader serves a marked call itself (a start would wait for a worker here).
    let mut at_leader = cluster.client(leader).await;
    let read = at_leader
        .get_instance(marked(get))
        .await
        .unwrap()
        .into_inner();
    assert!(!read.exists);
}
