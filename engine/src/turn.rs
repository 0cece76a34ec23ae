//! Applying a worker's answer to a turn (`CompleteTurn`), as Dapr's applier does:
//! the turn's OrchestratorStarted and consumed inbox events join the history, then each
//! action appends its event with `eventId = action.id` and takes effect. The first
//! completion action wins; continue-as-new discards the actions after it.

use endure_proto::history_event::EventType;
use endure_proto::orchestrator_action::OrchestratorActionType as Action;
use endure_proto::{
    CompleteOrchestrationAction, CreateSubOrchestrationAction, EventRaisedEvent, EventSentEvent,
    ExecutionStalledEvent, HistoryEvent, OrchestrationInstance, OrchestrationStatus,
    OrchestratorAction, OrchestratorStartedEvent, ParentInstanceInfo, ScheduleTaskAction,
    SubOrchestrationInstanceCreatedEvent, SubOrchestrationInstanceFailedEvent, TaskFailureDetails,
    TaskScheduledEvent, TimerCreatedEvent,
};

use crate::apply::{Ctx, Outcome, Rejection, RejectionCode};
use crate::lifecycle::start::{self, NewInstance};
use crate::lifecycle::terminate::terminate_instance;
use crate::lifecycle::{event, finish_run, is_terminal, Ending};
use crate::records::{ActivityRecord, CompleteTurn, InstanceRecord, TimerKey};
use crate::view::Tx;
use crate::{continue_as_new, time, Error};

/// ExecutionStalled reason VERSION_NOT_AVAILABLE.
const STALLED_VERSION_NOT_AVAILABLE: i32 = 1;

pub fn apply(tx: &mut Tx<'_>, ctx: &Ctx, done: &CompleteTurn) -> Result<Outcome, Error> {
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
    let pending = OrchestrationStatus::Pending as i32;
    if record.status == pending || record.status == OrchestrationStatus::Stalled as i32 {
        record.status = OrchestrationStatus::Running as i32;
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
            format!("unknown instance ID: {}", done.instance_id),
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
    let id = action.id;
    let router = action.router.clone();
    match &action.orchestrator_action_type {
        Some(Action::ScheduleTask(task)) => schedule_task(tx, ctx, &mut record, action, task),
        Some(Action::CreateTimer(timer)) => {
            let created = TimerCreatedEvent {
                fire_at: timer.fire_at,
                name: timer.name.clone(),
                origin: timer.origin.clone().map(Into::into),
                ..Default::default()
            };
            append_action_event(
                tx,
                ctx,
                &mut record,
                id,
                EventType::TimerCreated(created),
                router,
            );
            let key = TimerKey {
                fire_at: Some(timer.fire_at.unwrap_or_default()),
                instance_id: instance_id.to_string(),
                timer_id: id,
            };
            tx.put_timer(&mut record, key);
            tx.put_instance(&record);
        }
        Some(Action::CreateSubOrchestration(child)) => {
            create_child(tx, ctx, record, action, child)?;
        }
        Some(Action::SendEvent(send)) => {
            let target = send
                .instance
                .as_ref()
                .map(|i| i.instance_id.clone())
                .unwrap_or_default();
            let sent = EventSentEvent {
                instance_id: target.clone(),
                name: send.name.clone(),
                input: send.data.clone(),
            };
            append_action_event(tx, ctx, &mut record, id, EventType::EventSent(sent), router);
            tx.put_instance(&record);
            deliver_event(tx, ctx, &target, &send.name, send.data.clone())?;
        }
        Some(Action::CompleteOrchestration(complete)) => {
            complete_run(tx, ctx, record, id, complete)?;
            return Ok(Flow::Stop);
        }
        Some(Action::TerminateOrchestration(terminate)) => {
            if let Some(target) = tx.instance(&terminate.instance_id)? {
                if !is_terminal(target.status) {
                    terminate_instance(
                        tx,
                        ctx,
                        target,
                        terminate.reason.clone(),
                        terminate.recurse,
                    )?;
                }
            }
        }
        Some(Action::OrchestratorVersionNotAvailable(_)) => {
            let stalled = ExecutionStalledEvent {
                reason: STALLED_VERSION_NOT_AVAILABLE,
                description: Some(
                    "the worker has no version of this workflow that fits its history".into(),
                ),
            };
            tx.append_history(
                &mut record,
                event(ctx.now, EventType::ExecutionStalled(stalled)),
            );
            record.status = OrchestrationStatus::Stalled as i32;
            tx.put_instance(&record);
            return Ok(Flow::Stop);
        }
        Some(Action::CreateDetachedWorkflow(detached)) => {
            let spec = NewInstance {
                instance_id: detached.instance_id.clone(),
                name: detached.name.clone(),
                input: detached.input.clone(),
                version: detached.version.clone(),
                scheduled_start: detached.scheduled_start_timestamp,
                tags: detached.tags.clone(),
                router: detached.router.clone(),
                trace_context: detached.parent_trace_context.clone(),
                execution_id: ctx.generated_id(id as u32),
                ..NewInstance::default()
            };
            // A detached workflow whose ID is taken is simply not started, as in Dapr.
            let _ = start::create(tx, ctx, spec)?;
        }
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
    router: Option<endure_proto::TaskRouter>,
) {
    let mut created = event(ctx.now, kind);
    created.event_id = id;
    created.router = router;
    tx.append_history(record, created);
}

fn schedule_task(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    record: &mut InstanceRecord,
    action: &OrchestratorAction,
    task: &ScheduleTaskAction,
) {
    let router = action.router.clone().or_else(|| task.router.clone());
    let scheduled = TaskScheduledEvent {
        name: task.name.clone(),
        version: task.version.clone(),
        input: task.input.clone(),
        task_execution_id: task.task_execution_id.clone(),
        ..Default::default()
    };
    append_action_event(
        tx,
        ctx,
        record,
        action.id,
        EventType::TaskScheduled(scheduled),
        router.clone(),
    );
    let activity = ActivityRecord {
        name: task.name.clone(),
        version: task.version.clone(),
        input: task.input.clone(),
        execution_id: record.execution_id.clone(),
        task_execution_id: task.task_execution_id.clone(),
        router,
        parent_trace_context: None,
    };
    tx.put_activity(&record.instance_id, action.id, activity);
    tx.put_instance(record);
}

/// Records the child's creation and starts it. A child ID held by an active instance
/// fails the child task at once instead of disturbing that instance.
fn create_child(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    mut record: InstanceRecord,
    action: &OrchestratorAction,
    child: &CreateSubOrchestrationAction,
) -> Result<(), Error> {
    let child_id = if child.instance_id.is_empty() {
        format!("{}:{:04x}", record.instance_id, action.id)
    } else {
        child.instance_id.clone()
    };
    let created = SubOrchestrationInstanceCreatedEvent {
        instance_id: child_id.clone(),
        name: child.name.clone(),
        version: child.version.clone(),
        input: child.input.clone(),
        ..Default::default()
    };
    let router = action.router.clone().or_else(|| child.router.clone());
    let kind = EventType::SubOrchestrationInstanceCreated(created);
    append_action_event(tx, ctx, &mut record, action.id, kind, router.clone());
    if !record.children.contains(&child_id) {
        record.children.push(child_id.clone());
    }
    tx.put_instance(&record);
    let spec = NewInstance {
        instance_id: child_id,
        name: child.name.clone(),
        input: child.input.clone(),
        version: child.version.clone(),
        parent: Some(ParentInstanceInfo {
            task_scheduled_id: action.id,
            name: Some(record.name.clone()),
            version: record.version.clone(),
            orchestration_instance: Some(OrchestrationInstance {
                instance_id: record.instance_id.clone(),
                execution_id: Some(record.execution_id.clone()),
            }),
            ..Default::default()
        }),
        router,
        execution_id: ctx.generated_id(action.id as u32),
        ..NewInstance::default()
    };
    if let Err(rejection) = start::create(tx, ctx, spec)? {
        let failed = SubOrchestrationInstanceFailedEvent {
            task_scheduled_id: action.id,
            failure_details: Some(TaskFailureDetails {
                error_type: "ChildWorkflowCreationFailed".into(),
                error_message: rejection.message,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut parent = tx.instance(&record.instance_id)?.unwrap_or(record);
        tx.push_inbox(
            &mut parent,
            event(ctx.now, EventType::SubOrchestrationInstanceFailed(failed)),
        );
        tx.put_instance(&parent);
    }
    Ok(())
}

/// Delivers an event a workflow sent to another instance, if that instance is active.
fn deliver_event(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    target: &str,
    name: &str,
    input: Option<String>,
) -> Result<(), Error> {
    let Some(mut record) = tx.instance(target)? else {
        return Ok(());
    };
    if is_terminal(record.status) {
        return Ok(());
    }
    let raised = EventRaisedEvent {
        name: name.to_string(),
        input,
    };
    tx.push_inbox(&mut record, event(ctx.now, EventType::EventRaised(raised)));
    tx.put_instance(&record);
    Ok(())
}

/// The workflow's completion action: finish the run, or start the next one.
fn complete_run(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    mut record: InstanceRecord,
    id: i32,
    complete: &CompleteOrchestrationAction,
) -> Result<(), Error> {
    let status = OrchestrationStatus::try_from(complete.orchestration_status)
        .unwrap_or(OrchestrationStatus::Failed);
    if status == OrchestrationStatus::ContinuedAsNew {
        return continue_as_new::apply(tx, ctx, record, complete);
    }
    let ending = Ending {
        status,
        output: complete.result.clone(),
        failure: complete.failure_details.clone(),
        event_id: id,
    };
    finish_run(tx, ctx, &mut record, ending)
}
