//! Terminate: the engine ends the run itself (no worker needed), records the given output,
//! and with `recursive` ends every active child too.

use endure_proto::history_event::EventType;
use endure_proto::{ExecutionTerminatedEvent, OrchestrationStatus};

use super::{event, finish_run, is_terminal, Ending, NO_ACTION_EVENT_ID};
use crate::apply::{Ctx, Outcome, Rejection};
use crate::records::{InstanceRecord, Terminate};
use crate::view::Tx;
use crate::Error;

pub fn apply(tx: &mut Tx<'_>, ctx: &Ctx, terminate: &Terminate) -> Result<Outcome, Error> {
    let Some(record) = tx.instance(&terminate.instance_id)? else {
        return Ok(Outcome::Rejected(Rejection::no_such_instance(
            &terminate.instance_id,
        )));
    };
    if !is_terminal(record.status) {
        terminate_instance(
            tx,
            ctx,
            record,
            terminate.output.clone(),
            terminate.recursive,
        )?;
    }
    Ok(Outcome::OK)
}

/// Ends an active instance as TERMINATED, then (if `recursive`) its active children.
pub fn terminate_instance(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    mut record: InstanceRecord,
    output: Option<String>,
    recursive: bool,
) -> Result<(), Error> {
    if record.history_len == 0 {
        // Never ran: its ExecutionStarted still waits in the inbox; keep it in the history
        // so the history says what was terminated.
        let started = tx
            .inbox(&record.instance_id)?
            .into_iter()
            .map(|(_, e)| e)
            .find(|e| matches!(e.event_type, Some(EventType::ExecutionStarted(_))));
        if let Some(started) = started {
            tx.append_history(&mut record, started);
        }
    }
    let terminated = ExecutionTerminatedEvent {
        input: output.clone(),
        recurse: recursive,
    };
    tx.append_history(
        &mut record,
        event(ctx.now, EventType::ExecutionTerminated(terminated)),
    );
    let ending = Ending {
        status: OrchestrationStatus::Terminated,
        output: output.clone(),
        failure: None,
        event_id: NO_ACTION_EVENT_ID,
    };
    finish_run(tx, ctx, &mut record, ending)?;
    if recursive {
        for child_id in &record.children {
            let Some(child) = tx.instance(child_id)? else {
                continue;
            };
            if is_terminal(child.status) || !is_child_of(&child, &record) {
                continue;
            }
            terminate_instance(tx, ctx, child, output.clone(), true)?;
        }
    }
    Ok(())
}

/// The child's current run was created by this run of the parent (IDs can be reused).
pub fn is_child_of(child: &InstanceRecord, parent: &InstanceRecord) -> bool {
    child
        .parent
        .as_ref()
        .and_then(|p| p.orchestration_instance.as_ref())
        .is_some_and(|p| {
            p.instance_id == parent.instance_id
                && p.execution_id.as_deref() == Some(parent.execution_id.as_str())
        })
}
