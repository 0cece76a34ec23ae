//! Dapr's workflow HTTP API against the real binary: starts, reads, every validation and
//! not-found error, and a worker (written with the generated gRPC client) that runs what
//! HTTP starts, so pause, resume, raise event, failure and completion show through GET.

mod common;
mod http_support;

use common::Server;
use endure_proto::orchestrator_action::OrchestratorActionType as ActionType;
use endure_proto::*;
use http_support::*;
use serde_json::json;

fn events_of(turn: &OrchestratorRequest) -> impl Iterator<Item = &history_event::EventType> {
    turn.past_events
        .iter()
        .chain(turn.new_events.iter())
        .filter_map(|e| e.event_type.as_ref())
}

/// The one answer of a turn of the test workflows. `Approval` waits for the event
/// `approve` (custom status "waiting for approval" meanwhile) and completes with the
/// event's input; `Fail` fails at once.
fn approval_turn(turn: &OrchestratorRequest) -> (Vec<OrchestratorAction>, Option<String>) {
    use history_event::EventType;
    let name = events_of(turn).find_map(|e| match e {
        EventType::ExecutionStarted(started) => Some(started.name.clone()),
        _ => None,
    });
    let complete = |action: CompleteOrchestrationAction| OrchestratorAction {
        id: 1,
        orchestrator_action_type: Some(ActionType::CompleteOrchestration(action)),
        ..Default::default()
    };
    if name.as_deref() == Some("Fail") {
        let failure = TaskFailureDetails {
            error_type: "TestError".into(),
            error_message: "failed on purpose".into(),
            stack_trace: Some("at approval_turn".into()),
            ..Default::default()
        };
        let failed = CompleteOrchestrationAction {
            orchestration_status: OrchestrationStatus::Failed as i32,
            failure_details: Some(failure),
            ..Default::default()
        };
        return (vec![complete(failed)], None);
    }
    let approval = events_of(turn).find_map(|e| match e {
        EventType::EventRaised(raised) if raised.name == "approve" => Some(raised.input.clone()),
        _ => None,
    });
    match approval {
        Some(result) => {
            let done = CompleteOrchestrationAction {
                orchestration_status: OrchestrationStatus::Completed as i32,
                result,
                ..Default::default()
            };
            (vec![complete(done)], None)
        }
        None => (Vec::new(), Some("waiting for approval".into())),
    }
}

/// A worker that answers every turn with [`approval_turn`].
async fn approval_worker(server: &Server) -> tokio::task::JoinHandle<()> {
    common::turn_worker(server, approval_turn).await
}

/// The message of Dapr's ERR_INSTANCE_ID_INVALID for `id`.
fn invalid_id_message(id: &str) -> String {
    format!(
        "workflow instance ID '{id}' is invalid: only alphanumeric and underscore characters are allowed"
    )
}

const NOT_FOUND_NOPE: &str = "unable to find workflow with the provided instance ID: nope";

#[tokio::test]
async fn start_answers_202_and_get_shows_the_pending_instance() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;

    let started = post(
        port,
        &start_path("Approval", "wf-1"),
        br#"{"item":"paperclips"}"#,
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.text());
    assert_eq!(started.json(), json!({"instanceID": "wf-1"}));
    for version in ["v1.0", "v1.0-beta1", "v1.0-alpha1"] {
        let reply = get(port, &format!("/{version}/workflows/dapr/wf-1")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        assert_eq!(
            (&body["instanceID"], &body["workflowName"]),
            (&json!("wf-1"), &json!("Approval"))
        );
        assert_eq!(body["runtimeStatus"], "PENDING", "no worker, no first turn");
        assert!(is_dapr_timestamp(&body["createdAt"]), "{body}");
        assert!(is_dapr_timestamp(&body["lastUpdatedAt"]), "{body}");
        let raw_input = json!({"dapr.workflow.input": r#"{"item":"paperclips"}"#});
        assert_eq!(body["properties"], raw_input, "the raw body, unparsed");
    }

    // No instanceID: a generated one; an empty body: the input "".
    let generated = post(port, "/v1.0-beta1/workflows/dapr/Approval/start", b"").await;
    assert_eq!(generated.status, 202, "{}", generated.text());
    let generated_id = generated.json()["instanceID"].as_str().unwrap().to_string();
    let hex = generated_id.chars().all(|c| c.is_ascii_hexdigit());
    assert!(generated_id.len() == 32 && hex, "{generated_id}");
    let body = instance(port, &generated_id).await;
    assert_eq!(body["properties"], json!({"dapr.workflow.input": ""}));

    let again = post(port, &start_path("Approval", "wf-1"), b"1").await;
    let message = again.error(500, "ERR_START_WORKFLOW");
    assert!(
        message.starts_with("error starting workflow 'Approval': "),
        "{message}"
    );
    assert!(message.contains("already exists"), "{message}");

    assert_accepted(&post(port, "/v1.0-alpha1/workflows/dapr/wf-1/terminate", b"").await);
    assert_eq!(instance(port, "wf-1").await["runtimeStatus"], "TERMINATED");
    assert_accepted(&post(port, &instance_path("wf-1", "/purge"), b"").await);
    assert_eq!(
        get(port, &instance_path("wf-1", "")).await.status,
        404,
        "purged"
    );
}

#[tokio::test]
async fn create_time_checks_refuse_bad_ids_and_missing_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;

    let longest = "x".repeat(64);
    assert_eq!(
        post(port, &start_path("Approval", &longest), b"")
            .await
            .status,
        202
    );
    let too_long = post(port, &start_path("Approval", &format!("{longest}y")), b"").await;
    let message = too_long.error(400, "ERR_INSTANCE_ID_TOO_LONG");
    assert_eq!(
        message,
        "workflow instance ID exceeds the max length of 64 characters"
    );
    for (raw, decoded) in [
        ("bad.id", "bad.id"),
        ("a%20b", "a b"),
        ("p%3A0001", "p:0001"),
    ] {
        let invalid = post(port, &start_path("Approval", raw), b"").await;
        assert_eq!(
            invalid.error(400, "ERR_INSTANCE_ID_INVALID"),
            invalid_id_message(decoded)
        );
    }
    let nameless = post(port, "/v1.0/workflows/dapr//start?instanceID=nameless", b"").await;
    let message = nameless.error(400, "ERR_WORKFLOW_NAME_MISSING");
    assert_eq!(message, "workflow name is not configured");

    // Refused requests stored nothing.
    let mut client = server.client().await;
    let request = ListInstanceIDsRequest::default();
    let ids = client
        .list_instance_i_ds(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids.instance_ids, vec![longest]);
}

#[tokio::test]
async fn unknown_and_missing_instances_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;

    let unknown = get(port, &instance_path("nope", "")).await;
    assert_eq!(
        unknown.error(404, "ERR_INSTANCE_ID_NOT_FOUND"),
        NOT_FOUND_NOPE
    );
    let missing = get(port, "/v1.0/workflows/dapr/").await;
    let message = missing.error(400, "ERR_INSTANCE_ID_PROVIDED_MISSING");
    assert_eq!(message, "no instance ID was provided");
    let missing = post(port, "/v1.0/workflows/dapr//pause", b"").await;
    missing.error(400, "ERR_INSTANCE_ID_PROVIDED_MISSING");
    for operation in [
        "/terminate",
        "/pause",
        "/resume",
        "/purge",
        "/raiseEvent/approve",
    ] {
        let reply = post(port, &instance_path("nope", operation), b"").await;
        let message = reply.error(404, "ERR_INSTANCE_ID_NOT_FOUND");
        assert_eq!(message, NOT_FOUND_NOPE, "{operation}");
    }

    assert_eq!(
        post(port, &start_path("Approval", "wf-1"), b"")
            .await
            .status,
        202
    );
    for suffix in ["/raiseEvent", "/raiseEvent/"] {
        let reply = post(port, &instance_path("wf-1", suffix), b"{}").await;
        let message = reply.error(400, "ERR_WORKFLOW_EVENT_NAME_MISSING");
        assert_eq!(message, "missing workflow event name");
    }
    let purge_pending = post(port, &instance_path("wf-1", "/purge"), b"").await;
    let message = purge_pending.error(500, "ERR_PURGE_WORKFLOW");
    assert!(
        message.starts_with("error purging workflow wf-1: "),
        "{message}"
    );
    assert_eq!(
        instance(port, "wf-1").await["runtimeStatus"],
        "PENDING",
        "still there"
    );
}

#[tokio::test]
async fn pause_resume_and_an_event_drive_a_run_to_completion() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;
    let worker = approval_worker(&server).await;

    let started = post(
        port,
        &start_path("Approval", "order-1"),
        br#"{"item":"paperclips"}"#,
    )
    .await;
    assert_eq!(started.json(), json!({"instanceID": "order-1"}));
    let running = wait_for(port, "order-1", |b| b["runtimeStatus"] == "RUNNING").await;
    let properties = &running["properties"];
    assert_eq!(
        properties["dapr.workflow.custom_status"], "waiting for approval",
        "{running}"
    );
    assert!(
        properties.get("dapr.workflow.output").is_none(),
        "{running}"
    );

    assert_accepted(&post(port, &instance_path("order-1", "/pause"), b"").await);
    assert_eq!(
        instance(port, "order-1").await["runtimeStatus"],
        "SUSPENDED"
    );
    assert_accepted(&post(port, &instance_path("order-1", "/resume"), b"").await);
    assert_eq!(instance(port, "order-1").await["runtimeStatus"], "RUNNING");

    let approve = instance_path("order-1", "/raiseEvent/approve");
    assert_accepted(&post(port, &approve, br#"{"approved":true}"#).await);
    let done = wait_for(port, "order-1", |b| b["runtimeStatus"] == "COMPLETED").await;
    let properties = &done["properties"];
    assert_eq!(
        properties["dapr.workflow.output"], r#"{"approved":true}"#,
        "{done}"
    );
    assert_eq!(
        properties["dapr.workflow.input"], r#"{"item":"paperclips"}"#,
        "{done}"
    );

    // A finished ID can be started again over HTTP, as over gRPC.
    assert_eq!(
        post(port, &start_path("Approval", "order-1"), b"2")
            .await
            .status,
        202
    );
    let rerun = |b: &serde_json::Value| {
        b["runtimeStatus"] == "RUNNING" && b["properties"]["dapr.workflow.input"] == "2"
    };
    wait_for(port, "order-1", rerun).await;
    worker.abort();
}

#[tokio::test]
async fn failures_and_events_without_data_show_in_get() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;
    let worker = approval_worker(&server).await;

    // An empty event body raises the event without input, so the output stays unset.
    assert_eq!(
        post(port, &start_path("Approval", "order-2"), b"")
            .await
            .status,
        202
    );
    wait_for(port, "order-2", |b| b["runtimeStatus"] == "RUNNING").await;
    assert_accepted(&post(port, &instance_path("order-2", "/raiseEvent/approve"), b"").await);
    let done = wait_for(port, "order-2", |b| b["runtimeStatus"] == "COMPLETED").await;
    assert!(
        done["properties"].get("dapr.workflow.output").is_none(),
        "{done}"
    );

    assert_eq!(
        post(port, &start_path("Fail", "broken"), b"").await.status,
        202
    );
    let failed = wait_for(port, "broken", |b| b["runtimeStatus"] == "FAILED").await;
    let expected = json!({
        "dapr.workflow.input": "",
        "dapr.workflow.failure.error_type": "TestError",
        "dapr.workflow.failure.error_message": "failed on purpose",
        "dapr.workflow.failure.stack_trace": "at approval_turn",
    });
    assert_eq!(failed["properties"], expected);
    worker.abort();
}
