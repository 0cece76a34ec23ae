//! Creating an instance: from a client (`StartInstance`), as a child of a workflow, or as a
//! detached workflow. An ID can be reused once its previous instance is terminal.

use endure_proto::history_event::EventType;
use endure_proto::{
    ExecutionStartedEvent, OrchestrationInstance, OrchestrationStatus, ParentInstanceInfo,
    TaskRouter, TraceContext,
};
use prost_types::Timestamp;
use std::collections::HashMap;

use super::{event, is_terminal};
use crate::apply::{Ctx, Outcome, Rejection, RejectionCode};
use crate::records::{InstanceRecord, StartInstance, StartRun, TimerKey};
use crate::timers::SCHEDULED_START_TIMER_ID;
use crate::view::Tx;
use crate::{protocol_text, time, Error};

/// Everything needed to create a run of a new instance.
#[derive(Clone, Debug, Default)]
pub struct NewInstance {
    pub instance_id: String,
    pub name: String,
    pub input: Option<String>,
    pub version: Option<String>,
    pub scheduled_start: Option<Timestamp>,
    pub tags: HashMap<String, String>,
    pub parent: Option<ParentInstanceInfo>,
    pub router: Option<TaskRouter>,
    pub trace_context: Option<TraceContext>,
    /// Refuse even when the existing instance is terminal.
    pub enforce_unique: bool,
    /// Execution ID of the new run.
    pub execution_id: String,
}

pub fn apply(tx: &mut Tx<'_>, ctx: &Ctx, start: &StartInstance) -> Result<Outcome, Error> {
    if start.instance_id.is_empty() || start.name.is_empty() {
        return Ok(Outcome::Rejected(Rejection::new(
            RejectionCode::InvalidArgument,
            "an instance ID and a workflow name are required",
        )));
    }
    let spec = NewInstance {
        instance_id: start.instance_id.clone(),
        name: start.name.clone(),
        input: start.input.clone(),
        version: start.version.clone(),
        scheduled_start: start.scheduled_start,
        tags: start.tags.clone(),
        parent: None,
        router: start.router.clone(),
        trace_context: start.parent_trace_context.clone(),
        enforce_unique: start.enforce_unique,
        execution_id: ctx.generated_id(0),
    };
    Ok(match create(tx, ctx, spec)? {
        Ok(()) => Outcome::OK,
        Err(rejection) => Outcome::Rejected(rejection),
    })
}

/// Creates the instance, replacing a terminal one of the same ID; refuses an active one.
pub fn create(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    spec: NewInstance,
) -> Result<Result<(), Rejection>, Error> {
    if let Some(existing) = tx.instance(&spec.instance_id)? {
        if !is_terminal(existing.status) || spec.enforce_unique {
            return Ok(Err(already_exists(&spec.instance_id)));
        }
        tx.delete_instance(&existing)?;
    }
    let mut record = InstanceRecord {
        instance_id: spec.instance_id.clone(),
        name: spec.name.clone(),
        execution_id: spec.execution_id.clone(),
        status: OrchestrationStatus::Pending.into(),
        created_at: Some(ctx.now),
        last_updated_at: Some(ctx.now),
        input: spec.input.clone(),
        parent: spec.parent.clone(),
        version: spec.version.clone(),
        tags: spec.tags.clone(),
        router: spec.router.clone(),
        ..InstanceRecord::default()
    };
    let started = execution_started(&spec);
    let mut started_event = event(ctx.now, EventType::ExecutionStarted(started));
    started_event.router = spec.router.clone();
    tx.push_inbox(&mut record, started_event);
    if let Some(at) = spec.scheduled_start.filter(|at| time::after(at, &ctx.now)) {
        record.scheduled_start = Some(at);
        let key = TimerKey {
            fire_at: Some(at),
            instance_id: record.instance_id.clone(),
            timer_id: SCHEDULED_START_TIMER_ID,
        };
        tx.put_timer(&mut record, key);
    }
    tx.put_instance(&record);
    Ok(Ok(()))
}

/// The outbox form of `spec` (see [`from_message`]).
pub(crate) fn to_message(spec: NewInstance) -> StartRun {
    StartRun {
        start: Some(StartInstance {
            instance_id: spec.instance_id,
            name: spec.name,
            input: spec.input,
            version: spec.version,
            scheduled_start: spec.scheduled_start,
            tags: spec.tags,
            enforce_unique: spec.enforce_unique,
            router: spec.router,
            parent_trace_context: spec.trace_context,
        }),
        execution_id: spec.execution_id,
        parent: spec.parent,
    }
}

/// The run an outbox `StartRun` creates.
pub(crate) fn from_message(run: &StartRun) -> NewInstance {
    let start = run.start.clone().unwrap_or_default();
    NewInstance {
        instance_id: start.instance_id,
        name: start.name,
        input: start.input,
        version: start.version,
        scheduled_start: start.scheduled_start,
        tags: start.tags,
        parent: run.parent.clone(),
        router: start.router,
        trace_context: start.parent_trace_context,
        enforce_unique: start.enforce_unique,
        execution_id: run.execution_id.clone(),
    }
}

/// The ExecutionStarted event of a new run.
pub fn execution_started(spec: &NewInstance) -> ExecutionStartedEvent {
    ExecutionStartedEvent {
        name: spec.name.clone(),
        version: spec.version.clone(),
        input: spec.input.clone(),
        orchestration_instance: Some(OrchestrationInstance {
            instance_id: spec.instance_id.clone(),
            execution_id: Some(spec.execution_id.clone()),
        }),
        parent_instance: spec.parent.clone(),
        scheduled_start_timestamp: spec.scheduled_start,
        parent_trace_context: spec.trace_context.clone(),
        tags: spec.tags.clone(),
        ..Default::default()
    }
}

fn already_exists(instance_id: &str) -> Rejection {
    Rejection::new(
        RejectionCode::AlreadyExists,
        protocol_text::already_exists(instance_id),
    )
}
