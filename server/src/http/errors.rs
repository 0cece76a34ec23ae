//! The one place where HTTP errors are shaped: Dapr's error body
//! (`{"errorCode":"…","message":"…"}`), its error codes and message texts, and the mapping
//! from a [`service::Error`](crate::service::Error) to an HTTP status.
//!
//! The texts follow dapr/dapr `pkg/messages/predefined.go`, because clients and people
//! compare them with what a Dapr sidecar says.

use crate::service::Error;
use hyper::header::{HeaderValue, ALLOW, RETRY_AFTER};
use hyper::StatusCode;

use super::Response;

/// Dapr's limit on instance IDs created over HTTP, in bytes.
pub const MAX_INSTANCE_ID_BYTES: usize = 64;

/// An HTTP error answer: status, Dapr-style error code and message, and (for 405) the
/// methods the path does accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code.
    pub status: StatusCode,
    /// Machine-readable code, as Dapr names it (`ERR_INSTANCE_ID_NOT_FOUND`, …).
    pub code: &'static str,
    /// Human-readable text; Dapr's wording where Dapr has one.
    pub message: String,
    /// The `Allow` header of a 405 answer: RFC 9110 requires it there.
    pub allow: Option<&'static str>,
    /// The `Retry-After` header (seconds) of a 429 answer.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error without an `Allow` header.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    /// No route has this path.
    pub fn route_not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_NOT_FOUND",
            format!("no route for path '{path}'"),
        )
    }

    /// The path exists but not for this method; `allow` lists the methods it takes.
    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> ApiError {
        let message = format!("method {method} is not allowed on '{path}'; use {allow}");
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "ERR_METHOD_NOT_ALLOWED",
                message,
            )
        }
    }

    /// The path is not valid percent-encoded UTF-8, so it names nothing we could look up.
    pub fn malformed(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!("the request {what} is not valid UTF-8"),
        )
    }

    /// The body is larger than the node accepts (the same limit as gRPC messages).
    pub fn body_too_large(limit_bytes: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ERR_BODY_TOO_LARGE",
            format!("the request body is larger than the {limit_bytes} bytes this node accepts"),
        )
    }

    /// Reading the body failed (the client went away or sent a broken encoding).
    pub fn body_read(detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_BODY_READ",
            format!("failed to read request body: {detail}"),
        )
    }

    /// An instance-scoped route with an empty instance ID segment.
    pub fn instance_id_missing() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_INSTANCE_ID_PROVIDED_MISSING",
            "no instance ID was provided",
        )
    }

    /// A new instance ID over Dapr's length limit.
    pub fn instance_id_too_long() -> ApiError {
        let message = format!(
            "workflow instance ID exceeds the max length of {MAX_INSTANCE_ID_BYTES} characters"
        );
        ApiError::new(StatusCode::BAD_REQUEST, "ERR_INSTANCE_ID_TOO_LONG", message)
    }

    /// A new instance ID with characters other than letters, digits, `-` and `_`.
    pub fn instance_id_invalid(instance_id: &str) -> ApiError {
        let message = format!(
            "workflow instance ID '{instance_id}' is invalid: only alphanumeric and underscore characters are allowed"
        );
        ApiError::new(StatusCode::BAD_REQUEST, "ERR_INSTANCE_ID_INVALID", message)
    }

    /// `POST …/workflows/{component}//start`.
    pub fn workflow_name_missing() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_WORKFLOW_NAME_MISSING",
            "workflow name is not configured",
        )
    }

    /// `POST …/raiseEvent` or `…/raiseEvent/` without a name.
    pub fn event_name_missing() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_WORKFLOW_EVENT_NAME_MISSING",
            "missing workflow event name",
        )
    }

    /// The instance does not exist (GET, and every operation on an instance).
    pub fn instance_not_found(instance_id: &str) -> ApiError {
        let message =
            format!("unable to find workflow with the provided instance ID: {instance_id}");
        ApiError::new(StatusCode::NOT_FOUND, "ERR_INSTANCE_ID_NOT_FOUND", message)
    }

    /// The node cannot serve right now (no leader, shutting down); the client should retry.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ERR_UNAVAILABLE", message)
    }

    /// The error as an HTTP response with a JSON body.
    pub fn into_response(self) -> Response {
        let body = serde_json::json!({ "errorCode": self.code, "message": self.message });
        let mut response = super::json_response(self.status, &body);
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A workflow operation, for choosing the error code and message of a failed call.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    Start {
        name: &'a str,
    },
    Get {
        instance_id: &'a str,
    },
    Terminate {
        instance_id: &'a str,
    },
    RaiseEvent {
        instance_id: &'a str,
        event_name: &'a str,
    },
    Pause {
        instance_id: &'a str,
    },
    Resume {
        instance_id: &'a str,
    },
    Purge {
        instance_id: &'a str,
    },
}

impl Operation<'_> {
    /// Dapr's error code for a failure of this operation.
    fn code(&self) -> &'static str {
        match self {
            Operation::Start { .. } => "ERR_START_WORKFLOW",
            Operation::Get { .. } => "ERR_GET_WORKFLOW",
            Operation::Terminate { .. } => "ERR_TERMINATE_WORKFLOW",
            Operation::RaiseEvent { .. } => "ERR_RAISE_EVENT_WORKFLOW",
            Operation::Pause { .. } => "ERR_PAUSE_WORKFLOW",
            Operation::Resume { .. } => "ERR_RESUME_WORKFLOW",
            Operation::Purge { .. } => "ERR_PURGE_WORKFLOW",
        }
    }

    /// Dapr's message for a failure of this operation, wrapping the cause as Dapr does.
    fn failure_message(&self, cause: &str) -> String {
        match *self {
            Operation::Start { name } => format!("error starting workflow '{name}': unable to start workflow: {cause}"),
            Operation::Get { instance_id: id } => format!(
                "error while getting workflow info on instance '{id}': failed to get workflow metadata for '{id}': {cause}"
            ),
            Operation::Terminate { instance_id: id } => {
                format!("error terminating workflow '{id}': failed to terminate workflow {id}: {cause}")
            }
            Operation::RaiseEvent { instance_id: id, event_name } => format!(
                "error raising event on workflow '{id}': failed to raise event {event_name} on workflow {id}: {cause}"
            ),
            Operation::Pause { instance_id: id } => format!("error pausing workflow {id}: failed to pause workflow {id}: {cause}"),
            Operation::Resume { instance_id: id } => {
                format!("error resuming workflow {id}: failed to resume workflow {id}: {cause}")
            }
            Operation::Purge { instance_id: id } => format!("error purging workflow {id}: failed to purge workflow {id}: {cause}"),
        }
    }

    /// The instance the operation addresses; a start addresses none yet.
    fn instance_id(&self) -> Option<&str> {
        match *self {
            Operation::Start { .. } => None,
            Operation::Get { instance_id }
            | Operation::Terminate { instance_id }
            | Operation::RaiseEvent { instance_id, .. }
            | Operation::Pause { instance_id }
            | Operation::Resume { instance_id }
            | Operation::Purge { instance_id } => Some(instance_id),
        }
    }
}

/// Maps the service's error for `operation` to the HTTP error Dapr would give.
///
/// - not found → 404 `ERR_INSTANCE_ID_NOT_FOUND` (the engine's "no such instance exists").
/// - unavailable → 503: not the leader, or shutting down; retrying is right.
/// - too large → 413: the request, encoded, is over the message limit.
/// - anything else → 500 with the operation's code, as Dapr answers every other failure;
///   this includes the engine's INVALID_ARGUMENT for purging an instance that still runs,
///   which Dapr reports as 500 `ERR_PURGE_WORKFLOW`.
pub fn from_service(error: &Error, operation: Operation<'_>) -> ApiError {
    let cause = error.message();
    match (error, operation.instance_id()) {
        (Error::NotFound(_), Some(instance_id)) => ApiError::instance_not_found(instance_id),
        (Error::Unavailable(_), _) => ApiError::unavailable(cause),
        (Error::TooLarge(_), _) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "ERR_BODY_TOO_LARGE", cause)
        }
        (Error::Overloaded(_), _) => ApiError {
            retry_after: Some(crate::service::limits::RETRY_AFTER_SECS),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ERR_TOO_MANY_REQUESTS",
                cause,
            )
        },
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            operation.code(),
            operation.failure_message(cause),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::CONTENT_TYPE;

    #[test]
    fn not_found_becomes_dapr_404_for_instance_operations() {
        let error = from_service(
            &Error::not_found("no such instance exists: 'x'"),
            Operation::Pause { instance_id: "x" },
        );
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert_eq!(error.code, "ERR_INSTANCE_ID_NOT_FOUND");
        assert_eq!(
            error.message,
            "unable to find workflow with the provided instance ID: x"
        );
    }

    #[test]
    fn other_failures_use_the_operation_code_and_dapr_wording() {
        let purge = from_service(
            &Error::unknown("orchestration has not yet completed"),
            Operation::Purge { instance_id: "a" },
        );
        assert_eq!(purge.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(purge.code, "ERR_PURGE_WORKFLOW");
        assert_eq!(purge.message, "error purging workflow a: failed to purge workflow a: orchestration has not yet completed");

        let start = from_service(
            &Error::already_exists("exists"),
            Operation::Start { name: "wf" },
        );
        assert_eq!(
            (start.status, start.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "ERR_START_WORKFLOW")
        );
        assert!(
            start.message.starts_with("error starting workflow 'wf': "),
            "{}",
            start.message
        );
        assert!(start.message.ends_with("exists"));

        let pause = from_service(
            &Error::internal("disk"),
            Operation::Pause { instance_id: "p" },
        );
        assert_eq!(
            pause.message,
            "error pausing workflow p: failed to pause workflow p: disk"
        );
        let raise = from_service(
            &Error::unknown("workflow is stalled"),
            Operation::RaiseEvent {
                instance_id: "r",
                event_name: "e",
            },
        );
        assert_eq!(raise.code, "ERR_RAISE_EVENT_WORKFLOW");
        assert!(
            raise
                .message
                .starts_with("error raising event on workflow 'r': "),
            "{}",
            raise.message
        );
    }

    #[test]
    fn unavailable_and_too_large_keep_their_meaning() {
        let unavailable = from_service(
            &Error::unavailable("not the leader"),
            Operation::Terminate { instance_id: "t" },
        );
        assert_eq!(
            (unavailable.status, unavailable.code),
            (StatusCode::SERVICE_UNAVAILABLE, "ERR_UNAVAILABLE")
        );
        assert_eq!(unavailable.message, "not the leader");
        let large = from_service(&Error::too_large("big"), Operation::Start { name: "wf" });
        assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE);
        let running = from_service(
            &Error::invalid_argument("must be terminal to be purged"),
            Operation::Purge { instance_id: "g" },
        );
        assert_eq!(
            (running.status, running.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "ERR_PURGE_WORKFLOW")
        );
        // A start has no instance to be missing: NOT_FOUND is then just a failed start.
        let odd = from_service(&Error::not_found("?"), Operation::Start { name: "wf" });
        assert_eq!(odd.code, "ERR_START_WORKFLOW");
    }

    #[test]
    fn error_responses_carry_the_json_body_and_allow_header() {
        let response = ApiError::method_not_allowed("DELETE", "/healthz", "GET").into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let not_found = ApiError::route_not_found("/nope").into_response();
        assert!(not_found.headers().get(ALLOW).is_none());
    }

    #[test]
    fn a_limit_reached_is_429_with_retry_after() {
        let error = Error::overloaded("this node already has 2 calls waiting");
        let api = from_service(&error, Operation::Start { name: "wf" });
        assert_eq!(api.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(api.code, "ERR_TOO_MANY_REQUESTS");
        let response = api.into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }
}
