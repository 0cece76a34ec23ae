//! Messages between instances. A change that concerns another instance (a child to start,
//! a parent to tell, an event sent, a run to terminate) never writes that instance's rows:
//! it puts a message in the outbox ([`crate::view::Tx::send`]), and the leader delivers it
//! to the target's shard as a `DeliverMessages` command, applied here. The target keeps the
//! highest sequence number it applied from each source shard ([`Mark::DeliveredFrom`]), so
//! a delivery that is repeated (a leader change, a lost answer) applies nothing twice.
//! Once delivered, the sender's `AckOutbox` deletes the rows.

use endure_proto::history_event::EventType;
use endure_proto::{EventRaisedEvent, SubOrchestrationInstanceFailedEvent, TaskFailureDetails};

use crate::apply::{Ctx, Outcome};
use crate::lifecycle::start::{self, NewInstance};
use crate::lifecycle::terminate::{is_child_of_run, terminate_instance};
use crate::lifecycle::{event, is_terminal};
use crate::records::outbox_message::Kind;
use crate::records::{
    AckOutbox, ChildEnded, DeliverEvent, DeliverMessages, InstanceRecord, OutboxMessage, PurgeRun,
    StartRun, TerminateRun,
};
use crate::view::{Mark, Tx};
use crate::{protocol_text, Error};

/// Applies the messages of one source shard that were not applied before, in order.
pub(crate) fn deliver(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    deliver: &DeliverMessages,
) -> Result<Outcome, Error> {
    let mark = Mark::DeliveredFrom(deliver.source_shard);
    let before = tx.mark(mark)?;
    let mut applied_upto = before;
    for entry in &deliver.entries {
        if entry.seq <= applied_upto {
            continue; // applied by an earlier delivery
        }
        applied_upto = entry.seq;
        if let Some(message) = &entry.message {
            apply_message(tx, ctx, message)?;
        }
    }
    if applied_upto > before {
        tx.put_mark(mark, applied_upto);
    }
    Ok(Outcome::OK)
}

/// Deletes the outbox rows the target has applied.
pub(crate) fn ack(tx: &mut Tx<'_>, ack: &AckOutbox) -> Result<Outcome, Error> {
    if ack.upto_seq >= tx.mark(Mark::OutboxNext)? {
        return Ok(Outcome::Rejected(crate::Rejection::new(
            crate::RejectionCode::InvalidArgument,
            format!(
                "outbox acknowledgement up to {} is past the last message sent",
                ack.upto_seq
            ),
        )));
    }
    tx.delete_outbox(ack.upto_seq);
    Ok(Outcome::OK)
}

fn apply_message(tx: &mut Tx<'_>, ctx: &Ctx, message: &OutboxMessage) -> Result<(), Error> {
    let target = &message.target_instance_id;
    match &message.kind {
        Some(Kind::StartRun(run)) => start_run(tx, ctx, run),
        Some(Kind::ChildEnded(ended)) => child_ended(tx, target, ended),
        Some(Kind::DeliverEvent(sent)) => deliver_event(tx, ctx, target, sent),
        Some(Kind::TerminateRun(terminate)) => terminate_run(tx, ctx, target, terminate),
        Some(Kind::PurgeRun(purge)) => purge_run(tx, target, purge),
        // A kind this build does not know: nothing to do with it.
        None => Ok(()),
    }
}

/// Creates the run. A child whose ID is held by an active instance is not created and its
/// parent's task fails at once; a detached workflow is then simply not started (as Dapr).
fn start_run(tx: &mut Tx<'_>, ctx: &Ctx, run: &StartRun) -> Result<(), Error> {
    let spec = start::from_message(run);
    let Err(rejection) = start::create(tx, ctx, spec)? else {
        return Ok(());
    };
    let Some(parent) = &run.parent else {
        return Ok(());
    };
    let Some(parent_ref) = &parent.orchestration_instance else {
        return Ok(());
    };
    let failed = SubOrchestrationInstanceFailedEvent {
        task_scheduled_id: parent.task_scheduled_id,
        failure_details: Some(TaskFailureDetails {
            error_type: protocol_text::CHILD_CREATION_FAILED.into(),
            error_message: rejection.message,
            ..Default::default()
        }),
        ..Default::default()
    };
    tx.send(OutboxMessage {
        target_instance_id: parent_ref.instance_id.clone(),
        kind: Some(Kind::ChildEnded(ChildEnded {
            parent_execution_id: parent_ref.execution_id.clone().unwrap_or_default(),
            event: Some(event(
                ctx.now,
                EventType::SubOrchestrationInstanceFailed(failed),
            )),
        })),
    })
}

/// The target of a message if it exists and has not ended; a message to anything else is
/// dropped (delivered, nothing to apply).
fn active(tx: &Tx<'_>, instance_id: &str) -> Result<Option<InstanceRecord>, Error> {
    let record = tx.instance(instance_id)?;
    Ok(record.filter(|record| !is_terminal(record.status)))
}

/// A child's end joins its parent's inbox, unless the parent moved on to another run or
/// ended.
fn child_ended(tx: &mut Tx<'_>, parent_id: &str, ended: &ChildEnded) -> Result<(), Error> {
    let Some(mut parent) = active(tx, parent_id)? else {
        return Ok(());
    };
    if parent.execution_id != ended.parent_execution_id {
        return Ok(());
    }
    let Some(event) = ended.event.clone() else {
        return Ok(());
    };
    tx.push_inbox(&mut parent, event);
    tx.put_instance(&parent);
    Ok(())
}

/// An event from another workflow joins the target's inbox if the target is active.
fn deliver_event(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    target: &str,
    sent: &DeliverEvent,
) -> Result<(), Error> {
    let Some(mut record) = active(tx, target)? else {
        return Ok(());
    };
    let raised = EventRaisedEvent {
        name: sent.name.clone(),
        input: sent.input.clone(),
    };
    let at = sent.sent_at.unwrap_or(ctx.now);
    tx.push_inbox(&mut record, event(at, EventType::EventRaised(raised)));
    tx.put_instance(&record);
    Ok(())
}

fn terminate_run(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    target: &str,
    terminate: &TerminateRun,
) -> Result<(), Error> {
    let Some(record) = active(tx, target)? else {
        return Ok(());
    };
    let fenced = !terminate.parent_instance_id.is_empty();
    if fenced
        && !is_child_of_run(
            &record,
            &terminate.parent_instance_id,
            &terminate.parent_execution_id,
        )
    {
        return Ok(());
    }
    terminate_instance(
        tx,
        ctx,
        record,
        terminate.output.clone(),
        terminate.recursive,
    )
}

/// Deletes a terminal child (and, through the outbox, its children) that is still the run
/// the purged parent created.
fn purge_run(tx: &mut Tx<'_>, target: &str, purge: &PurgeRun) -> Result<(), Error> {
    let Some(record) = tx.instance(target)? else {
        return Ok(());
    };
    let ours = is_child_of_run(
        &record,
        &purge.parent_instance_id,
        &purge.parent_execution_id,
    );
    if is_terminal(record.status) && ours {
        crate::lifecycle::purge::purge_tree(tx, &record, true)?;
    }
    Ok(())
}

/// The message that starts `spec` as a run of its own (a child when `spec.parent` is set).
pub(crate) fn start_message(spec: NewInstance) -> OutboxMessage {
    OutboxMessage {
        target_instance_id: spec.instance_id.clone(),
        kind: Some(Kind::StartRun(start::to_message(spec))),
    }
}
