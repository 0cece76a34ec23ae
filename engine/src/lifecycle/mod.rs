//! Lifecycle transitions of an instance, one file per client command, plus the pieces
//! several of them share (creating a run, finishing a run, telling the parent). Public only
//! for [`is_terminal`], the rule other crates need; the transitions are crate-internal.

pub(crate) mod purge;
pub(crate) mod raise;
pub(crate) mod rerun;
pub(crate) mod stall;
pub(crate) mod start;
pub(crate) mod suspend;
pub(crate) mod terminate;

use endure_proto::history_event::EventType;
use endure_proto::{
    ExecutionCompletedEvent, HistoryEvent, OrchestrationStatus,
    SubOrchestrationInstanceCompletedEvent, SubOrchestrationInstanceFailedEvent,
    TaskFailureDetails,
};
use prost_types::Timestamp;

use crate::apply::Ctx;
use crate::records::{outbox_message, ChildEnded, InstanceRecord, OutboxMessage};
use crate::view::Tx;
use crate::{protocol_text, Error};

/// COMPLETED, FAILED, TERMINATED and CANCELED end an instance; nothing runs after them.
pub fn is_terminal(status: i32) -> bool {
    matches!(
        OrchestrationStatus::try_from(status),
        Ok(OrchestrationStatus::Completed
            | OrchestrationStatus::Failed
            | OrchestrationStatus::Terminated
            | OrchestrationStatus::Canceled)
    )
}

/// The `eventId` of history events that no action created (the engine's own, and those
/// from outside the run: results, timers fired, raised events); an action's event carries
/// the action's ID.
pub(crate) const NO_ACTION_EVENT_ID: i32 = -1;

/// A history event that no action created, stamped with `at`.
pub(crate) fn event(at: Timestamp, kind: EventType) -> HistoryEvent {
    HistoryEvent {
        event_id: NO_ACTION_EVENT_ID,
        timestamp: Some(at),
        event_type: Some(kind),
        ..HistoryEvent::default()
    }
}

/// How a run ended.
pub(crate) struct Ending {
    pub(crate) status: OrchestrationStatus,
    pub(crate) output: Option<String>,
    pub(crate) failure: Option<TaskFailureDetails>,
    /// ID of the completion action, or [`NO_ACTION_EVENT_ID`] when the engine ended the run.
    pub(crate) event_id: i32,
}

/// Ends the current run: records ExecutionCompleted, drops pending work and the inbox,
/// stores the record and tells the parent, if any.
pub(crate) fn finish_run(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    record: &mut InstanceRecord,
    ending: Ending,
) -> Result<(), Error> {
    record.set_status(ending.status);
    record.output = ending.output.clone();
    record.failure_details = ending.failure.clone();
    record.last_updated_at = Some(ctx.now);
    let mut completed = event(
        ctx.now,
        EventType::ExecutionCompleted(ExecutionCompletedEvent {
            orchestration_status: ending.status as i32,
            result: ending.output,
            failure_details: ending.failure,
        }),
    );
    completed.event_id = ending.event_id;
    tx.append_history(record, completed);
    drop_pending(tx, record)?;
    tx.put_instance(record);
    notify_parent(tx, ctx, record)
}

/// Removes the run's pending activities, timers and unconsumed inbox events.
fn drop_pending(tx: &mut Tx<'_>, record: &mut InstanceRecord) -> Result<(), Error> {
    for (task_id, _) in tx.activities(&record.instance_id)? {
        tx.delete_activity(&record.instance_id, task_id);
    }
    for key in std::mem::take(&mut record.timers) {
        tx.delete_timer(&key);
    }
    for (seq, _) in tx.inbox(&record.instance_id)? {
        tx.delete_inbox(record, seq);
    }
    Ok(())
}

/// Sends a finished child's result to its parent (through the outbox). The parent gets
/// `SubOrchestrationInstanceCompleted` for COMPLETED and `...Failed` for every other end,
/// as Dapr does; a parent that moved on to another run or ended is not told (the parent's
/// shard decides that when the message arrives).
fn notify_parent(tx: &mut Tx<'_>, ctx: &Ctx, child: &InstanceRecord) -> Result<(), Error> {
    let Some(parent_info) = &child.parent else {
        return Ok(());
    };
    let Some(parent_ref) = &parent_info.orchestration_instance else {
        return Ok(());
    };
    let task_scheduled_id = parent_info.task_scheduled_id;
    let kind = if child.status() == OrchestrationStatus::Completed {
        EventType::SubOrchestrationInstanceCompleted(SubOrchestrationInstanceCompletedEvent {
            task_scheduled_id,
            result: child.output.clone(),
            ..Default::default()
        })
    } else {
        EventType::SubOrchestrationInstanceFailed(SubOrchestrationInstanceFailedEvent {
            task_scheduled_id,
            failure_details: Some(child_failure(child)),
            ..Default::default()
        })
    };
    tx.send(OutboxMessage {
        target_instance_id: parent_ref.instance_id.clone(),
        kind: Some(outbox_message::Kind::ChildEnded(ChildEnded {
            parent_execution_id: parent_ref.execution_id.clone().unwrap_or_default(),
            event: Some(event(ctx.now, kind)),
        })),
    })
}

/// The failure a parent sees for a child that did not complete.
fn child_failure(child: &InstanceRecord) -> TaskFailureDetails {
    if let Some(failure) = &child.failure_details {
        return failure.clone();
    }
    // Not `child.status()`: that would name an unknown value RUNNING.
    let status = OrchestrationStatus::try_from(child.status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    TaskFailureDetails {
        error_type: protocol_text::CHILD_FAILED.to_string(),
        error_message: format!(
            "child workflow '{}' ended with status {status}",
            child.instance_id
        ),
        ..Default::default()
    }
}
