//! TerminateOrchestration: a workflow terminates another instance (usually one of its
//! children) as a client's Terminate would; an unknown or ended target is left alone.

use endure_proto::TerminateOrchestrationAction;

use crate::records::{outbox_message, OutboxMessage, TerminateRun};
use crate::view::Tx;
use crate::Error;

/// The terminate goes through the outbox to the target's shard.
pub(super) fn apply(
    tx: &mut Tx<'_>,
    terminate: &TerminateOrchestrationAction,
) -> Result<(), Error> {
    tx.send(OutboxMessage {
        target_instance_id: terminate.instance_id.clone(),
        kind: Some(outbox_message::Kind::TerminateRun(TerminateRun {
            output: terminate.reason.clone(),
            recursive: terminate.recurse,
            ..TerminateRun::default()
        })),
    })
}
