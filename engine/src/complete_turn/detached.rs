//! CreateDetachedWorkflow: the workflow starts an instance that is not its child (no parent
//! link, no result comes back), through the outbox. An ID that is taken means it is simply
//! not started, as in Dapr.

use endure_proto::{CreateDetachedWorkflowAction, OrchestratorAction};

use crate::apply::Ctx;
use crate::lifecycle::start::NewInstance;
use crate::view::Tx;
use crate::Error;

pub(super) fn apply(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    action: &OrchestratorAction,
    detached: &CreateDetachedWorkflowAction,
) -> Result<(), Error> {
    let spec = NewInstance {
        instance_id: detached.instance_id.clone(),
        name: detached.name.clone(),
        input: detached.input.clone(),
        version: detached.version.clone(),
        scheduled_start: detached.scheduled_start_timestamp,
        tags: detached.tags.clone(),
        router: detached.router.clone(),
        trace_context: detached.parent_trace_context.clone(),
        execution_id: ctx.generated_id(action.id as u32),
        ..NewInstance::default()
    };
    tx.send(crate::outbox::start_message(spec))
}
