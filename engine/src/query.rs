//! The client-facing view of an instance.

use endure_proto::{OrchestrationState, OrchestrationStatus};

use crate::lifecycle::is_terminal;
use crate::records::InstanceRecord;

/// `OrchestrationState` as GetInstance returns it. Inputs and outputs are included only
/// when the caller asked for them (`getInputsAndOutputs`).
pub fn state(record: &InstanceRecord, with_payloads: bool) -> OrchestrationState {
    let completed_at = if is_terminal(record.status) {
        record.last_updated_at
    } else {
        None
    };
    OrchestrationState {
        instance_id: record.instance_id.clone(),
        name: record.name.clone(),
        version: record.version.clone(),
        orchestration_status: record.status,
        scheduled_start_timestamp: record.scheduled_start,
        created_timestamp: record.created_at,
        last_updated_timestamp: record.last_updated_at,
        input: record.input.clone().filter(|_| with_payloads),
        output: record.output.clone().filter(|_| with_payloads),
        custom_status: record.custom_status.clone(),
        failure_details: record.failure_details.clone(),
        execution_id: Some(record.execution_id.clone()),
        completed_timestamp: completed_at,
        parent_instance_id: record
            .parent
            .as_ref()
            .and_then(|p| p.orchestration_instance.as_ref())
            .map(|p| p.instance_id.clone()),
        tags: record.tags.clone(),
        ..Default::default()
    }
}

/// Whether a waiting client's condition holds.
pub fn has_started(record: &InstanceRecord) -> bool {
    record.status() != OrchestrationStatus::Pending
}

/// Terminal for WaitForInstanceCompletion (a run that continued as new keeps going).
pub fn has_completed(record: &InstanceRecord) -> bool {
    is_terminal(record.status)
}
