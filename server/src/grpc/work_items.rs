//! `GetWorkItems`: a worker's stream of turns and activities. On the leader the stream is
//! fed by the dispatcher; on any other node it relays the leader's stream, and ends when
//! this node sees another leader (the worker reconnects, to be relayed to the new one).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use endure_proto::{GetWorkItemsRequest, WorkItem};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::dispatch::{self, WORKER_QUEUE_ITEMS};
use crate::service::{Call, Error, Workflows};

/// The stream type tonic expects for GetWorkItems.
pub type WorkItemStream = Pin<Box<dyn Stream<Item = Result<WorkItem, Status>> + Send + 'static>>;

/// Opens a worker's stream here (leader) or relayed from the leader. The SDK's concurrency
/// hints are not needed: the stream's flow control and the per-worker queue bound what a
/// worker holds.
pub async fn open(
    workflows: &Workflows,
    call: &Call,
    request: GetWorkItemsRequest,
) -> Result<WorkItemStream, Error> {
    if let Some(leader) = workflows.forward.leader_for(call)? {
        let relayed = leader
            .forward(call, request, |mut leader, request| async move {
                leader.taskhub.get_work_items(request).await
            })
            .await?;
        let relay = leader.relay(relayed).map(|item| item.map_err(Status::from));
        return Ok(Box::pin(relay));
    }
    let worker_id = workflows.next_worker_id.fetch_add(1, Ordering::Relaxed) + 1;
    let (sender, items) = mpsc::channel(WORKER_QUEUE_ITEMS);
    let dispatcher = workflows.dispatcher()?;
    dispatcher.connect(worker_id, sender).await;
    Ok(Box::pin(LocalStream {
        items,
        worker_id,
        dispatcher,
    }))
}

/// A worker's stream fed by this node's dispatcher. Dropping it (the worker went away)
/// hands what the worker held back to the dispatcher.
struct LocalStream {
    items: mpsc::Receiver<Result<WorkItem, Status>>,
    worker_id: u64,
    dispatcher: dispatch::Handle,
}

impl Stream for LocalStream {
    type Item = Result<WorkItem, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.poll_recv(cx)
    }
}

impl Drop for LocalStream {
    fn drop(&mut self) {
        self.dispatcher.disconnect(self.worker_id);
    }
}
