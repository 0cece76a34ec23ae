//! `GetWorkItems`: a worker's stream of turns and activities from every shard. A worker may
//! connect to any node: its stream merges the dispatchers of the shards this node leads
//! with one relayed stream from each other node that leads shards (that node answers for
//! the shards it leads). The stream ends (UNAVAILABLE) as soon as any shard's leader
//! changes, and the worker reconnects to a stream built for the new leaders.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use endure_proto::{GetWorkItemsRequest, WorkItem};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamMap};
use tonic::Status;

use crate::dispatch::budget::{self, Caps};
use crate::dispatch::{self, WORKER_QUEUE_ITEMS};
use crate::service::forward::Leader;
use crate::service::{Call, Error, Workflows};

/// The stream type tonic expects for GetWorkItems.
pub type WorkItemStream = Pin<Box<dyn Stream<Item = Result<WorkItem, Status>> + Send + 'static>>;

/// Opens a worker's stream. What the stream may hold unanswered is capped by
/// `--max-turns-per-worker` and `--max-activities-per-worker`, or by the SDK's own
/// `maxConcurrent*WorkItems` where it asks for fewer; the cap is split over the nodes that
/// lead the worker's shards, in proportion to the shards each leads (see
/// [`budget::share`]), and a relayed stream carries its node's share in those fields.
///
/// A call another node forwarded gets the shards this node leads (UNAVAILABLE if none);
/// a worker's own call gets every shard, and needs every shard's leader known.
pub async fn open(
    workflows: &Workflows,
    call: &Call,
    request: GetWorkItemsRequest,
) -> Result<WorkItemStream, Error> {
    // A worker's own stream counts against --max-worker-streams; the relays other nodes
    // open for their workers are bounded by those nodes' limits.
    let slot = match call.forwarded {
        true => None,
        false => Some(workflows.gates.stream()?),
    };
    let worker_id = workflows.next_worker_id.fetch_add(1, Ordering::Relaxed) + 1;
    let cap = |asked: i32, setting: usize| match usize::try_from(asked) {
        Ok(asked) if asked > 0 => asked.min(setting),
        _ => setting,
    };
    let turns = cap(
        request.max_concurrent_orchestration_work_items,
        workflows.limits.turns_per_worker,
    );
    let activities = cap(
        request.max_concurrent_activity_work_items,
        workflows.limits.activities_per_worker,
    );
    // Shards with a known leader, per leader: the split of the caps over the nodes.
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for shard in workflows.shards.iter() {
        if let Some(leader) = shard.node.leader() {
            *led.entry(leader).or_default() += 1;
        }
    }
    let led_somewhere: usize = led.values().sum();
    let share_of = |node_id: u64, cap: usize| match call.forwarded {
        // A relayed stream's caps are already this node's share.
        true => cap,
        false => budget::share(cap, led.get(&node_id).copied().unwrap_or(0), led_somewhere),
    };
    let here = workflows.shards.iter().next().map(|s| s.node.node_id);
    let local_caps = Caps::new(
        here.map_or(turns, |id| share_of(id, turns)),
        here.map_or(activities, |id| share_of(id, activities)),
        workflows.freed.clone(),
    );
    let mut sources: StreamMap<String, WorkItemStream> = StreamMap::new();
    let mut remote: BTreeMap<u64, Leader> = BTreeMap::new();
    let mut leaders = Vec::new();
    for shard in workflows.shards.iter() {
        // A shard without a leader (an election under way) gives no work yet; the stream
        // ends once it has one, and the worker's next stream takes it in.
        let known = shard.node.leader();
        leaders.push((shard.node.clone(), known));
        let Some(leader) = known else {
            continue;
        };
        if leader == shard.node.node_id {
            let (sender, items) = mpsc::channel(WORKER_QUEUE_ITEMS);
            let dispatcher = shard.dispatcher()?;
            dispatcher
                .connect(worker_id, sender, local_caps.clone())
                .await;
            let local = LocalStream {
                items,
                worker_id,
                dispatcher,
            };
            sources.insert(format!("shard {}", shard.id), Box::pin(local));
        } else if !call.forwarded {
            if let Some(leader) = shard.forward.leader()? {
                remote.entry(leader.node_id).or_insert(leader);
            }
        }
    }
    for (node_id, leader) in remote {
        let mut request = request.clone();
        let asked = |cap: usize| i32::try_from(share_of(node_id, cap)).unwrap_or(i32::MAX);
        request.max_concurrent_orchestration_work_items = asked(turns);
        request.max_concurrent_activity_work_items = asked(activities);
        let relayed = leader
            .forward(call, request, |mut leader, request| async move {
                leader.taskhub.get_work_items(request).await
            })
            .await?;
        sources.insert(format!("node {node_id}"), Box::pin(relayed));
    }
    if sources.is_empty() {
        return Err(Error::unavailable(if call.forwarded {
            "this node leads no shard right now; retry"
        } else {
            "no shard has a Raft leader this node knows right now; retry shortly"
        }));
    }
    let moved = async move {
        let waits = leaders.into_iter().map(|(node, known)| {
            Box::pin(async move {
                node.watch()
                    .wait_until(|watch| watch.leader() != known)
                    .await;
            })
        });
        let moved: Vec<_> = waits.collect();
        select_first(moved).await
    };
    Ok(Box::pin(Merged {
        sources: Some(sources),
        moved: Box::pin(moved),
        _slot: slot,
    }))
}

/// Resolves when the first of `futures` does.
async fn select_first(futures: Vec<Pin<Box<impl Future<Output = ()>>>>) {
    let mut futures = futures;
    std::future::poll_fn(|cx| {
        for future in futures.iter_mut() {
            if future.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// A worker's stream over all its sources; see the module documentation.
struct Merged {
    sources: Option<StreamMap<String, WorkItemStream>>,
    moved: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Its place under --max-worker-streams, freed when the stream is dropped.
    _slot: Option<crate::service::limits::Slot>,
}

impl Stream for Merged {
    type Item = Result<WorkItem, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(sources) = self.sources.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(sources).poll_next(cx) {
            Poll::Ready(Some((_, Ok(item)))) => return Poll::Ready(Some(Ok(item))),
            Poll::Ready(Some((source, Err(status)))) => {
                // One source failed: end the whole stream so the worker reconnects.
                self.sources = None;
                let message = format!("{source}: {}", status.message());
                return Poll::Ready(Some(Err(Status::new(status.code(), message))));
            }
            Poll::Ready(None) => {
                self.sources = None;
                return Poll::Ready(Some(Err(Status::unavailable(
                    "the shards' leaders changed; reconnect",
                ))));
            }
            Poll::Pending => {}
        }
        if self.moved.as_mut().poll(cx).is_ready() {
            // Dropping the sources disconnects from local dispatchers and cancels relays.
            self.sources = None;
            return Poll::Ready(Some(Err(Status::unavailable(
                "a shard's leader changed; reconnect to get work from the new leader",
            ))));
        }
        Poll::Pending
    }
}

/// A worker's stream fed by one of this node's dispatchers. Dropping it (the worker went
/// away) hands what the worker held back to the dispatcher.
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
