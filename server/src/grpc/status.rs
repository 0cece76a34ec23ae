//! The one place where service errors become gRPC statuses, and where a gRPC request
//! becomes a [`Call`] (its deadline and forwarding mark).

use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Status};

use crate::service::forward::{FORWARDED_HEADER, SHARD_HEADER};
use crate::service::limits::{RETRY_AFTER_HEADER, RETRY_AFTER_SECS};
use crate::service::{Call, Error};

/// The status the SDKs expect for each error (they match some of the texts).
pub fn to_status(error: Error) -> Status {
    match error {
        Error::NotFound(m) => Status::not_found(m),
        Error::AlreadyExists(m) => Status::already_exists(m),
        Error::InvalidArgument(m) => Status::invalid_argument(m),
        // Not FAILED_PRECONDITION: Python 1.18+ retries that code as if it were transient.
        Error::FailedPrecondition(m) | Error::Unknown(m) => Status::unknown(m),
        Error::TooLarge(m) => Status::resource_exhausted(m),
        Error::Overloaded(m) => {
            let mut status = Status::resource_exhausted(m);
            // The mark tells a forwarding node (and a client that reads it) this is a
            // limit, not a size: retry after the hint.
            status
                .metadata_mut()
                .insert(RETRY_AFTER_HEADER, RETRY_AFTER_SECS.into());
            status
        }
        Error::Unavailable(m) => Status::unavailable(m),
        Error::DeadlineExceeded(m) => Status::deadline_exceeded(m),
        Error::Unimplemented(m) => Status::unimplemented(m),
        Error::Internal(m) => Status::internal(m),
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        to_status(error)
    }
}

/// The call as the service sees it: the client's deadline, a little early (tonic's own
/// timer for the same deadline answers CANCELLED; the service answers DEADLINE_EXCEEDED
/// first), and whether another node forwarded it.
pub fn call<T>(request: &Request<T>) -> Call {
    let metadata = request.metadata();
    let deadline = metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_timeout)
        .map(|timeout| Instant::now() + timeout.mul_f64(0.95));
    Call {
        deadline,
        forwarded: metadata.contains_key(FORWARDED_HEADER),
        shard: metadata
            .get(SHARD_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok()),
    }
}

/// Parses the gRPC timeout format: an integer of at most 8 digits and a unit letter.
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("x"), None);
        assert_eq!(parse_timeout(""), None);
    }

    #[test]
    fn a_forwarded_request_is_marked_and_keeps_a_deadline() {
        let mut request = Request::new(());
        request.set_timeout(Duration::from_secs(10));
        request.metadata_mut().insert(
            FORWARDED_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let call = call(&request);
        assert!(call.forwarded);
        let left = call
            .deadline
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(9) && left <= Duration::from_millis(9_500));
        assert!(!super::call(&Request::new(())).forwarded);
    }

    #[test]
    fn the_engines_failed_precondition_reaches_the_sdks_as_unknown() {
        let status = to_status(Error::failed_precondition("workflow is stalled"));
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert_eq!(status.message(), "workflow is stalled");
        assert_eq!(
            to_status(Error::too_large("big")).code(),
            tonic::Code::ResourceExhausted
        );
    }
}
