//! SendEvent: the history records EventSent and the event goes to the target's inbox as
//! EventRaised, if the target is active (an event for an unknown or ended instance is lost,
//! as in Dapr).

use endure_proto::history_event::EventType;
use endure_proto::{EventRaisedEvent, EventSentEvent, OrchestratorAction, SendEventAction};

use super::append_action_event;
use crate::apply::Ctx;
use crate::lifecycle::{event, is_terminal};
use crate::records::InstanceRecord;
use crate::view::Tx;
use crate::Error;

pub(super) fn apply(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    record: &mut InstanceRecord,
    action: &OrchestratorAction,
    send: &SendEventAction,
) -> Result<(), Error> {
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
    let kind = EventType::EventSent(sent);
    append_action_event(tx, ctx, record, action.id, kind, action.router.clone());
    tx.put_instance(record);
    deliver_event(tx, ctx, &target, &send.name, send.data.clone())
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
