//! ScheduleTask: the history records TaskScheduled and a pending activity row is written,
//! stamped with the run, for the dispatcher to send to a worker.

use endure_proto::history_event::EventType;
use endure_proto::{OrchestratorAction, ScheduleTaskAction, TaskScheduledEvent};

use super::append_action_event;
use crate::apply::Ctx;
use crate::records::{ActivityRecord, InstanceRecord};
use crate::view::Tx;

pub(super) fn apply(
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
