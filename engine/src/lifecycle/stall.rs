//! The payload-size stall: the leader found an instance's next turn larger than a worker
//! accepts. As Dapr does, the instance records ExecutionStalled(PAYLOAD_SIZE_EXCEEDED) and
//! goes STALLED; no turn is dispatched to it any more (it would break the worker's stream
//! again and again). Terminate still ends it.

use endure_proto::history_event::EventType;
use endure_proto::{ExecutionStalledEvent, OrchestrationStatus, StalledReason};

use super::{event, is_terminal};
use crate::apply::{Ctx, Outcome, Rejection, RejectionCode};
use crate::records::StallForPayload;
use crate::view::Tx;
use crate::Error;

pub fn apply(tx: &mut Tx<'_>, ctx: &Ctx, stall: &StallForPayload) -> Result<Outcome, Error> {
    let Some(mut record) = tx.instance(&stall.instance_id)? else {
        return Ok(Outcome::Rejected(Rejection::no_such_instance(
            &stall.instance_id,
        )));
    };
    let current =
        record.execution_id == stall.execution_id && record.history_len == stall.history_len;
    if !current || is_terminal(record.status) || record.payload_stalled {
        return Ok(Outcome::Rejected(Rejection::new(
            RejectionCode::Stale,
            format!(
                "instance '{}' has moved on or is already stalled",
                stall.instance_id
            ),
        )));
    }
    let stalled = ExecutionStalledEvent {
        reason: StalledReason::PayloadSizeExceeded.into(),
        description: Some(stall.description.clone()),
    };
    tx.append_history(
        &mut record,
        event(ctx.now, EventType::ExecutionStalled(stalled)),
    );
    record.set_status(OrchestrationStatus::Stalled);
    record.payload_stalled = true;
    record.last_updated_at = Some(ctx.now);
    tx.put_instance(&record);
    Ok(Outcome::OK)
}
