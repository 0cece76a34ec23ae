//! Turns protocol `HistoryEvent`s into the checkers' [`Event`]s, the same way for a
//! `GetInstanceHistory` read and for a node's local replica, so that both compare. The
//! digest is FNV-1a 64 over the event's encoded bytes: equal digests mean equal events.

use endure_proto::history_event::EventType;
use endure_proto::{HistoryEvent, OrchestrationStatus};
use prost::Message;

use crate::history::Event;

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`, as 16 hex digits.
pub fn digest(bytes: &[u8]) -> String {
    let mut hash = FNV_OFFSET;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    format!("{hash:016x}")
}

/// Nanoseconds since the epoch of a protobuf timestamp (0 when absent).
pub fn timestamp_ns(ts: Option<&prost_types::Timestamp>) -> i128 {
    ts.map(|t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128)
        .unwrap_or(0)
}

/// A protobuf timestamp for `ns` since the epoch.
pub fn timestamp(ns: i128) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000) as i64,
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

/// The status name the history uses (`RUNNING`, `COMPLETED`, ...).
pub fn status_name(status: i32) -> String {
    match OrchestrationStatus::try_from(status) {
        Ok(s) => s
            .as_str_name()
            .trim_start_matches("ORCHESTRATION_STATUS_")
            .to_owned(),
        Err(_) => format!("UNKNOWN_{status}"),
    }
}

/// Decodes stored bytes; `None` if they are not a `HistoryEvent`.
pub fn event_from_bytes(bytes: &[u8]) -> Option<Event> {
    let event = HistoryEvent::decode(bytes).ok()?;
    Some(event_with_digest(&event, digest(bytes)))
}

/// Converts an event received over the API (digest over its re-encoding).
pub fn event(event: &HistoryEvent) -> Event {
    event_with_digest(event, digest(&event.encode_to_vec()))
}

fn event_with_digest(event: &HistoryEvent, digest: String) -> Event {
    let mut out = Event {
        event_id: event.event_id,
        kind: "Other".into(),
        timestamp_ns: timestamp_ns(event.timestamp.as_ref()),
        scheduled_id: None,
        name: None,
        fire_at_ns: None,
        data: None,
        digest,
    };
    let Some(kind) = &event.event_type else {
        return out;
    };
    let (name, scheduled_id, name_field, fire_at, data): (
        &str,
        Option<i32>,
        Option<String>,
        Option<i128>,
        Option<String>,
    ) = match kind {
        EventType::ExecutionStarted(e) => (
            "ExecutionStarted",
            None,
            Some(e.name.clone()),
            None,
            e.input.clone(),
        ),
        EventType::ExecutionCompleted(e) => {
            ("ExecutionCompleted", None, None, None, e.result.clone())
        }
        EventType::ExecutionTerminated(e) => {
            ("ExecutionTerminated", None, None, None, e.input.clone())
        }
        EventType::TaskScheduled(e) => (
            "TaskScheduled",
            None,
            Some(e.name.clone()),
            None,
            e.input.clone(),
        ),
        EventType::TaskCompleted(e) => (
            "TaskCompleted",
            Some(e.task_scheduled_id),
            None,
            None,
            e.result.clone(),
        ),
        EventType::TaskFailed(e) => (
            "TaskFailed",
            Some(e.task_scheduled_id),
            None,
            None,
            e.failure_details.as_ref().map(|f| f.error_message.clone()),
        ),
        EventType::SubOrchestrationInstanceCreated(e) => (
            "SubOrchestrationInstanceCreated",
            None,
            Some(e.name.clone()),
            None,
            e.input.clone(),
        ),
        EventType::SubOrchestrationInstanceCompleted(e) => (
            "SubOrchestrationInstanceCompleted",
            Some(e.task_scheduled_id),
            None,
            None,
            e.result.clone(),
        ),
        EventType::SubOrchestrationInstanceFailed(e) => (
            "SubOrchestrationInstanceFailed",
            Some(e.task_scheduled_id),
            None,
            None,
            e.failure_details.as_ref().map(|f| f.error_message.clone()),
        ),
        EventType::TimerCreated(e) => (
            "TimerCreated",
            None,
            e.name.clone(),
            Some(timestamp_ns(e.fire_at.as_ref())),
            None,
        ),
        EventType::TimerFired(e) => (
            "TimerFired",
            Some(e.timer_id),
            None,
            Some(timestamp_ns(e.fire_at.as_ref())),
            None,
        ),
        EventType::OrchestratorStarted(_) => ("OrchestratorStarted", None, None, None, None),
        EventType::OrchestratorCompleted(_) => ("OrchestratorCompleted", None, None, None, None),
        EventType::EventSent(e) => (
            "EventSent",
            None,
            Some(e.name.clone()),
            None,
            e.input.clone(),
        ),
        EventType::EventRaised(e) => (
            "EventRaised",
            None,
            Some(e.name.clone()),
            None,
            e.input.clone(),
        ),
        EventType::ContinueAsNew(e) => ("ContinueAsNew", None, None, None, e.input.clone()),
        EventType::ExecutionSuspended(e) => {
            ("ExecutionSuspended", None, None, None, e.input.clone())
        }
        EventType::ExecutionResumed(e) => ("ExecutionResumed", None, None, None, e.input.clone()),
        EventType::ExecutionStalled(e) => {
            ("ExecutionStalled", None, None, None, e.description.clone())
        }
        _ => ("Other", None, None, None, None),
    };
    out.kind = name.into();
    out.scheduled_id = scheduled_id;
    out.name = name_field;
    out.fire_at_ns = fire_at;
    out.data = data;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(digest(b""), "cbf29ce484222325");
        assert_eq!(digest(b"a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn timer_fired_fields() {
        let he = HistoryEvent {
            event_id: -1,
            timestamp: Some(timestamp(5_000_000_001)),
            router: None,
            event_type: Some(EventType::TimerFired(endure_proto::TimerFiredEvent {
                fire_at: Some(timestamp(4_000_000_000)),
                timer_id: 3,
            })),
        };
        let e = event_from_bytes(&he.encode_to_vec()).unwrap();
        assert_eq!(e.kind, "TimerFired");
        assert_eq!(e.scheduled_id, Some(3));
        assert_eq!(e.fire_at_ns, Some(4_000_000_000));
        assert_eq!(e.timestamp_ns, 5_000_000_001);
        assert_eq!(e.digest, event(&he).digest);
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(0), "RUNNING");
        assert_eq!(status_name(5), "TERMINATED");
    }
}
