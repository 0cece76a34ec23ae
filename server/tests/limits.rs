//! Per-node limits: over `--max-worker-streams` or `--max-waiting-polls` a call is refused
//! at once with RESOURCE_EXHAUSTED, a message naming the flag, and a `retry-after` hint;
//! a freed place is taken by the next call.

mod common;

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
    let mut waits = Vec::new();
    for _ in 0..2 {
        let mut waiting = server.client().await;
        waits.push(tokio::spawn(async move {
            waiting
                .wait_for_instance_start(wait_request("later", Duration::from_secs(60)))
                .await
        }));
    }
    // Until both waits are in, a third merely times out; once they are, it is refused.
    let started = std::time::Instant::now();
    let refused = loop {
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
