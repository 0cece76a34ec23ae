//! The gRPC API against the real binary: a minimal worker written with the generated client,
//! every client RPC, bad input, and kill -9 durability.

mod common;

use common::Server;
use endure_proto::orchestrator_action::OrchestratorActionType as Action;
use endure_proto::*;
use tonic::Code;

fn start_request(id: &str, input: &str) -> CreateInstanceRequest {
    CreateInstanceRequest {
        instance_id: id.into(),
        name: "Echo".into(),
        input: Some(input.into()),
        ..Default::default()
    }
}

/// A worker that completes every turn at once with the instance's input as output.
async fn echo_worker(server: &Server) -> tokio::task::JoinHandle<()> {
    common::turn_worker(server, |turn| {
        let input = turn
            .new_events
            .iter()
            .chain(turn.past_events.iter())
            .find_map(|e| match &e.event_type {
                Some(history_event::EventType::ExecutionStarted(started)) => started.input.clone(),
                _ => None,
            });
        assert!(matches!(
            turn.new_events[0].event_type,
            Some(history_event::EventType::OrchestratorStarted(_))
        ));
        let done = OrchestratorAction {
            id: 1,
            orchestrator_action_type: Some(Action::CompleteOrchestration(
                CompleteOrchestrationAction {
                    orchestration_status: OrchestrationStatus::Completed as i32,
                    result: input,
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        (vec![done], None)
    })
    .await
}

#[tokio::test]
async fn a_workflow_runs_and_every_client_rpc_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let worker = echo_worker(&server).await;
    let mut client = server.client().await;
    client.hello(()).await.unwrap();
    let started = client
        .start_instance(start_request("wf-1", "\"hi\""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.instance_id, "wf-1");
    let done = client
        .wait_for_instance_completion(GetInstanceRequest {
            instance_id: "wf-1".into(),
            get_inputs_and_outputs: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let state = done.orchestration_state.unwrap();
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Completed as i32
    );
    assert_eq!(state.output.as_deref(), Some("\"hi\""));
    assert_eq!(state.input.as_deref(), Some("\"hi\""));
    assert!(state.failure_details.is_none());

    let history = client
        .get_instance_history(GetInstanceHistoryRequest {
            instance_id: "wf-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        history.events.len(),
        3,
        "OrchestratorStarted, ExecutionStarted, ExecutionCompleted"
    );

    let again = client
        .start_instance(start_request("wf-1", "\"again\""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.instance_id, "wf-1", "a terminal ID can be reused");
    let ids = client
        .list_instance_i_ds(ListInstanceIDsRequest {
            page_size: Some(10),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids.instance_ids, vec!["wf-1".to_string()]);

    let purged = client
        .purge_instances(PurgeInstancesRequest {
            request: Some(purge_instances_request::Request::InstanceId("wf-1".into())),
            recursive: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(purged.deleted_instance_count, 1);
    let gone = client
        .get_instance(GetInstanceRequest {
            instance_id: "wf-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!gone.exists);
    worker.abort();
}

#[tokio::test]
async fn bad_requests_get_clear_statuses_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut client = server.client().await;

    let no_name = client
        .start_instance(CreateInstanceRequest {
            instance_id: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_name.code(), Code::InvalidArgument);
    assert!(
        no_name.message().contains("name is required"),
        "{}",
        no_name.message()
    );

    for status in [
        client
            .raise_event(RaiseEventRequest {
                instance_id: "nope".into(),
                name: "e".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        client
            .terminate_instance(TerminateRequest {
                instance_id: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        client
            .suspend_instance(SuspendRequest {
                instance_id: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        client
            .resume_instance(ResumeRequest {
                instance_id: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound);
        assert!(
            status.message().contains("no such instance exists"),
            "{}",
            status.message()
        );
    }
    let history = client
        .get_instance_history(GetInstanceHistoryRequest {
            instance_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(history.code(), Code::NotFound);

    let filter = client
        .purge_instances(PurgeInstancesRequest {
            request: Some(purge_instances_request::Request::PurgeInstanceFilter(
                Default::default(),
            )),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(filter.code(), Code::Unimplemented);
    let rewind = client
        .rewind_instance(RewindInstanceRequest {
            instance_id: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(rewind.code(), Code::Unimplemented);

    let huge = "x".repeat(5 * 1024 * 1024);
    let too_big = client
        .start_instance(start_request("big", &huge))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::ResourceExhausted);

    let unknown_turn = client
        .complete_orchestrator_task(OrchestratorResponse {
            instance_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(unknown_turn.message().contains("unknown instance ID: nope"));
    let unknown_activity = client
        .complete_activity_task(ActivityResponse {
            instance_id: "nope".into(),
            task_id: 3,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(unknown_activity
        .message()
        .contains("unknown instance ID/task ID combo: nope/3"));

    let ids = client
        .list_instance_i_ds(ListInstanceIDsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        ids.instance_ids.is_empty(),
        "no bad request stored anything"
    );

    let timeout = {
        let mut request = tonic::Request::new(GetInstanceRequest {
            instance_id: "nope".into(),
            ..Default::default()
        });
        request.set_timeout(std::time::Duration::from_millis(200));
        client.wait_for_instance_start(request).await.unwrap_err()
    };
    assert_eq!(timeout.code(), Code::NotFound);
}

#[tokio::test]
async fn acknowledged_starts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_process(&dir.path().join("data"));
    let mut client = server.client().await;
    let later = prost_types::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    };
    for i in 0..50 {
        let mut request = start_request(&format!("wf-{i:02}"), "1");
        request.scheduled_start_timestamp = Some(later);
        client.start_instance(request).await.unwrap();
    }
    server.kill9();
    server.restart();
    let mut client = server.client().await;
    let ids = client
        .list_instance_i_ds(ListInstanceIDsRequest {
            page_size: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids.instance_ids.len(),
        50,
        "every acknowledged start is still there"
    );
    let state = client
        .get_instance(GetInstanceRequest {
            instance_id: "wf-07".into(),
            get_inputs_and_outputs: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orchestration_state
        .unwrap();
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Pending as i32
    );
    assert_eq!(state.scheduled_start_timestamp, Some(later));
}

#[test]
fn a_corrupt_data_directory_stops_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let server = Server::start(&data);
        drop(server);
    }
    std::fs::write(data.join("CURRENT"), b"garbage-manifest\n").unwrap();
    let mut server = Server::spawn(&data, common::free_port(), common::free_port());
    let status = server.process().wait().unwrap();
    assert!(!status.success());
    let logs = server.logs();
    assert!(logs.contains("cannot open the data directory"), "{logs}");
}

#[tokio::test]
async fn rerun_from_an_activity_runs_it_again_in_a_new_instance() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let worker = common::shout_worker(&server).await;
    let mut client = server.client().await;
    client
        .start_instance(start_request("source", "hello"))
        .await
        .unwrap();
    let wait = |id: &str| GetInstanceRequest {
        instance_id: id.into(),
        get_inputs_and_outputs: true,
        ..Default::default()
    };
    let done = client
        .wait_for_instance_completion(wait("source"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.orchestration_state.unwrap().output.as_deref(),
        Some("HELLO")
    );
    let history = client
        .get_instance_history(GetInstanceHistoryRequest {
            instance_id: "source".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let scheduled = history
        .events
        .iter()
        .find(|e| {
            matches!(
                e.event_type,
                Some(history_event::EventType::TaskScheduled(_))
            )
        })
        .expect("the source scheduled an activity")
        .event_id;

    let rerun = RerunWorkflowFromEventRequest {
        source_instance_id: "source".into(),
        event_id: scheduled as u32,
        new_instance_id: Some("rerun".into()),
        input: Some("again".into()),
        overwrite_input: true,
        ..Default::default()
    };
    let response = client
        .rerun_workflow_from_event(rerun.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.new_instance_id, "rerun");
    let done = client
        .wait_for_instance_completion(wait("rerun"))
        .await
        .unwrap()
        .into_inner();
    let state = done.orchestration_state.unwrap();
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Completed as i32
    );
    assert_eq!(
        state.output.as_deref(),
        Some("AGAIN"),
        "the activity ran again with the new input"
    );

    let taken = client.rerun_workflow_from_event(rerun).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let missing = RerunWorkflowFromEventRequest {
        source_instance_id: "nope".into(),
        event_id: 1,
        ..Default::default()
    };
    let missing = client.rerun_workflow_from_event(missing).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing
        .message()
        .contains("workflow instance does not exist with ID 'nope'"));
    worker.abort();
}

#[tokio::test]
async fn a_turn_larger_than_a_worker_accepts_stalls_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--max-message-bytes", "2048"]);
    let worker = common::shout_worker(&server).await;
    let mut client = server.client().await;
    // The first turn and the activity fit; the second turn carries the input three times.
    let input = "x".repeat(900);
    client
        .start_instance(start_request("big", &input))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let state = loop {
        let request = GetInstanceRequest {
            instance_id: "big".into(),
            ..Default::default()
        };
        let state = client
            .get_instance(request)
            .await
            .unwrap()
            .into_inner()
            .orchestration_state
            .unwrap();
        if state.orchestration_status == OrchestrationStatus::Stalled as i32 {
            break state;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "not stalled: {state:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Stalled as i32
    );
    let history = client
        .get_instance_history(GetInstanceHistoryRequest {
            instance_id: "big".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let stalled = history.events.iter().find_map(|e| match &e.event_type {
        Some(history_event::EventType::ExecutionStalled(s)) => Some(s.clone()),
        _ => None,
    });
    let stalled = stalled.expect("an ExecutionStalled event");
    assert_eq!(stalled.reason, 2, "PAYLOAD_SIZE_EXCEEDED");
    assert!(stalled.description.unwrap().contains("over the 2048 bytes"));
    client
        .terminate_instance(TerminateRequest {
            instance_id: "big".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    worker.abort();
}
