//! OrchestratorVersionNotAvailable: the worker has no version of the workflow that fits its
//! history. The instance records ExecutionStalled(VERSION_NOT_AVAILABLE) and goes STALLED
//! until a worker that has the version answers a later turn.

use endure_proto::history_event::EventType;
use endure_proto::{ExecutionStalledEvent, OrchestrationStatus, StalledReason};

use crate::apply::Ctx;
use crate::lifecycle::event;
use crate::records::InstanceRecord;
use crate::view::Tx;

pub(super) fn apply(tx: &mut Tx<'_>, ctx: &Ctx, record: &mut InstanceRecord) {
    let stalled = ExecutionStalledEvent {
        reason: StalledReason::VersionNotAvailable.into(),
        description: Some(
            "the worker has no version of this workflow that fits its history".into(),
        ),
    };
    tx.append_history(record, event(ctx.now, EventType::ExecutionStalled(stalled)));
    record.set_status(OrchestrationStatus::Stalled);
    tx.put_instance(record);
}
