//! The service's one error type: what went wrong, in terms a caller acts on. The gRPC
//! adapter (`grpc::status`) and the HTTP adapter (`http::errors`) each map it once.

use endure_raft::types::{Rejection, RejectionCode, Response};

use crate::cluster::proposer;

/// Why an operation failed. Each variant carries the message a person reads (some are
/// texts the SDKs match, kept as the engine wrote them).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No such instance (or the answer matches nothing in flight).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The instance's state does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request is over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A per-node limit is reached (`service::limits`): nothing was done; retry later.
    #[error("{0}")]
    Overloaded(String),
    /// Not served now (no leader, leadership moving, shutting down): retrying is right,
    /// and whether a write took effect is unknown.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's deadline passed before the awaited state.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    /// The leader a call was forwarded to answered with an unclassified failure.
    #[error("{0}")]
    Unknown(String),
    /// This node failed (a storage read); never the caller's fault.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::NotFound(message.into())
    }

    pub fn already_exists(message: impl Into<String>) -> Error {
        Error::AlreadyExists(message.into())
    }

    pub fn invalid_argument(message: impl Into<String>) -> Error {
        Error::InvalidArgument(message.into())
    }

    pub fn failed_precondition(message: impl Into<String>) -> Error {
        Error::FailedPrecondition(message.into())
    }

    pub fn too_large(message: impl Into<String>) -> Error {
        Error::TooLarge(message.into())
    }

    pub fn overloaded(message: impl Into<String>) -> Error {
        Error::Overloaded(message.into())
    }

    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::Unavailable(message.into())
    }

    pub fn deadline_exceeded(message: impl Into<String>) -> Error {
        Error::DeadlineExceeded(message.into())
    }

    pub fn unimplemented(message: impl Into<String>) -> Error {
        Error::Unimplemented(message.into())
    }

    pub fn unknown(message: impl Into<String>) -> Error {
        Error::Unknown(message.into())
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// A storage read failed.
    pub fn storage(error: impl std::fmt::Display) -> Error {
        Error::internal(format!("storage read failed: {error}"))
    }

    /// The message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::InvalidArgument(m)
            | Error::FailedPrecondition(m)
            | Error::TooLarge(m)
            | Error::Overloaded(m)
            | Error::Unavailable(m)
            | Error::DeadlineExceeded(m)
            | Error::Unimplemented(m)
            | Error::Unknown(m)
            | Error::Internal(m) => m,
        }
    }
}

/// A proposal without an answer: the client should retry.
impl From<proposer::Error> for Error {
    fn from(error: proposer::Error) -> Error {
        Error::unavailable(format!("{error}; retry the request"))
    }
}

/// A command the engine refused.
impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Error {
        match rejection.code {
            RejectionCode::NotFound | RejectionCode::Stale => Error::NotFound(rejection.message),
            RejectionCode::AlreadyExists => Error::AlreadyExists(rejection.message),
            RejectionCode::InvalidArgument => Error::InvalidArgument(rejection.message),
            RejectionCode::FailedPrecondition => Error::FailedPrecondition(rejection.message),
            RejectionCode::ResourceExhausted => Error::Overloaded(rejection.message),
        }
    }
}

/// Applied → `Ok(response)`; refused → the error.
pub fn check(result: Result<Response, proposer::Error>) -> Result<Response, Error> {
    let response = result?;
    match response.rejection {
        Some(rejection) => Err(rejection.into()),
        None => Ok(response),
    }
}
