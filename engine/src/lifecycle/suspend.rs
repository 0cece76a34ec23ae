//! Suspend and resume. A suspended instance runs no turn; events still reach its inbox.
//! The ExecutionSuspended/Resumed events go through the inbox so the SDK sees them in the
//! next turn, in order with the events that arrived meanwhile.

use endure_proto::history_event::EventType;
use endure_proto::{ExecutionResumedEvent, ExecutionSuspendedEvent, OrchestrationStatus};

use super::{event, is_terminal};
use crate::apply::{Ctx, Outcome, Rejection};
use crate::records::{Resume, Suspend};
use crate::view::Tx;
use crate::Error;

pub fn suspend(tx: &mut Tx<'_>, ctx: &Ctx, suspend: &Suspend) -> Result<Outcome, Error> {
    let Some(mut record) = tx.instance(&suspend.instance_id)? else {
        return Ok(Outcome::Rejected(Rejection::no_such_instance(
            &suspend.instance_id,
        )));
    };
    if is_terminal(record.status) || record.status() == OrchestrationStatus::Suspended {
        return Ok(Outcome::OK);
    }
    record.set_status(OrchestrationStatus::Suspended);
    record.last_updated_at = Some(ctx.now);
    let kind = EventType::ExecutionSuspended(ExecutionSuspendedEvent {
        input: suspend.reason.clone(),
    });
    tx.push_inbox(&mut record, event(ctx.now, kind));
    tx.put_instance(&record);
    Ok(Outcome::OK)
}

pub fn resume(tx: &mut Tx<'_>, ctx: &Ctx, resume: &Resume) -> Result<Outcome, Error> {
    let Some(mut record) = tx.instance(&resume.instance_id)? else {
        return Ok(Outcome::Rejected(Rejection::no_such_instance(
            &resume.instance_id,
        )));
    };
    if record.status() != OrchestrationStatus::Suspended {
        return Ok(Outcome::OK);
    }
    // An instance suspended before its first turn goes back to PENDING.
    record.set_status(if record.history_len > 0 {
        OrchestrationStatus::Running
    } else {
        OrchestrationStatus::Pending
    });
    record.last_updated_at = Some(ctx.now);
    let kind = EventType::ExecutionResumed(ExecutionResumedEvent {
        input: resume.reason.clone(),
    });
    tx.push_inbox(&mut record, event(ctx.now, kind));
    tx.put_instance(&record);
    Ok(Outcome::OK)
}
