//! TerminateOrchestration: a workflow terminates another instance (usually one of its
//! children) as a client's Terminate would; an unknown or ended target is left alone.

use endure_proto::TerminateOrchestrationAction;

use crate::apply::Ctx;
use crate::lifecycle::is_terminal;
use crate::lifecycle::terminate::terminate_instance;
use crate::view::Tx;
use crate::Error;

pub(super) fn apply(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    terminate: &TerminateOrchestrationAction,
) -> Result<(), Error> {
    let Some(target) = tx.instance(&terminate.instance_id)? else {
        return Ok(());
    };
    if is_terminal(target.status) {
        return Ok(());
    }
    let reason = terminate.reason.clone();
    terminate_instance(tx, ctx, target, reason, terminate.recurse)
}
