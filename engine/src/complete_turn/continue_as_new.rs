//! Continue-as-new: the run ends and a new run of the same instance starts at once with
//! a new execution ID, an empty history, the new input, the carried-over events and every
//! inbox event the old run did not consume.

use endure_proto::history_event::EventType;
use endure_proto::{CompleteOrchestrationAction, HistoryEvent, OrchestrationStatus};

use crate::apply::Ctx;
use crate::lifecycle::event;
use crate::lifecycle::start::{execution_started, NewInstance};
use crate::records::InstanceRecord;
use crate::view::Tx;
use crate::Error;

/// Replaces the run. The new run's ExecutionStarted, then the carryover events, then the
/// unconsumed inbox form the next turn's newEvents (pastEvents is empty).
pub(super) fn apply(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    mut record: InstanceRecord,
    complete: &CompleteOrchestrationAction,
) -> Result<(), Error> {
    let leftover: Vec<HistoryEvent> = tx
        .inbox(&record.instance_id)?
        .into_iter()
        .map(|(_, event)| event)
        .collect();
    for (seq, _) in tx.inbox(&record.instance_id)? {
        tx.delete_inbox(&mut record, seq);
    }
    tx.clear_run(&record)?;
    record.timers.clear();
    record.children.clear();
    record.history_len = 0;
    record.execution_id = ctx.generated_id(u32::MAX);
    record.input = complete.result.clone();
    record.output = None;
    record.failure_details = None;
    if let Some(version) = &complete.new_version {
        record.version = Some(version.clone());
    }
    record.set_status(OrchestrationStatus::Running);
    record.last_updated_at = Some(ctx.now);
    let spec = NewInstance {
        instance_id: record.instance_id.clone(),
        name: record.name.clone(),
        input: record.input.clone(),
        version: record.version.clone(),
        tags: record.tags.clone(),
        parent: record.parent.clone(),
        router: record.router.clone(),
        execution_id: record.execution_id.clone(),
        ..NewInstance::default()
    };
    let mut started = event(
        ctx.now,
        EventType::ExecutionStarted(execution_started(&spec)),
    );
    started.router = record.router.clone();
    tx.push_inbox(&mut record, started);
    for carried in complete.carryover_events.iter().chain(leftover.iter()) {
        tx.push_inbox(&mut record, carried.clone());
    }
    tx.put_instance(&record);
    Ok(())
}
