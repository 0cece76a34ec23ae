//! The worker side of the protocol: the `GetWorkItems` stream and the completion RPCs.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use endure_engine::records::command::Kind;
use endure_proto::{ActivityResponse, GetWorkItemsRequest, OrchestratorResponse, WorkItem};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;
use tracing::debug;

use super::status::check;
use super::Sidecar;
use crate::dispatcher::{self, WORKER_QUEUE_ITEMS};

/// A worker's stream of work items. Dropping it (the worker went away) hands what the
/// worker held back to the dispatcher.
pub struct WorkStream {
    items: mpsc::Receiver<Result<WorkItem, Status>>,
    worker_id: u64,
    dispatcher: dispatcher::Handle,
}

impl Stream for WorkStream {
    type Item = Result<WorkItem, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.poll_recv(cx)
    }
}

impl Drop for WorkStream {
    fn drop(&mut self) {
        self.dispatcher.disconnect(self.worker_id);
    }
}

/// Registers a worker; the SDK's concurrency hints are not needed (the stream's flow
/// control and the per-worker queue bound what a worker holds).
pub async fn open_stream(
    sidecar: &Sidecar,
    _request: GetWorkItemsRequest,
) -> Result<WorkStream, Status> {
    let worker_id = sidecar.next_worker_id.fetch_add(1, Ordering::Relaxed) + 1;
    let (sender, items) = mpsc::channel(WORKER_QUEUE_ITEMS);
    let dispatcher = sidecar.dispatcher()?;
    dispatcher.connect(worker_id, sender).await;
    Ok(WorkStream {
        items,
        worker_id,
        dispatcher,
    })
}

/// Records a worker's answer to a turn.
#[tracing::instrument(level = "debug", skip_all, fields(instance_id = %response.instance_id))]
pub async fn complete_turn(
    sidecar: &Sidecar,
    response: OrchestratorResponse,
) -> Result<(), Status> {
    let instance_id = response.instance_id.clone();
    let token = response.completion_token.clone();
    let command = sidecar
        .dispatcher()?
        .resolve_turn(response)
        .await
        .map_err(|reason| stale("turn", reason))?;
    // In its own task: if the caller goes away mid-proposal, the dispatcher still learns
    // the outcome (otherwise the turn would stay "completing" and never be sent again).
    let proposer = sidecar.proposer.clone();
    let dispatcher = sidecar.dispatcher().ok();
    let done_id = instance_id.clone();
    let result = tokio::spawn(async move {
        let result = proposer.propose(Kind::CompleteTurn(command)).await;
        if let Some(dispatcher) = dispatcher {
            dispatcher.turn_done(done_id, token).await;
        }
        result
    })
    .await
    .map_err(|e| Status::internal(format!("completing the turn failed: {e}")))?;
    if let Err(status) = check(result) {
        if status.code() == tonic::Code::NotFound {
            metrics::counter!("endure_stale_completions_total", "kind" => "turn").increment(1);
        }
        debug!(instance_id, error = %status.message(), "turn completion refused");
        return Err(status);
    }
    Ok(())
}

/// Records an activity's result.
#[tracing::instrument(level = "debug", skip_all, fields(instance_id = %response.instance_id, task_id = response.task_id))]
pub async fn complete_activity(
    sidecar: &Sidecar,
    response: ActivityResponse,
) -> Result<(), Status> {
    let instance_id = response.instance_id.clone();
    let task_id = response.task_id;
    let dispatcher = sidecar.dispatcher()?;
    let command = dispatcher
        .resolve_activity(response)
        .await
        .map_err(|reason| stale("activity", reason))?;
    let result = sidecar
        .proposer
        .propose(Kind::CompleteActivity(command))
        .await;
    dispatcher.activity_done(instance_id, task_id).await;
    check(result).map(|_| ()).inspect_err(|status| {
        if status.code() == tonic::Code::NotFound {
            metrics::counter!("endure_stale_completions_total", "kind" => "activity").increment(1);
        }
    })
}

/// An answer that matches nothing in flight: counted, and refused with the text the SDKs
/// recognise as benign.
fn stale(kind: &'static str, reason: String) -> Status {
    metrics::counter!("endure_stale_completions_total", "kind" => kind).increment(1);
    Status::not_found(reason)
}
