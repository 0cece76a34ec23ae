//! One history event reduced to what the CLI shows: its type, the name it is about, a
//! short payload and its fields.
//!
//! Both the table and the JSON of `workflow history` are built from a [`Described`], so the
//! two always agree. Field names are the proto JSON names, so they match what the SDKs and
//! the Dapr docs call them.

use endure_proto::history_event::EventType;
use endure_proto::prost_types::Timestamp;
use endure_proto::{
    timer_created_event, HistoryEvent, ParentInstanceInfo, StalledReason, TaskFailureDetails,
};
use serde_json::{json, Map, Value};

use super::output::{json_time, status_name};
use super::time::{rfc3339, Precision};

/// One event reduced to what the CLI shows.
#[derive(Debug, Default)]
pub struct Described {
    /// The event type as the proto names it, without `Event` (`TaskScheduled`).
    pub kind: &'static str,
    /// The activity, child workflow, timer or external event the event is about.
    pub name: Option<String>,
    /// The event ID of the event this one answers (a task's or timer's), to find its name.
    pub answers: Option<i32>,
    /// The main payload as text: input, result, failure or fire time.
    pub payload: Option<String>,
    /// Every field worth showing, by its proto JSON name, for `--output json`.
    pub fields: Map<String, Value>,
}

impl Described {
    fn new(kind: &'static str) -> Described {
        Described {
            kind,
            ..Described::default()
        }
    }

    fn name(mut self, name: &str) -> Described {
        if !name.is_empty() {
            self.name = Some(name.to_string());
            self.fields.insert("name".into(), json!(name));
        }
        self
    }

    fn text(mut self, key: &str, value: Option<&String>) -> Described {
        if let Some(value) = value {
            self.fields.insert(key.into(), json!(value));
        }
        self
    }

    /// A field that is also the row's payload (the first one given wins).
    fn payload(mut self, key: &str, value: Option<&String>) -> Described {
        if self.payload.is_none() {
            self.payload = value.cloned();
        }
        self.text(key, value)
    }

    fn answers(mut self, key: &str, event_id: i32) -> Described {
        self.answers = Some(event_id);
        self.fields.insert(key.into(), json!(event_id));
        self
    }

    fn time(mut self, key: &str, timestamp: Option<&Timestamp>) -> Described {
        if let Some(timestamp) = timestamp {
            self.payload
                .get_or_insert_with(|| format!("{key} {}", rfc3339(timestamp, Precision::Millis)));
            self.fields.insert(key.into(), json_time(Some(timestamp)));
        }
        self
    }

    fn failure(mut self, failure: Option<&TaskFailureDetails>) -> Described {
        if let Some(failure) = failure {
            self.payload.get_or_insert_with(|| {
                format!("{}: {}", failure.error_type, failure.error_message)
            });
            self.fields
                .insert("failureDetails".into(), failure_json(failure));
        }
        self
    }
}

/// The failure as JSON, inner failures included.
fn failure_json(failure: &TaskFailureDetails) -> Value {
    json!({
        "errorType": failure.error_type,
        "errorMessage": failure.error_message,
        "stackTrace": failure.stack_trace,
        "isNonRetriable": failure.is_non_retriable,
        "innerFailure": failure.inner_failure.as_deref().map(failure_json),
    })
}

/// Reduces an event to what the CLI shows; unknown (empty) events become `Unknown`.
pub fn describe(event: &HistoryEvent) -> Described {
    let Some(kind) = &event.event_type else {
        return Described::new("Unknown");
    };
    describe_run(kind)
        .or_else(|| describe_task(kind))
        .or_else(|| describe_message(kind))
        .unwrap_or_else(|| describe_entity(kind))
}

/// Events about the run itself: its start and end, turns, suspension.
fn describe_run(event: &EventType) -> Option<Described> {
    use EventType::*;
    Some(match event {
        ExecutionStarted(e) => Described::new("ExecutionStarted")
            .name(&e.name)
            .payload("input", e.input.as_ref())
            .text("version", e.version.as_ref())
            .text(
                "parentInstanceId",
                parent_instance_id(e.parent_instance.as_ref()),
            )
            .time(
                "scheduledStartTimestamp",
                e.scheduled_start_timestamp.as_ref(),
            ),
        ExecutionCompleted(e) => Described::new("ExecutionCompleted")
            .text(
                "orchestrationStatus",
                Some(&status_name(e.orchestration_status)),
            )
            .payload("result", e.result.as_ref())
            .failure(e.failure_details.as_ref()),
        ExecutionTerminated(e) => {
            Described::new("ExecutionTerminated").payload("input", e.input.as_ref())
        }
        OrchestratorStarted(e) => Described::new("OrchestratorStarted")
            .text("version", e.version.as_ref().and_then(|v| v.name.as_ref())),
        OrchestratorCompleted(_) => Described::new("OrchestratorCompleted"),
        ContinueAsNew(e) => Described::new("ContinueAsNew").payload("input", e.input.as_ref()),
        ExecutionSuspended(e) => {
            Described::new("ExecutionSuspended").payload("input", e.input.as_ref())
        }
        ExecutionResumed(e) => {
            Described::new("ExecutionResumed").payload("input", e.input.as_ref())
        }
        ExecutionStalled(e) => Described::new("ExecutionStalled")
            .text("reason", Some(&stalled_reason(e.reason)))
            .payload("description", e.description.as_ref()),
        _ => return None,
    })
}

/// Activities and child workflows: scheduled, then completed or failed.
fn describe_task(event: &EventType) -> Option<Described> {
    use EventType::*;
    Some(match event {
        TaskScheduled(e) => Described::new("TaskScheduled")
            .name(&e.name)
            .payload("input", e.input.as_ref()),
        TaskCompleted(e) => Described::new("TaskCompleted")
            .answers("taskScheduledId", e.task_scheduled_id)
            .payload("result", e.result.as_ref()),
        TaskFailed(e) => Described::new("TaskFailed")
            .answers("taskScheduledId", e.task_scheduled_id)
            .failure(e.failure_details.as_ref()),
        SubOrchestrationInstanceCreated(e) => Described::new("SubOrchestrationInstanceCreated")
            .name(&e.name)
            .text("instanceId", Some(&e.instance_id))
            .payload("input", e.input.as_ref()),
        SubOrchestrationInstanceCompleted(e) => Described::new("SubOrchestrationInstanceCompleted")
            .answers("taskScheduledId", e.task_scheduled_id)
            .payload("result", e.result.as_ref()),
        SubOrchestrationInstanceFailed(e) => Described::new("SubOrchestrationInstanceFailed")
            .answers("taskScheduledId", e.task_scheduled_id)
            .failure(e.failure_details.as_ref()),
        DetachedWorkflowInstanceCreated(e) => Described::new("DetachedWorkflowInstanceCreated")
            .text("instanceId", Some(&e.instance_id)),
        _ => return None,
    })
}

/// Timers and events sent or received.
fn describe_message(event: &EventType) -> Option<Described> {
    use EventType::*;
    Some(match event {
        TimerCreated(e) => Described::new("TimerCreated")
            .name(
                e.name
                    .as_deref()
                    .unwrap_or_else(|| timer_origin(e.origin.as_ref())),
            )
            .time("fireAt", e.fire_at.as_ref()),
        TimerFired(e) => Described::new("TimerFired")
            .answers("timerId", e.timer_id)
            .time("fireAt", e.fire_at.as_ref()),
        EventSent(e) => Described::new("EventSent")
            .name(&e.name)
            .text("instanceId", Some(&e.instance_id))
            .payload("input", e.input.as_ref()),
        EventRaised(e) => Described::new("EventRaised")
            .name(&e.name)
            .payload("input", e.input.as_ref()),
        GenericEvent(e) => Described::new("GenericEvent").payload("data", e.data.as_ref()),
        HistoryState(_) => Described::new("HistoryState"),
        _ => return None,
    })
}

fn parent_instance_id(parent: Option<&ParentInstanceInfo>) -> Option<&String> {
    parent
        .and_then(|p| p.orchestration_instance.as_ref())
        .map(|i| &i.instance_id)
}

/// Entity events (0.17 only): never produced by Endure, shown by type and operation.
fn describe_entity(event: &EventType) -> Described {
    use EventType::*;
    match event {
        EntityOperationSignaled(e) => Described::new("EntityOperationSignaled")
            .name(&e.operation)
            .payload("input", e.input.as_ref()),
        EntityOperationCalled(e) => Described::new("EntityOperationCalled")
            .name(&e.operation)
            .payload("input", e.input.as_ref()),
        EntityOperationCompleted(e) => {
            Described::new("EntityOperationCompleted").payload("output", e.output.as_ref())
        }
        EntityOperationFailed(e) => {
            Described::new("EntityOperationFailed").failure(e.failure_details.as_ref())
        }
        EntityLockRequested(_) => Described::new("EntityLockRequested"),
        EntityLockGranted(_) => Described::new("EntityLockGranted"),
        EntityUnlockSent(_) => Described::new("EntityUnlockSent"),
        _ => Described::new("Unknown"),
    }
}

/// A name for an unnamed timer, from why it exists (1.18+ SDKs say so).
fn timer_origin(origin: Option<&timer_created_event::Origin>) -> &str {
    match origin {
        Some(timer_created_event::Origin::ExternalEvent(event)) => &event.name,
        Some(timer_created_event::Origin::ActivityRetry(_)) => "activity retry",
        Some(timer_created_event::Origin::ChildWorkflowRetry(_)) => "child workflow retry",
        Some(timer_created_event::Origin::CreateTimer(_)) | None => "",
    }
}

fn stalled_reason(reason: i32) -> String {
    StalledReason::try_from(reason)
        .map(|r| r.as_str_name().to_string())
        .unwrap_or_else(|_| format!("UNKNOWN({reason})"))
}

/// Events for the tests of this module and of `history`.
#[cfg(test)]
pub mod fixtures {
    use endure_proto::history_event::EventType;
    use endure_proto::prost_types::Timestamp;
    use endure_proto::{HistoryEvent, TaskScheduledEvent};

    /// An event of `kind` at `seconds` after the epoch.
    pub fn event(event_id: i32, seconds: i64, kind: EventType) -> HistoryEvent {
        HistoryEvent {
            event_id,
            timestamp: Some(Timestamp { seconds, nanos: 0 }),
            event_type: Some(kind),
            router: None,
        }
    }

    /// A TaskScheduled for activity `name` with input `"in"`.
    pub fn scheduled(event_id: i32, name: &str) -> HistoryEvent {
        let task = TaskScheduledEvent {
            name: name.into(),
            input: Some("\"in\"".into()),
            ..Default::default()
        };
        event(event_id, 1_700_000_000, EventType::TaskScheduled(task))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{event, scheduled};
    use super::*;
    use endure_proto::*;

    #[test]
    fn a_scheduled_task_shows_its_name_and_input() {
        let d = describe(&scheduled(0, "Shout"));
        assert_eq!(
            (d.kind, d.name.as_deref(), d.payload.as_deref()),
            ("TaskScheduled", Some("Shout"), Some("\"in\""))
        );
    }

    #[test]
    fn failures_read_as_type_and_message() {
        let failure = TaskFailureDetails {
            error_type: "ValueError".into(),
            error_message: "bad".into(),
            ..Default::default()
        };
        let failed = TaskFailedEvent {
            task_scheduled_id: 3,
            failure_details: Some(failure),
            ..Default::default()
        };
        let d = describe(&event(4, 0, EventType::TaskFailed(failed)));
        assert_eq!(d.payload.as_deref(), Some("ValueError: bad"));
        assert_eq!(d.fields["failureDetails"]["errorMessage"], "bad");
        assert_eq!(d.answers, Some(3));
    }

    #[test]
    fn an_external_event_timer_is_named_after_the_event() {
        let origin = timer_created_event::Origin::ExternalEvent(TimerOriginExternalEvent {
            name: "Approve".into(),
        });
        let created = TimerCreatedEvent {
            origin: Some(origin),
            ..Default::default()
        };
        assert_eq!(
            describe(&event(1, 0, EventType::TimerCreated(created)))
                .name
                .as_deref(),
            Some("Approve")
        );
    }
}
