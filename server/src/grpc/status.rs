//! The one place where Endure's errors become gRPC statuses.

use endure_raft::types::{Rejection, RejectionCode, Response};
use tonic::Status;

use crate::proposer;

/// A refused command as the SDKs expect it (they match some of these texts).
pub fn from_rejection(rejection: Rejection) -> Status {
    match rejection.code {
        RejectionCode::NotFound | RejectionCode::Stale => Status::not_found(rejection.message),
        RejectionCode::AlreadyExists => Status::already_exists(rejection.message),
        RejectionCode::InvalidArgument => Status::invalid_argument(rejection.message),
        // Not FAILED_PRECONDITION: Python 1.18+ retries that code as if it were transient.
        RejectionCode::FailedPrecondition => Status::unknown(rejection.message),
    }
}

/// A proposal without an answer: the client should retry, so UNAVAILABLE.
pub fn from_proposer(error: proposer::Error) -> Status {
    Status::unavailable(format!("{error}; retry the request"))
}

/// Applied → `Ok(response)`; refused → the status.
pub fn check(result: Result<Response, proposer::Error>) -> Result<Response, Status> {
    let response = result.map_err(from_proposer)?;
    match response.rejection {
        Some(rejection) => Err(from_rejection(rejection)),
        None => Ok(response),
    }
}

/// A storage read failed: the node cannot serve; this is never the client's fault.
pub fn from_storage(error: impl std::fmt::Display) -> Status {
    Status::internal(format!("storage read failed: {error}"))
}
