//! CompleteOrchestration: the workflow's completion action finishes the run with the status
//! the worker chose, or, for CONTINUED_AS_NEW, replaces the run with a new one.

use endure_proto::{CompleteOrchestrationAction, OrchestrationStatus, OrchestratorAction};

use super::continue_as_new;
use crate::apply::Ctx;
use crate::lifecycle::{finish_run, Ending};
use crate::records::InstanceRecord;
use crate::view::Tx;
use crate::Error;

pub(super) fn apply(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    mut record: InstanceRecord,
    action: &OrchestratorAction,
    complete: &CompleteOrchestrationAction,
) -> Result<(), Error> {
    // An unknown status from the worker ends the run as FAILED.
    let status = OrchestrationStatus::try_from(complete.orchestration_status)
        .unwrap_or(OrchestrationStatus::Failed);
    if status == OrchestrationStatus::ContinuedAsNew {
        return continue_as_new::apply(tx, ctx, record, complete);
    }
    let ending = Ending {
        status,
        output: complete.result.clone(),
        failure: complete.failure_details.clone(),
        event_id: action.id,
    };
    finish_run(tx, ctx, &mut record, ending)
}
