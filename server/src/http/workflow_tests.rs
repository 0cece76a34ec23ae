//! Unit tests of the workflow routes' pure parts: ID validation, timestamps, status names,
//! the GET body and the body-size limit.

use endure_proto::TaskFailureDetails;
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use prost_types::Timestamp;

use super::*;
use crate::service::new_instance_id;

#[test]
fn new_instance_ids_follow_dapr_rules() {
    for id in [
        "12345678",
        "order-1",
        "a_b",
        "Zürich",
        "x".repeat(64).as_str(),
    ] {
        assert_eq!(validate_new_instance_id(id), Ok(()), "{id}");
    }
    let too_long = validate_new_instance_id(&"x".repeat(65)).unwrap_err();
    assert_eq!(
        (too_long.status, too_long.code),
        (StatusCode::BAD_REQUEST, "ERR_INSTANCE_ID_TOO_LONG")
    );
    assert_eq!(
        too_long.message,
        "workflow instance ID exceeds the max length of 64 characters"
    );
    // Length is in bytes, as Go's len(): 33 two-byte letters are 66 bytes.
    assert_eq!(
        validate_new_instance_id(&"ü".repeat(33)).unwrap_err().code,
        "ERR_INSTANCE_ID_TOO_LONG"
    );
    for id in ["a.b", "a b", "parent:0001", "a/b", "a%b", "ä!"] {
        let invalid = validate_new_instance_id(id).unwrap_err();
        assert_eq!(
            (invalid.status, invalid.code),
            (StatusCode::BAD_REQUEST, "ERR_INSTANCE_ID_INVALID"),
            "{id}"
        );
        assert_eq!(
            invalid.message,
            format!("workflow instance ID '{id}' is invalid: only alphanumeric and underscore characters are allowed")
        );
    }
    assert_eq!(
        validate_new_instance_id("").unwrap_err().code,
        "ERR_INSTANCE_ID_PROVIDED_MISSING"
    );
}

#[test]
fn generated_ids_pass_the_create_check() {
    let id = new_instance_id();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(validate_new_instance_id(&id), Ok(()));
    assert_ne!(id, new_instance_id());
}

#[test]
fn timestamps_use_0_3_6_or_9_fractional_digits() {
    let at = |seconds, nanos| format_timestamp(&Timestamp { seconds, nanos });
    assert_eq!(at(1_735_689_600, 0), "2025-01-01T00:00:00Z");
    assert_eq!(at(1_735_689_600, 123_000_000), "2025-01-01T00:00:00.123Z");
    assert_eq!(
        at(1_735_689_601, 123_456_000),
        "2025-01-01T00:00:01.123456Z"
    );
    assert_eq!(
        at(1_735_689_601, 123_456_789),
        "2025-01-01T00:00:01.123456789Z"
    );
    assert_eq!(at(1_735_689_601, 1_000), "2025-01-01T00:00:01.000001Z");
    assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00Z", "leap day");
    assert_eq!(
        at(253_402_300_799, 999_999_999),
        "9999-12-31T23:59:59.999999999Z"
    );
}

#[test]
fn status_names_match_dapr_and_stalled_is_unknown() {
    assert_eq!(status_name(OrchestrationStatus::Running as i32), "RUNNING");
    assert_eq!(
        status_name(OrchestrationStatus::Completed as i32),
        "COMPLETED"
    );
    assert_eq!(
        status_name(OrchestrationStatus::ContinuedAsNew as i32),
        "CONTINUED_AS_NEW"
    );
    assert_eq!(status_name(OrchestrationStatus::Failed as i32), "FAILED");
    assert_eq!(
        status_name(OrchestrationStatus::Canceled as i32),
        "CANCELED"
    );
    assert_eq!(
        status_name(OrchestrationStatus::Terminated as i32),
        "TERMINATED"
    );
    assert_eq!(status_name(OrchestrationStatus::Pending as i32), "PENDING");
    assert_eq!(
        status_name(OrchestrationStatus::Suspended as i32),
        "SUSPENDED"
    );
    assert_eq!(status_name(OrchestrationStatus::Stalled as i32), "UNKNOWN");
    assert_eq!(status_name(42), "UNKNOWN");
}

fn body_json(state: &OrchestrationState) -> serde_json::Value {
    serde_json::to_value(InstanceBody::from_state(state)).unwrap()
}

#[test]
fn get_body_has_only_the_properties_that_exist() {
    let mut state = OrchestrationState {
        instance_id: "abc".into(),
        name: "wf".into(),
        orchestration_status: OrchestrationStatus::Running as i32,
        created_timestamp: Some(Timestamp {
            seconds: 1_735_689_600,
            nanos: 123_456_000,
        }),
        last_updated_timestamp: Some(Timestamp {
            seconds: 1_735_689_601,
            nanos: 0,
        }),
        ..Default::default()
    };
    let bare = body_json(&state);
    assert_eq!(
        bare,
        serde_json::json!({"instanceID": "abc", "workflowName": "wf", "createdAt": "2025-01-01T00:00:00.123456Z",
            "lastUpdatedAt": "2025-01-01T00:00:01Z", "runtimeStatus": "RUNNING"}),
        "no properties key when there are none"
    );
    state.input = Some(String::new());
    state.output = Some("\"done\"".into());
    state.custom_status = Some("step 2".into());
    let properties = body_json(&state)["properties"].clone();
    assert_eq!(
        properties,
        serde_json::json!({"dapr.workflow.input": "", "dapr.workflow.output": "\"done\"",
            "dapr.workflow.custom_status": "step 2"})
    );
}

#[test]
fn failed_instances_show_the_failure_and_no_output() {
    let state = OrchestrationState {
        instance_id: "f".into(),
        name: "wf".into(),
        orchestration_status: OrchestrationStatus::Failed as i32,
        output: Some("ignored".into()),
        failure_details: Some(TaskFailureDetails {
            error_type: "ValueError".into(),
            error_message: "boom".into(),
            stack_trace: Some("line 1".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let body = body_json(&state);
    assert_eq!(body["runtimeStatus"], "FAILED");
    assert!(
        body.get("createdAt").is_none(),
        "unset timestamps are omitted"
    );
    assert_eq!(
        body["properties"],
        serde_json::json!({"dapr.workflow.failure.error_type": "ValueError",
            "dapr.workflow.failure.error_message": "boom", "dapr.workflow.failure.stack_trace": "line 1"})
    );
}

fn stream_body(
    chunks: Vec<&'static [u8]>,
) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
    let frames = chunks
        .into_iter()
        .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk))));
    StreamBody::new(tokio_stream::iter(frames))
}

#[tokio::test]
async fn bodies_are_read_up_to_the_limit() {
    assert_eq!(
        read_text(Full::new(Bytes::from_static(b"{\"a\":1}")), 7)
            .await
            .unwrap(),
        "{\"a\":1}"
    );
    assert_eq!(read_text(Full::new(Bytes::new()), 0).await.unwrap(), "");
    let declared = read_text(Full::new(Bytes::from_static(b"12345678")), 7)
        .await
        .unwrap_err();
    assert_eq!(
        (declared.status, declared.code),
        (StatusCode::PAYLOAD_TOO_LARGE, "ERR_BODY_TOO_LARGE")
    );
    // Without a declared length (chunked), the limit stops the read.
    assert_eq!(
        read_text(stream_body(vec![b"1234", b"567"]), 7)
            .await
            .unwrap(),
        "1234567"
    );
    let streamed = read_text(stream_body(vec![b"1234", b"5678"]), 7)
        .await
        .unwrap_err();
    assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);
    let binary = read_text(Full::new(Bytes::from_static(&[0xff, 0xfe])), 7)
        .await
        .unwrap_err();
    assert_eq!(
        (binary.status, binary.code),
        (StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST")
    );
}
