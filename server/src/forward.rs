//! Forwarding: any node serves any request by passing it to the Raft leader's internal
//! address when it is not the leader itself. The leader proposes, reads linearizably and
//! dispatches; a forwarded call that loses its leader midway fails with UNAVAILABLE, which
//! the SDKs retry, never with a false success.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_raft::node::Node;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::grpc::wait;

/// Marks a request a node forwarded to the leader.
pub const FORWARDED_HEADER: &str = "endure-forwarded";
/// How long connecting to the leader may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Clients to the leader's internal service.
#[derive(Clone)]
pub struct Leader {
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
        let channel = self.channel(leader, &address)?;
        Ok(Some(Leader {
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
        let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| {
            Status::internal(format!("bad address {address} of node {leader}: {e}"))
        })?;
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert((leader, address.to_string()), channel.clone());
        Ok(channel)
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
