//! CreateTimer: the history records TimerCreated and a durable timer is armed for the run
//! (`timer_id = action.id`); the timer service fires it when due.

use endure_proto::history_event::EventType;
use endure_proto::{CreateTimerAction, OrchestratorAction, TimerCreatedEvent};

use super::append_action_event;
use crate::apply::Ctx;
use crate::records::{InstanceRecord, TimerKey};
use crate::view::Tx;

pub(super) fn apply(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    record: &mut InstanceRecord,
    action: &OrchestratorAction,
    timer: &CreateTimerAction,
) {
    let created = TimerCreatedEvent {
        fire_at: timer.fire_at,
        name: timer.name.clone(),
        origin: timer.origin.clone().map(Into::into),
        ..Default::default()
    };
    append_action_event(
        tx,
        ctx,
        record,
        action.id,
        EventType::TimerCreated(created),
        action.router.clone(),
    );
    let key = TimerKey {
        fire_at: Some(timer.fire_at.unwrap_or_default()),
        instance_id: record.instance_id.clone(),
        timer_id: action.id,
    };
    tx.put_timer(record, key);
    tx.put_instance(record);
}
