//! Rerun from an event: a new instance whose history is a terminal instance's history up to
//! the turn that produced the chosen event (a scheduled activity, a timer or a child). That
//! turn's triggering events become the new instance's inbox, so its next turn replays the
//! decision and the work from that point runs again.

use endure_proto::history_event::EventType;
use endure_proto::{HistoryEvent, OrchestrationInstance, OrchestrationStatus};

use super::{is_terminal, NO_ACTION_EVENT_ID};
use crate::apply::{Ctx, Outcome, Rejection, RejectionCode};
use crate::records::{ActivityRecord, InstanceRecord, Rerun, TimerKey};
use crate::view::Tx;
use crate::{protocol_text, Error};

pub fn apply(tx: &mut Tx<'_>, ctx: &Ctx, rerun: &Rerun) -> Result<Outcome, Error> {
    let reject = |code, message: String| Ok(Outcome::Rejected(Rejection::new(code, message)));
    let Some(source) = tx.instance(&rerun.source_instance_id)? else {
        let id = &rerun.source_instance_id;
        return reject(RejectionCode::NotFound, protocol_text::no_such_workflow(id));
    };
    if !is_terminal(source.status) || source.parent.is_some() {
        return reject(
            RejectionCode::InvalidArgument,
            format!(
                "'{}' must be a terminal, top-level workflow to be rerun",
                source.instance_id
            ),
        );
    }
    if tx.instance(&rerun.new_instance_id)?.is_some() {
        let id = &rerun.new_instance_id;
        return reject(RejectionCode::AlreadyExists, protocol_text::id_taken(id));
    }
    let history = tx.history(&source.instance_id)?;
    let Some(cut) = turn_start_of(&history, rerun.event_id) else {
        return reject(
            RejectionCode::InvalidArgument,
            format!(
                "event {} of '{}' is not a TaskScheduled, TimerCreated or child workflow creation",
                rerun.event_id, source.instance_id
            ),
        );
    };
    create(tx, ctx, &source, &history, cut, rerun)?;
    Ok(Outcome::OK)
}

/// Index of the OrchestratorStarted that begins the turn holding the event `event_id` of a
/// kind a rerun can start from.
fn turn_start_of(history: &[HistoryEvent], event_id: i32) -> Option<usize> {
    let position = history.iter().position(|e| {
        e.event_id == event_id
            && matches!(
                e.event_type,
                Some(
                    EventType::TaskScheduled(_)
                        | EventType::TimerCreated(_)
                        | EventType::SubOrchestrationInstanceCreated(_)
                )
            )
    })?;
    history[..position]
        .iter()
        .rposition(|e| matches!(e.event_type, Some(EventType::OrchestratorStarted(_))))
}

fn create(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    source: &InstanceRecord,
    history: &[HistoryEvent],
    cut: usize,
    rerun: &Rerun,
) -> Result<(), Error> {
    let execution_id = ctx.generated_id(0);
    let mut record = InstanceRecord {
        instance_id: rerun.new_instance_id.clone(),
        name: source.name.clone(),
        execution_id: execution_id.clone(),
        status: OrchestrationStatus::Pending.into(),
        created_at: Some(ctx.now),
        last_updated_at: Some(ctx.now),
        input: if rerun.overwrite_input {
            rerun.input.clone()
        } else {
            source.input.clone()
        },
        version: source.version.clone(),
        tags: source.tags.clone(),
        router: source.router.clone(),
        last_turn_at: source.last_turn_at,
        ..InstanceRecord::default()
    };
    let instance = OrchestrationInstance {
        instance_id: record.instance_id.clone(),
        execution_id: Some(execution_id.clone()),
    };
    let rewrite = |event: &HistoryEvent| rewrite_started(event, &instance, rerun);
    for past in &history[..cut] {
        tx.append_history(&mut record, rewrite(past));
    }
    // The turn's triggering events (everything in it that no action created) come again.
    let turn = &history[cut + 1..];
    let end = turn
        .iter()
        .position(|e| matches!(e.event_type, Some(EventType::OrchestratorStarted(_))))
        .unwrap_or(turn.len());
    for trigger in turn[..end]
        .iter()
        .filter(|e| e.event_id == NO_ACTION_EVENT_ID)
    {
        tx.push_inbox(&mut record, rewrite(trigger));
    }
    restore_pending(tx, &mut record, &history[..cut], &turn[..end]);
    if record.history_len > 0 {
        record.set_status(OrchestrationStatus::Running);
    }
    tx.put_instance(&record);
    Ok(())
}

/// The ExecutionStarted of the new run names the new instance and run (and the new input).
fn rewrite_started(
    event: &HistoryEvent,
    instance: &OrchestrationInstance,
    rerun: &Rerun,
) -> HistoryEvent {
    let mut event = event.clone();
    if let Some(EventType::ExecutionStarted(started)) = &mut event.event_type {
        started.orchestration_instance = Some(instance.clone());
        if rerun.overwrite_input {
            started.input = rerun.input.clone();
        }
    }
    event
}

/// Activities and timers the kept history started but had not finished (neither before
/// the cut nor among the events that come again) are scheduled and armed again.
fn restore_pending(
    tx: &mut Tx<'_>,
    record: &mut InstanceRecord,
    kept: &[HistoryEvent],
    again: &[HistoryEvent],
) {
    let finished = |id: i32| {
        kept.iter()
            .chain(again.iter())
            .any(|e| match &e.event_type {
                Some(EventType::TaskCompleted(done)) => done.task_scheduled_id == id,
                Some(EventType::TaskFailed(failed)) => failed.task_scheduled_id == id,
                Some(EventType::TimerFired(fired)) => fired.timer_id == id,
                _ => false,
            })
    };
    for scheduled in kept.iter().filter(|e| !finished(e.event_id)) {
        match &scheduled.event_type {
            Some(EventType::TaskScheduled(task)) => {
                let activity = ActivityRecord {
                    name: task.name.clone(),
                    version: task.version.clone(),
                    input: task.input.clone(),
                    execution_id: record.execution_id.clone(),
                    task_execution_id: task.task_execution_id.clone(),
                    router: scheduled.router.clone(),
                    parent_trace_context: None,
                };
                tx.put_activity(&record.instance_id, scheduled.event_id, activity);
            }
            Some(EventType::TimerCreated(timer)) => {
                let key = TimerKey {
                    fire_at: timer.fire_at,
                    instance_id: record.instance_id.clone(),
                    timer_id: scheduled.event_id,
                };
                tx.put_timer(record, key);
            }
            _ => {}
        }
    }
}
