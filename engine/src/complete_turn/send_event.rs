//! SendEvent: the history records EventSent and the event goes, through the outbox, to the
//! target's inbox as EventRaised if the target is active (an event for an unknown or ended
//! instance is lost, as in Dapr).

use endure_proto::history_event::EventType;
use endure_proto::{EventSentEvent, OrchestratorAction, SendEventAction};

use super::append_action_event;
use crate::apply::Ctx;
use crate::records::{outbox_message, DeliverEvent, InstanceRecord, OutboxMessage};
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
    tx.send(OutboxMessage {
        target_instance_id: target,
        kind: Some(outbox_message::Kind::DeliverEvent(DeliverEvent {
            name: send.name.clone(),
            input: send.data.clone(),
            sent_at: Some(ctx.now),
        })),
    })
}
