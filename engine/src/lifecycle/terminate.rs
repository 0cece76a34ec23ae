//! Terminate: the engine ends the run itself (no worker needed), records the given output,
//! and with `recursive` ends every active child too (through the outbox: see `outbox`).

use endure_proto::history_event::EventType;
use endure_proto::{ExecutionTerminatedEvent, OrchestrationStatus};

use super::{event, finish_run, is_terminal, Ending, NO_ACTION_EVENT_ID};
use crate::apply::{Ctx, Outcome, Rejection};
use crate::records::outbox_message::Kind;
use crate::records::{InstanceRecord, OutboxMessage, Terminate, TerminateRun};
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
        // Each child, wherever its shard, ends when the message reaches it, if it is still
        // the run this one created.
        for child_id in &record.children {
            tx.send(OutboxMessage {
                target_instance_id: child_id.clone(),
                kind: Some(Kind::TerminateRun(TerminateRun {
                    output: output.clone(),
                    recursive: true,
                    parent_instance_id: record.instance_id.clone(),
                    parent_execution_id: record.execution_id.clone(),
                })),
            })?;
        }
    }
    Ok(())
}

/// The child's current run was created by the parent's run `parent_execution_id`.
pub fn is_child_of_run(
    child: &InstanceRecord,
    parent_instance_id: &str,
    parent_execution_id: &str,
) -> bool {
    child
        .parent
        .as_ref()
        .and_then(|p| p.orchestration_instance.as_ref())
        .is_some_and(|p| {
            p.instance_id == parent_instance_id
                && p.execution_id.as_deref() == Some(parent_execution_id)
        })
}
