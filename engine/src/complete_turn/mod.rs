//! Applying a worker's answer to a turn (`CompleteTurn`), as Dapr's applier does.
//!
//! First the fence: the answer must belong to the instance's current run and to the turn
//! that was built on its current history, at a turn time after the previous turn. Then the
//! prologue: the turn's OrchestratorStarted and the inbox events it consumed join the
//! history. Then each action appends its event with `eventId = action.id` and takes effect,
//! one file per action. The first completion action wins; continue-as-new discards the
//! actions after it.

mod complete;
mod continue_as_new;
mod create_child;
mod create_timer;
mod detached;
mod schedule_task;
mod send_event;
mod terminate;
mod version_not_available;

use endure_proto::history_event::EventType;
use endure_proto::orchestrator_action::OrchestratorActionType as Action;
use endure_proto::{
    HistoryEvent, OrchestrationStatus, OrchestratorAction, OrchestratorStartedEvent, TaskRouter,
};

use crate::apply::{Ctx, Outcome, Rejection, RejectionCode};
use crate::lifecycle::{event, is_terminal};
use crate::records::{CompleteTurn, InstanceRecord};
use crate::view::Tx;
use crate::{protocol_text, time, Error};

pub(crate) fn apply(tx: &mut Tx<'_>, ctx: &Ctx, done: &CompleteTurn) -> Result<Outcome, Error> {
    let mut record = match fenced(tx, done)? {
        Ok(record) => record,
        Err(rejection) => return Ok(Outcome::Rejected(rejection)),
    };
    let consumed: Vec<(u64, HistoryEvent)> = tx
        .inbox(&done.instance_id)?
        .into_iter()
        .filter(|(seq, _)| *seq < done.inbox_upto_seq)
        .collect();
    if consumed.is_empty() {
        return Ok(Outcome::Rejected(stale(
            &done.instance_id,
            "the turn had no new events",
        )));
    }
    let started = OrchestratorStartedEvent {
        version: done.version.clone(),
    };
    let turn_time = done.turn_time.unwrap_or_default();
    tx.append_history(
        &mut record,
        event(turn_time, EventType::OrchestratorStarted(started)),
    );
    for (seq, consumed_event) in consumed {
        tx.delete_inbox(&mut record, seq);
        tx.append_history(&mut record, consumed_event);
    }
    record.last_turn_at = Some(turn_time);
    record.last_updated_at = Some(ctx.now);
    record.custom_status = done.custom_status.clone();
    if matches!(
        record.status(),
        OrchestrationStatus::Pending | OrchestrationStatus::Stalled
    ) {
        record.set_status(OrchestrationStatus::Running);
    }
    tx.put_instance(&record);
    for action in &done.actions {
        if apply_action(tx, ctx, &done.instance_id, action)? == Flow::Stop {
            break;
        }
    }
    Ok(Outcome::OK)
}

/// The instance, if this completion belongs to its current run and to the turn that was
/// built on its current history; anything else is a stale or duplicate completion.
fn fenced(tx: &Tx<'_>, done: &CompleteTurn) -> Result<Result<InstanceRecord, Rejection>, Error> {
    let Some(record) = tx.instance(&done.instance_id)? else {
        return Ok(Err(Rejection::new(
            RejectionCode::NotFound,
            protocol_text::unknown_instance(&done.instance_id),
        )));
    };
    let reason = if record.execution_id != done.execution_id {
        "the instance has moved on to another run"
    } else if is_terminal(record.status) {
        "the instance has already ended"
    } else if record.history_len != done.history_len {
        "the turn was built on an older history"
    } else if record
        .last_turn_at
        .as_ref()
        .is_some_and(|last| !time::after(&done.turn_time.unwrap_or_default(), last))
    {
        "the turn time is not after the previous turn"
    } else {
        return Ok(Ok(record));
    };
    Ok(Err(stale(&done.instance_id, reason)))
}

fn stale(instance_id: &str, reason: &str) -> Rejection {
    Rejection::new(
        RejectionCode::Stale,
        format!("stale turn completion for instance ID {instance_id}: {reason}"),
    )
}

/// Whether the actions after this one still apply.
#[derive(PartialEq)]
enum Flow {
    Continue,
    Stop,
}

/// Applies one action. Reads the instance afresh: an earlier action may have changed it
/// (a child that ended at once tells this parent through its inbox).
fn apply_action(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    instance_id: &str,
    action: &OrchestratorAction,
) -> Result<Flow, Error> {
    let Some(mut record) = tx.instance(instance_id)? else {
        return Ok(Flow::Stop);
    };
    if is_terminal(record.status) {
        return Ok(Flow::Stop);
    }
    match &action.orchestrator_action_type {
        Some(Action::ScheduleTask(task)) => {
            schedule_task::apply(tx, ctx, &mut record, action, task);
        }
        Some(Action::CreateTimer(timer)) => {
            create_timer::apply(tx, ctx, &mut record, action, timer);
        }
        Some(Action::CreateSubOrchestration(child)) => {
            create_child::apply(tx, ctx, record, action, child)?;
        }
        Some(Action::SendEvent(send)) => {
            send_event::apply(tx, ctx, &mut record, action, send)?;
        }
        Some(Action::CompleteOrchestration(done)) => {
            complete::apply(tx, ctx, record, action, done)?;
            return Ok(Flow::Stop);
        }
        Some(Action::TerminateOrchestration(terminate)) => {
            terminate::apply(tx, terminate)?;
        }
        Some(Action::OrchestratorVersionNotAvailable(_)) => {
            version_not_available::apply(tx, ctx, &mut record);
            return Ok(Flow::Stop);
        }
        Some(Action::CreateDetachedWorkflow(detached)) => {
            detached::apply(tx, ctx, action, detached)?;
        }
        // Entities are not supported; Dapr's workers never send this.
        Some(Action::SendEntityMessage(_)) | None => {}
    }
    Ok(Flow::Continue)
}

/// Appends the history event an action created: `eventId = action.id`.
fn append_action_event(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    record: &mut InstanceRecord,
    id: i32,
    kind: EventType,
    router: Option<TaskRouter>,
) {
    let mut created = event(ctx.now, kind);
    created.event_id = id;
    created.router = router;
    tx.append_history(record, created);
}
