//! Forwarding: any node serves any request by passing it to the Raft leader's internal
//! address when it is not the leader itself. The leader proposes, reads linearizably and
//! dispatches; a forwarded call that loses its leader midway fails with UNAVAILABLE, which
//! the SDKs retry, never with a false success.
//!
//! A forwarded call or relayed stream ends as soon as this node sees another leader (or
//! none), and the channels to the leader carry HTTP/2 keepalive: a leader that hangs
//! (paused, cut off) does not hold the workers and clients of the other nodes with it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_raft::node::Node;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::grpc::wait;

/// Marks a request a node forwarded to the leader.
pub const FORWARDED_HEADER: &str = "endure-forwarded";

/// Clients to the leader's internal service.
#[derive(Clone)]
pub struct Leader {
    /// The node these clients reach.
    pub node_id: u64,
    pub taskhub: TaskHubSidecarServiceClient<Channel>,
    pub admin: AdminClient<Channel>,
}

/// Finds the leader and keeps one lazily connected channel per node.
#[derive(Clone)]
pub struct Forwarder {
    node: Node,
    channels: Arc<Mutex<HashMap<(u64, String), Channel>>>,
}

impl Forwarder {
    pub fn new(node: Node) -> Self {
        Forwarder {
            node,
            channels: Arc::default(),
        }
    }

    /// `None` when this node leads and serves the request itself; otherwise clients to the
    /// leader. UNAVAILABLE when no leader is known (an election is under way, or this node
    /// is cut off from the majority).
    /// As [`Forwarder::leader`], but a request that was already forwarded once is not
    /// forwarded again (two nodes that each think the other leads would bounce it).
    pub fn leader_for<T>(&self, request: &Request<T>) -> Result<Option<Leader>, Status> {
        let leader = self.leader()?;
        if leader.is_some() && request.metadata().contains_key(FORWARDED_HEADER) {
            return Err(Status::unavailable(
                "the leader changed while the request was forwarded; retry",
            ));
        }
        Ok(leader)
    }

    pub fn leader(&self) -> Result<Option<Leader>, Status> {
        let (leader, address) = {
            let metrics = self.node.raft.metrics();
            let metrics = metrics.borrow();
            let Some(leader) = metrics.current_leader else {
                return Err(Status::unavailable(
                    "no Raft leader is known right now; retry shortly",
                ));
            };
            let address = metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone());
            (leader, address)
        };
        if leader == self.node.node_id {
            return Ok(None);
        }
        let address = address.ok_or_else(|| {
            Status::unavailable(format!(
                "the leader is node {leader}, whose address is not known; retry"
            ))
        })?;
        let channel = self.channel(leader, self.node.routes.resolve(leader, &address))?;
        Ok(Some(Leader {
            node_id: leader,
            taskhub: TaskHubSidecarServiceClient::new(channel.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            admin: AdminClient::new(channel),
        }))
    }

    fn channel(&self, leader: u64, address: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().expect("lock poisoned");
        if let Some(channel) = channels.get(&(leader, address.to_string())) {
            return Ok(channel.clone());
        }
        let channel = endure_raft::network::peer_channel(address).map_err(|e| {
            Status::internal(format!("bad address {address} of node {leader}: {e}"))
        })?;
        channels.insert((leader, address.to_string()), channel.clone());
        Ok(channel)
    }
}

impl Forwarder {
    /// Runs a call forwarded to `leader`, or answers UNAVAILABLE as soon as this node sees
    /// that `leader` no longer leads (the call's outcome is then unknown to the caller).
    pub async fn while_leading<T>(
        &self,
        leader: u64,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        tokio::select! {
            result = call => result,
            () = self.leadership_moved(leader) => Err(moved(leader)),
        }
    }

    /// A stream relayed from `leader` that ends (with UNAVAILABLE, so the SDK reconnects)
    /// once this node sees that `leader` no longer leads.
    pub fn relay<S>(&self, leader: u64, stream: S) -> Relay<S> {
        let forwarder = self.clone();
        Relay {
            inner: Some(stream),
            moved: Box::pin(async move { forwarder.leadership_moved(leader).await }),
            leader,
        }
    }

    /// Returns once the known leader is no longer `leader` (another, or none).
    async fn leadership_moved(&self, leader: u64) {
        let mut metrics = self.node.raft.metrics();
        loop {
            if metrics.borrow().current_leader != Some(leader) {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }
}

fn moved(leader: u64) -> Status {
    Status::unavailable(format!(
        "node {leader} stopped leading while the call was forwarded to it: whether the call \
         took effect is unknown; retry (a retried start answers ALREADY_EXISTS if it did)"
    ))
}

/// See [`Forwarder::relay`].
pub struct Relay<S> {
    inner: Option<S>,
    moved: Pin<Box<dyn Future<Output = ()> + Send>>,
    leader: u64,
}

impl<T, S> Stream for Relay<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(item) = Pin::new(inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.moved.as_mut().poll(cx).is_ready() {
            // Dropping the relayed stream cancels it on the old leader too.
            self.inner = None;
            return Poll::Ready(Some(Err(moved(self.leader))));
        }
        Poll::Pending
    }
}

/// The request to send on to the leader: the same message and the same deadline.
pub fn forwarded<T>(request: Request<T>) -> Request<T> {
    let timeout = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(wait::parse_timeout);
    let mut forwarded = Request::new(request.into_inner());
    if let Some(timeout) = timeout {
        forwarded.set_timeout(timeout);
    }
    forwarded.metadata_mut().insert(
        FORWARDED_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    forwarded
}
