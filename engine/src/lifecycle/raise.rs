//! RaiseEvent: an external event goes to the instance's inbox, delivered in the next turn.
//!
//! Events are accepted while the instance waits for them or not (the SDK buffers them per
//! name), and while it is suspended, up to the inbox cap the command carries. An event for
//! a finished instance is dropped.

use endure_proto::history_event::EventType;
use endure_proto::{EventRaisedEvent, OrchestrationStatus};

use super::{event, is_terminal};
use crate::apply::{Ctx, Outcome, Rejection, RejectionCode};
use crate::records::RaiseEvent;
use crate::view::Tx;
use crate::{protocol_text, Error};

pub fn apply(tx: &mut Tx<'_>, ctx: &Ctx, raise: &RaiseEvent) -> Result<Outcome, Error> {
    let Some(mut record) = tx.instance(&raise.instance_id)? else {
        return Ok(Outcome::Rejected(Rejection::no_such_instance(
            &raise.instance_id,
        )));
    };
    if is_terminal(record.status) {
        return Ok(Outcome::OK);
    }
    if record.status() == OrchestrationStatus::Stalled {
        return Ok(Outcome::Rejected(Rejection::new(
            RejectionCode::FailedPrecondition,
            protocol_text::workflow_is_stalled(&raise.instance_id),
        )));
    }
    if raise.inbox_limit > 0 && record.inbox_len >= raise.inbox_limit {
        return Ok(Outcome::Rejected(Rejection::new(
            RejectionCode::ResourceExhausted,
            format!(
                "instance '{}' already has {} events waiting in its inbox, the most \
                 --max-inbox-events allows; retry once its workflow has taken some",
                raise.instance_id, record.inbox_len
            ),
        )));
    }
    let raised = EventRaisedEvent {
        name: raise.name.clone(),
        input: raise.input.clone(),
    };
    tx.push_inbox(&mut record, event(ctx.now, EventType::EventRaised(raised)));
    tx.put_instance(&record);
    Ok(Outcome::OK)
}
