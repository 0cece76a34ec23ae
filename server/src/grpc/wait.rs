//! Long polls: wait until an instance's record satisfies a condition, honouring the
//! client's deadline (`grpc-timeout`). A client that goes away drops the future.

use std::sync::Arc;
use std::time::Duration;

use endure_engine::records::InstanceRecord;
use endure_engine::{Effect, StateView};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tonic::{Request, Status};

use super::status::from_storage;
use super::Sidecar;

/// The deadline the client put on the call, if any, a little early: tonic's own timer
/// for the same deadline answers CANCELLED; ours answers DEADLINE_EXCEEDED first.
pub fn deadline<T>(request: &Request<T>) -> Option<Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_timeout(value).map(|timeout| Instant::now() + timeout.mul_f64(0.95))
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

/// Waits until `done(record)` holds. `Ok(None)` if the instance does not exist.
pub async fn until(
    sidecar: &Sidecar,
    instance_id: &str,
    deadline: Option<Instant>,
    done: impl Fn(&InstanceRecord) -> bool,
) -> Result<Option<InstanceRecord>, Status> {
    // Subscribe before the first read, so no change between the read and the wait is missed.
    let mut changes = sidecar.shared.subscribe();
    let mut shutdown = sidecar.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return Err(Status::unavailable("the node is shutting down; retry"));
        }
        let record = sidecar.store.instance(instance_id).map_err(from_storage)?;
        match &record {
            None => return Ok(None),
            Some(record) if done(record) => return Ok(Some(record.clone())),
            Some(_) => {}
        }
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => return Err(Status::deadline_exceeded("the instance did not reach the awaited state before the deadline")),
            _ = changed(&mut changes, instance_id) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn changed(
    changes: &mut tokio::sync::broadcast::Receiver<Arc<Vec<Effect>>>,
    instance_id: &str,
) {
    loop {
        match changes.recv().await {
            Ok(effects) => {
                let touched = effects.iter().any(|effect| {
                    matches!(effect, Effect::InstanceChanged { instance_id: id } if id == instance_id)
                });
                if touched {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
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
}
