//! Dapr's workflow HTTP API (dapr/dapr `pkg/api/http/workflow.go`): start, get, terminate,
//! raise event, pause, resume and purge, each a thin layer over the shared service layer so the
//! HTTP and gRPC front ends cannot drift apart.

use std::collections::BTreeMap;

use endure_proto::{
    purge_instances_request, CreateInstanceRequest, GetInstanceRequest, OrchestrationState,
    OrchestrationStatus, PurgeInstancesRequest, RaiseEventRequest, ResumeRequest, SuspendRequest,
    TerminateRequest,
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::errors::{from_service, ApiError, Operation, MAX_INSTANCE_ID_BYTES};
use super::router::{query_param, Action};
use super::{json_response, HttpState, Response};
use crate::service::start::StartWait;
use crate::service::{self, Call, Workflows};

/// `POST /{v}/workflows/{component}/{name}/start[?instanceID=…]`: the raw body is the input
/// (an empty body is the input `""`, as in Dapr). Answers once the start is committed,
/// without waiting for the first turn, as Dapr's HTTP API does.
pub async fn start(
    state: &HttpState,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response, ApiError> {
    let instance_id = match query_param(request.uri().query(), "instanceID")? {
        Some(id) if !id.is_empty() => id,
        _ => service::new_instance_id(),
    };
    validate_new_instance_id(&instance_id)?;
    if name.is_empty() {
        return Err(ApiError::workflow_name_missing());
    }
    let input = read_text(request.into_body(), state.max_body_bytes).await?;
    let create = CreateInstanceRequest {
        instance_id,
        name: name.to_string(),
        input: Some(input),
        ..Default::default()
    };
    let created = state
        .workflows
        .start(&Call::default(), create, StartWait::No)
        .await
        .map_err(|error| from_service(&error, Operation::Start { name }))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "instanceID": created.instance_id }),
    ))
}

/// `GET /{v}/workflows/{component}/{instanceID}`: the instance as Dapr renders it.
pub async fn get(state: &HttpState, instance_id: &str) -> Result<Response, ApiError> {
    require_instance_id(instance_id)?;
    let request = GetInstanceRequest {
        instance_id: instance_id.to_string(),
        get_inputs_and_outputs: true,
        ..Default::default()
    };
    let response = state
        .workflows
        .get(&Call::default(), request)
        .await
        .map_err(|error| from_service(&error, Operation::Get { instance_id }))?;
    match response.orchestration_state {
        Some(instance) if response.exists => Ok(json_response(
            StatusCode::OK,
            &InstanceBody::from_state(&instance),
        )),
        _ => Err(ApiError::instance_not_found(instance_id)),
    }
}

/// `POST …/{instanceID}/{terminate|pause|resume|purge}`: `202 {}`. Terminate and purge are
/// recursive, as in Dapr; the request body is ignored.
pub async fn manage(
    state: &HttpState,
    instance_id: &str,
    action: Action,
) -> Result<Response, ApiError> {
    require_instance_id(instance_id)?;
    let operation = match action {
        Action::Terminate => Operation::Terminate { instance_id },
        Action::Pause => Operation::Pause { instance_id },
        Action::Resume => Operation::Resume { instance_id },
        Action::Purge => Operation::Purge { instance_id },
    };
    call_manage(&state.workflows, instance_id.to_string(), action)
        .await
        .map_err(|error| from_service(&error, operation))?;
    Ok(accepted())
}

/// The service operation behind each management route.
async fn call_manage(
    workflows: &Workflows,
    instance_id: String,
    action: Action,
) -> Result<(), service::Error> {
    let call = Call::default();
    match action {
        Action::Terminate => {
            let terminate = TerminateRequest {
                instance_id,
                recursive: true,
                ..Default::default()
            };
            workflows.terminate(&call, terminate).await?;
        }
        Action::Pause => {
            let suspend = SuspendRequest {
                instance_id,
                ..Default::default()
            };
            workflows.suspend(&call, suspend).await?;
        }
        Action::Resume => {
            let resume = ResumeRequest {
                instance_id,
                ..Default::default()
            };
            workflows.resume(&call, resume).await?;
        }
        Action::Purge => {
            let purge = PurgeInstancesRequest {
                request: Some(purge_instances_request::Request::InstanceId(instance_id)),
                recursive: true,
                ..Default::default()
            };
            workflows.purge(&call, purge).await?;
        }
    }
    Ok(())
}

/// `POST …/{instanceID}/raiseEvent/{eventName}`: the raw body is the event's input. An
/// empty body raises the event without input: Python's `raise_event` omits the input for
/// no data, and an empty string would not parse as JSON in the SDK.
pub async fn raise_event(
    state: &HttpState,
    instance_id: &str,
    event_name: &str,
    request: Request<Incoming>,
) -> Result<Response, ApiError> {
    require_instance_id(instance_id)?;
    if event_name.is_empty() {
        return Err(ApiError::event_name_missing());
    }
    let body = read_text(request.into_body(), state.max_body_bytes).await?;
    let raise = RaiseEventRequest {
        instance_id: instance_id.to_string(),
        name: event_name.to_string(),
        input: Some(body).filter(|input| !input.is_empty()),
        ..Default::default()
    };
    state
        .workflows
        .raise(&Call::default(), raise)
        .await
        .map_err(|error| {
            from_service(
                &error,
                Operation::RaiseEvent {
                    instance_id,
                    event_name,
                },
            )
        })?;
    Ok(accepted())
}

/// Dapr's success answer for the management routes: `202` with the protojson of `Empty`.
fn accepted() -> Response {
    json_response(StatusCode::ACCEPTED, &serde_json::json!({}))
}

fn require_instance_id(instance_id: &str) -> Result<(), ApiError> {
    if instance_id.is_empty() {
        return Err(ApiError::instance_id_missing());
    }
    Ok(())
}

/// Dapr's create-time check (dapr/dapr#6156): at most 64 bytes of letters, digits, `-` and
/// `_`, so IDs stay usable as keys in every state store. Only new top-level instances over
/// HTTP are checked; gRPC and child IDs (`parent:0001`) are not.
pub fn validate_new_instance_id(instance_id: &str) -> Result<(), ApiError> {
    if instance_id.is_empty() {
        return Err(ApiError::instance_id_missing());
    }
    if instance_id.len() > MAX_INSTANCE_ID_BYTES {
        return Err(ApiError::instance_id_too_long());
    }
    let allowed = |c: char| c.is_alphabetic() || c.is_numeric() || c == '-' || c == '_';
    if !instance_id.chars().all(allowed) {
        return Err(ApiError::instance_id_invalid(instance_id));
    }
    Ok(())
}

/// Reads a request body of at most `limit_bytes` as text. A declared length over the limit
/// is refused before reading; otherwise reading stops at the first frame past the limit, so
/// no more than the limit is ever held.
pub async fn read_text<B>(body: B, limit_bytes: usize) -> Result<String, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if body.size_hint().lower() > limit_bytes as u64 {
        return Err(ApiError::body_too_large(limit_bytes));
    }
    let collected = Limited::new(body, limit_bytes)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                ApiError::body_too_large(limit_bytes)
            } else {
                ApiError::body_read(error)
            }
        })?;
    String::from_utf8(collected.to_bytes().into()).map_err(|_| ApiError::malformed("body"))
}

/// Dapr's `GetWorkflowResponse` in protojson: empty fields omitted, `properties` only with
/// the values that exist.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceBody<'a> {
    #[serde(rename = "instanceID")]
    instance_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    workflow_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_updated_at: Option<String>,
    runtime_status: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    properties: BTreeMap<&'static str, String>,
}

impl<'a> InstanceBody<'a> {
    fn from_state(state: &'a OrchestrationState) -> InstanceBody<'a> {
        let mut properties = BTreeMap::new();
        let mut put = |key, value: Option<&String>| {
            if let Some(value) = value {
                properties.insert(key, value.clone());
            }
        };
        put("dapr.workflow.input", state.input.as_ref());
        put("dapr.workflow.custom_status", state.custom_status.as_ref());
        // As dapr master: a failed run reports its failure, not an output.
        put(
            "dapr.workflow.output",
            state
                .output
                .as_ref()
                .filter(|_| state.failure_details.is_none()),
        );
        if let Some(failure) = &state.failure_details {
            put(
                "dapr.workflow.failure.error_type",
                Some(&failure.error_type),
            );
            put(
                "dapr.workflow.failure.error_message",
                Some(&failure.error_message),
            );
            put(
                "dapr.workflow.failure.stack_trace",
                failure.stack_trace.as_ref(),
            );
        }
        InstanceBody {
            instance_id: &state.instance_id,
            workflow_name: &state.name,
            created_at: state.created_timestamp.as_ref().map(format_timestamp),
            last_updated_at: state.last_updated_timestamp.as_ref().map(format_timestamp),
            runtime_status: status_name(state.orchestration_status),
            properties,
        }
    }
}

/// Dapr's `runtimeStatus` names; STALLED and unknown values are `"UNKNOWN"` as in Dapr,
/// whose status map stops at SUSPENDED.
pub fn status_name(status: i32) -> &'static str {
    match OrchestrationStatus::try_from(status) {
        Ok(OrchestrationStatus::Running) => "RUNNING",
        Ok(OrchestrationStatus::Completed) => "COMPLETED",
        Ok(OrchestrationStatus::ContinuedAsNew) => "CONTINUED_AS_NEW",
        Ok(OrchestrationStatus::Failed) => "FAILED",
        Ok(OrchestrationStatus::Canceled) => "CANCELED",
        Ok(OrchestrationStatus::Terminated) => "TERMINATED",
        Ok(OrchestrationStatus::Pending) => "PENDING",
        Ok(OrchestrationStatus::Suspended) => "SUSPENDED",
        Ok(OrchestrationStatus::Stalled) | Err(_) => "UNKNOWN",
    }
}

/// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as protojson writes a Timestamp
/// (prost's `Display` follows the same rule).
pub fn format_timestamp(timestamp: &prost_types::Timestamp) -> String {
    timestamp.to_string()
}

#[cfg(test)]
#[path = "workflow_tests.rs"]
mod tests;
