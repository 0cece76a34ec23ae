//! Per-node limits: over `--max-worker-streams` or `--max-waiting-polls` a call is refused
//! at once with RESOURCE_EXHAUSTED, a message naming the flag, and a `retry-after` hint;
//! a freed place is taken by the next call.

mod common;
mod http_support;

use std::time::Duration;

use common::Server;
use endure_proto::{CreateInstanceRequest, GetInstanceRequest, GetWorkItemsRequest};
use tonic::Code;

fn assert_overloaded(status: &tonic::Status, flag: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(flag), "{status:?}");
    let hint = status
        .metadata()
        .get("retry-after")
        .map(|v| v.to_str().unwrap());
    assert_eq!(hint, Some("1"), "{status:?}");
}

fn wait_request(id: &str, deadline: Duration) -> tonic::Request<GetInstanceRequest> {
    let mut request = tonic::Request::new(GetInstanceRequest {
        instance_id: id.into(),
        ..Default::default()
    });
    request.set_timeout(deadline);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_waits_beyond_their_limits_are_refused_until_a_place_frees() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--max-worker-streams", "1", "--max-waiting-polls", "2"],
    );
    let mut client = server.client().await;

    // One worker stream is let in, a second is refused.
    let first = client
        .get_work_items(GetWorkItemsRequest::default())
        .await
        .unwrap();
    let refused = client
        .get_work_items(GetWorkItemsRequest::default())
        .await
        .unwrap_err();
    assert_overloaded(&refused, "--max-worker-streams");
    drop(first);
    let started = std::time::Instant::now();
    let again = loop {
        match client.get_work_items(GetWorkItemsRequest::default()).await {
            Ok(stream) => break stream,
            Err(status) => assert_overloaded(&status, "--max-worker-streams"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(again);

    // An instance that will not start for an hour: waits for its start stay open.
    let later = prost_types::Timestamp {
        seconds: (std::time::SystemTime::now() + Duration::from_secs(3600))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        nanos: 0,
    };
    client
        .start_instance(CreateInstanceRequest {
            instance_id: "later".into(),
            name: "chain".into(),
            scheduled_start_timestamp: Some(later),
            ..Default::default()
        })
        .await
        .unwrap();
    let spawn_wait = || {
        let server_port = server.grpc_port;
        tokio::spawn(async move {
            let endpoint = format!("http://127.0.0.1:{server_port}");
            let mut waiting =
                endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient::connect(
                    endpoint,
                )
                .await
                .unwrap();
            waiting
                .wait_for_instance_start(wait_request("later", Duration::from_secs(60)))
                .await
        })
    };
    let mut waits = vec![spawn_wait(), spawn_wait()];
    // Until both waits are in, a third merely times out (or takes a place first, and a
    // long wait is refused and sent again); once they are, the third is refused.
    let started = std::time::Instant::now();
    let refused = loop {
        for wait in waits.iter_mut() {
            if wait.is_finished() {
                *wait = spawn_wait();
            }
        }
        let answer = client
            .wait_for_instance_start(wait_request("later", Duration::from_millis(200)))
            .await
            .unwrap_err();
        if answer.code() == Code::ResourceExhausted {
            break answer;
        }
        assert_eq!(answer.code(), Code::DeadlineExceeded, "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the waits never filled the limit"
        );
    };
    assert_overloaded(&refused, "--max-waiting-polls");
    // Reads are not limited.
    let state = client
        .get_instance(wait_request("later", Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(state.into_inner().exists);

    // One waiter gives up: its place goes to the next wait, which then times out
    // normally (the instance still has not started).
    waits.pop().unwrap().abort();
    let started = std::time::Instant::now();
    loop {
        let answer = client
            .wait_for_instance_start(wait_request("later", Duration::from_secs(1)))
            .await
            .unwrap_err();
        if answer.code() != Code::ResourceExhausted {
            assert_eq!(answer.code(), Code::DeadlineExceeded, "{answer:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the wait's slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the gauge `name{kind="<kind>"}` in a node's /metrics.
async fn gauge(server: &Server, name: &str, kind: &str) -> f64 {
    let text = http_support::get(server.http_port, "/metrics").await.text();
    let prefix = format!("{name}{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_reading_holds_no_more_than_its_cap_and_loses_it_after_the_timeout() {
    use endure_proto::OrchestrationStatus;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = [
        "--max-turns-per-worker",
        "2",
        "--max-activities-per-worker",
        "2",
        "--turn-timeout-secs",
        "3",
        "--activity-timeout-secs",
        "3",
    ];
    let server = Server::spawn_with(&data, common::free_port(), common::free_port(), &flags);
    server.wait_ready();
    let mut client = server.client().await;

    // A worker that opens its stream and never reads it.
    let stuck = client
        .get_work_items(GetWorkItemsRequest::default())
        .await
        .unwrap();
    // Started over HTTP, which answers once the start commits (a gRPC start waits for
    // the first turn, which the stuck worker holds).
    for i in 0..20 {
        let path = http_support::start_path("Shout", &format!("wf-{i}"));
        let body = format!("\"{i}\"");
        let reply = http_support::post(server.http_port, &path, body.as_bytes()).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
    let started = std::time::Instant::now();
    loop {
        let queued = gauge(&server, "endure_work_items_queued", "turn").await;
        let in_flight = gauge(&server, "endure_work_items_in_flight", "turn").await;
        assert!(
            in_flight <= 2.0,
            "{in_flight} turns sent to a capped worker"
        );
        if queued == 18.0 && in_flight == 2.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{queued} queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A live worker gets the 18 at once, and the 2 the stuck one holds after 3 s (the
    // defaults would be 30 s for a turn and 600 s for an activity). The stuck worker, a
    // suspect once a turn timed out, gets no new turns meanwhile; an activity it takes
    // after its suspicion ends comes back after 3 s too.
    let live_from = std::time::Instant::now();
    let _live = common::shout_worker(&server).await;
    for i in 0..20 {
        let mut request = wait_request(&format!("wf-{i}"), Duration::from_secs(20));
        request.get_mut().get_inputs_and_outputs = true;
        let state = client
            .wait_for_instance_completion(request)
            .await
            .unwrap_or_else(|e| panic!("wf-{i} did not complete: {e:?}"))
            .into_inner()
            .orchestration_state
            .unwrap();
        assert_eq!(
            state.orchestration_status,
            OrchestrationStatus::Completed as i32
        );
        assert_eq!(state.output, Some(format!("\"{i}\"")));
    }
    let took = live_from.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_refuses_a_raise_and_an_oversized_payload_changes_nothing() {
    use endure_proto::RaiseEventRequest;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--max-inbox-events", "3", "--max-payload-bytes", "100"],
    );
    let mut client = server.client().await;
    let path = http_support::start_path("Approval", "waits");
    let reply = http_support::post(server.http_port, &path, b"").await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let raise = |name: &str, data: &str| RaiseEventRequest {
        instance_id: "waits".into(),
        name: name.into(),
        input: Some(data.into()),
        ..Default::default()
    };
    // No worker runs it: ExecutionStarted and two events fill an inbox of three.
    for name in ["one", "two"] {
        client.raise_event(raise(name, "1")).await.unwrap();
    }
    let full = client.raise_event(raise("three", "1")).await.unwrap_err();
    assert_overloaded(&full, "--max-inbox-events");
    assert!(full.message().contains("3 events waiting"), "{full:?}");
    let reply = http_support::post(
        server.http_port,
        "/v1.0/workflows/dapr/waits/raiseEvent/three",
        b"1",
    )
    .await;
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1"));

    let big = "x".repeat(101);
    let refused = client.raise_event(raise("big", &big)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-payload-bytes"),
        "{refused:?}"
    );
    let refused = client
        .start_instance(CreateInstanceRequest {
            instance_id: "big".into(),
            name: "Approval".into(),
            input: Some(big),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("the input is 101 bytes"),
        "{refused:?}"
    );
    let state = client
        .get_instance(wait_request("big", Duration::from_secs(5)))
        .await
        .unwrap()
        .into_inner();
    assert!(!state.exists, "a refused start created the instance");
}
