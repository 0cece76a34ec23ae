//! CreateSubOrchestration: the history records the child's creation and the child starts,
//! through the outbox, as an instance of its own pointing back at this run. A child ID held
//! by an active instance fails the child task at once instead of disturbing that instance
//! (the child's shard answers with the failure: see `outbox`).

use endure_proto::history_event::EventType;
use endure_proto::{
    CreateSubOrchestrationAction, OrchestrationInstance, OrchestratorAction, ParentInstanceInfo,
    SubOrchestrationInstanceCreatedEvent,
};

use super::append_action_event;
use crate::apply::Ctx;
use crate::lifecycle::start::NewInstance;
use crate::records::InstanceRecord;
use crate::view::Tx;
use crate::Error;

pub(super) fn apply(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    mut record: InstanceRecord,
    action: &OrchestratorAction,
    child: &CreateSubOrchestrationAction,
) -> Result<(), Error> {
    let child_id = child_instance_id(&record, action, child);
    let created = SubOrchestrationInstanceCreatedEvent {
        instance_id: child_id.clone(),
        name: child.name.clone(),
        version: child.version.clone(),
        input: child.input.clone(),
        ..Default::default()
    };
    let router = action.router.clone().or_else(|| child.router.clone());
    let kind = EventType::SubOrchestrationInstanceCreated(created);
    append_action_event(tx, ctx, &mut record, action.id, kind, router.clone());
    if !record.children.contains(&child_id) {
        record.children.push(child_id.clone());
    }
    tx.put_instance(&record);
    let spec = NewInstance {
        instance_id: child_id,
        name: child.name.clone(),
        input: child.input.clone(),
        version: child.version.clone(),
        parent: Some(parent_info(&record, action)),
        router,
        execution_id: ctx.generated_id(action.id as u32),
        ..NewInstance::default()
    };
    tx.send(crate::outbox::start_message(spec))
}

/// The child's ID: the one the workflow chose, or `<parent>:<action id in hex>`.
fn child_instance_id(
    record: &InstanceRecord,
    action: &OrchestratorAction,
    child: &CreateSubOrchestrationAction,
) -> String {
    if child.instance_id.is_empty() {
        format!("{}:{:04x}", record.instance_id, action.id)
    } else {
        child.instance_id.clone()
    }
}

/// What the child knows of its parent: this run, and the task its result answers.
fn parent_info(record: &InstanceRecord, action: &OrchestratorAction) -> ParentInstanceInfo {
    ParentInstanceInfo {
        task_scheduled_id: action.id,
        name: Some(record.name.clone()),
        version: record.version.clone(),
        orchestration_instance: Some(OrchestrationInstance {
            instance_id: record.instance_id.clone(),
            execution_id: Some(record.execution_id.clone()),
        }),
        ..Default::default()
    }
}
