//! gRPC plumbing shared by the clients, the workers, the nemeses and the final reads: one
//! way to open a channel, one deadline on every call, and one mapping from a gRPC result to
//! the history's `ok` / `fail` / `info`. Keeping it in one place keeps the mapping honest:
//! anything that is not a definite refusal is `info` (maybe happened).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::history::OpType;

/// Deadline of every unary call the harness makes.
pub const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait for a TCP connection before the call is `info`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 keepalive ping interval: a blackholed link is noticed within about twice this.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// How long an unanswered keepalive ping may wait before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A lazily connecting channel to `addr` (reconnects by itself after failures).
pub fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_lazy()
}

/// A request carrying `deadline` as its gRPC timeout.
pub fn request<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

/// Runs one call with a local deadline too (the server's may never answer when paused).
pub async fn call<T, F>(deadline: Duration, future: F) -> Result<T, Status>
where
    F: Future<Output = Result<tonic::Response<T>, Status>>,
{
    match tokio::time::timeout(deadline + Duration::from_millis(250), future).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("harness deadline elapsed")),
    }
}

/// How a gRPC error lands in the history: a definite refusal is `fail`, the rest `info`.
pub fn classify(status: &Status) -> OpType {
    match status.code() {
        Code::Ok => OpType::Ok,
        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::FailedPrecondition => {
            OpType::Fail
        }
        _ => OpType::Info,
    }
}

/// The error text stored in the history: code and message.
pub fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_refusals_fail_the_rest_is_info() {
        assert_eq!(classify(&Status::not_found("x")), OpType::Fail);
        assert_eq!(classify(&Status::already_exists("x")), OpType::Fail);
        assert_eq!(classify(&Status::unavailable("x")), OpType::Info);
        assert_eq!(classify(&Status::deadline_exceeded("x")), OpType::Info);
        assert_eq!(classify(&Status::unknown("x")), OpType::Info);
    }
}
