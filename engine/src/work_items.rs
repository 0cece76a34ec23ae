//! Building the work items a worker is sent, from the tables: the next turn of an instance
//! and the request of a pending activity, plus the command that records a worker's answer
//! to a turn. Pure: the dispatcher reads the rows and the clock and calls these.

use endure_proto::history_event::EventType;
use endure_proto::{
    ActivityRequest, HistoryEvent, OrchestrationInstance, OrchestrationStatus, OrchestratorRequest,
    OrchestratorResponse, OrchestratorStartedEvent,
};
use prost_types::Timestamp;

use crate::lifecycle::{event, is_terminal};
use crate::records::{ActivityRecord, CompleteTurn, InstanceRecord};
use crate::time;

/// Upper bound on the inbox events one turn delivers; the rest wait for the next turn.
pub const MAX_NEW_EVENTS_PER_TURN: usize = 10_000;

/// A turn ready to send, with the fence its completion must match.
#[derive(Clone, Debug)]
pub struct Turn {
    /// What the worker is sent: the history and the new events.
    pub request: OrchestratorRequest,
    /// The run the turn belongs to (the fence's first check).
    pub execution_id: String,
    /// History length the turn was built on.
    pub history_len: u64,
    /// Inbox events below this sequence number are in `newEvents`.
    pub inbox_upto_seq: u64,
    /// Timestamp of the turn's OrchestratorStarted.
    pub turn_time: Timestamp,
}

/// Whether the instance has a turn to run: active, not suspended, past its scheduled
/// start, with events waiting.
pub fn is_ready(record: &InstanceRecord) -> bool {
    !is_terminal(record.status)
        && record.status() != OrchestrationStatus::Suspended
        && record.scheduled_start.is_none()
        && !record.payload_stalled
        && record.inbox_len > 0
}

/// The next turn: `pastEvents` = committed history; `newEvents` = a fresh
/// OrchestratorStarted (strictly later than the last one) followed by the inbox.
pub fn build_turn(
    record: &InstanceRecord,
    history: Vec<HistoryEvent>,
    inbox: Vec<(u64, HistoryEvent)>,
    now: Timestamp,
) -> Option<Turn> {
    if !is_ready(record) || inbox.is_empty() {
        return None;
    }
    let turn_time = time::next_after(now, record.last_turn_at.as_ref());
    let started = OrchestratorStartedEvent { version: None };
    let mut new_events = vec![event(turn_time, EventType::OrchestratorStarted(started))];
    let mut inbox_upto_seq = 0;
    for (seq, inbox_event) in inbox.into_iter().take(MAX_NEW_EVENTS_PER_TURN) {
        inbox_upto_seq = seq + 1;
        new_events.push(inbox_event);
    }
    let request = OrchestratorRequest {
        instance_id: record.instance_id.clone(),
        execution_id: Some(record.execution_id.clone()),
        past_events: history,
        new_events,
        ..Default::default()
    };
    Some(Turn {
        request,
        execution_id: record.execution_id.clone(),
        history_len: record.history_len,
        inbox_upto_seq,
        turn_time,
    })
}

/// The command that records a worker's answer to `turn`.
pub fn complete_turn(turn: &Turn, response: OrchestratorResponse) -> CompleteTurn {
    CompleteTurn {
        instance_id: turn.request.instance_id.clone(),
        execution_id: turn.execution_id.clone(),
        history_len: turn.history_len,
        inbox_upto_seq: turn.inbox_upto_seq,
        turn_time: Some(turn.turn_time),
        actions: response.actions,
        custom_status: response.custom_status,
        version: response.version,
    }
}

/// The work item of a pending activity.
pub fn activity_request(
    instance_id: &str,
    task_id: i32,
    activity: &ActivityRecord,
) -> ActivityRequest {
    ActivityRequest {
        name: activity.name.clone(),
        version: activity.version.clone(),
        input: activity.input.clone(),
        orchestration_instance: Some(OrchestrationInstance {
            instance_id: instance_id.to_string(),
            execution_id: Some(activity.execution_id.clone()),
        }),
        task_id,
        parent_trace_context: activity.parent_trace_context.clone(),
        task_execution_id: activity.task_execution_id.clone(),
        ..Default::default()
    }
}
