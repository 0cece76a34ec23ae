//! An activity's result (`CompleteActivity`). Recorded exactly once: the pending activity
//! row is the proof that no result was recorded yet. The fence is the result's execution
//! ID: a task ID is unique only within a run, and a new run reuses them, so a late result
//! of an old run must not complete the new run's task of the same ID.

use endure_proto::history_event::EventType;
use endure_proto::{TaskCompletedEvent, TaskFailedEvent};

use crate::apply::{Ctx, Outcome, Rejection, RejectionCode};
use crate::lifecycle::{event, is_terminal};
use crate::records::CompleteActivity;
use crate::view::Tx;
use crate::{protocol_text, Error};

pub fn apply(tx: &mut Tx<'_>, ctx: &Ctx, done: &CompleteActivity) -> Result<Outcome, Error> {
    let unknown = || {
        Outcome::Rejected(Rejection::new(
            RejectionCode::Stale,
            protocol_text::unknown_task(&done.instance_id, done.task_id),
        ))
    };
    let Some(mut record) = tx.instance(&done.instance_id)? else {
        return Ok(unknown());
    };
    if is_terminal(record.status) || record.execution_id != done.execution_id {
        return Ok(unknown());
    }
    let Some(activity) = tx.activity(&done.instance_id, done.task_id)? else {
        return Ok(unknown());
    };
    if activity.execution_id != record.execution_id {
        // Every path to a new run drops the old run's activity rows first.
        return Err(Error::Corruption(format!(
            "activity {}/{} belongs to run {}, not to the instance's run {}",
            done.instance_id, done.task_id, activity.execution_id, record.execution_id
        )));
    }
    tx.delete_activity(&done.instance_id, done.task_id);
    let kind = match &done.failure_details {
        Some(failure) => EventType::TaskFailed(TaskFailedEvent {
            task_scheduled_id: done.task_id,
            failure_details: Some(failure.clone()),
            task_execution_id: activity.task_execution_id.clone(),
            ..Default::default()
        }),
        None => EventType::TaskCompleted(TaskCompletedEvent {
            task_scheduled_id: done.task_id,
            result: done.result.clone(),
            task_execution_id: activity.task_execution_id.clone(),
            ..Default::default()
        }),
    };
    tx.push_inbox(&mut record, event(ctx.now, kind));
    tx.put_instance(&record);
    Ok(Outcome::OK)
}
