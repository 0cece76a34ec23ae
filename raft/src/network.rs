//! The network between Raft nodes: openraft's RPCs over tonic, to each peer's internal
//! (`--raft-addr`) port. Log entries travel in their stored encoding ([`crate::codec`]);
//! everything else is JSON of openraft's serde types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use endure_proto::endure::internal::raft_service_client::RaftServiceClient;
use endure_proto::endure::internal::RaftMessage;
use endure_tls::Connector;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::types::{LogId, NodeId, SnapshotMeta, TypeConfig, Vote};

/// How long connecting to a peer may take before the RPC counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// AppendEntries without its entries (they travel as stored bytes).
#[derive(Serialize, Deserialize)]
pub(crate) struct AppendMeta {
    pub vote: Vote,
    pub prev_log_id: Option<LogId>,
    pub leader_commit: Option<LogId>,
}

/// InstallSnapshot without its chunk bytes.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotChunkMeta {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub done: bool,
}

/// How often an idle connection to a peer is pinged, and how long the answer may take:
/// a peer that stopped (SIGSTOP, a cut link that drops packets) is noticed in seconds and
/// its connection rebuilt, instead of RPCs queueing behind a dead TCP connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How this node reaches other nodes: by default at the address the membership records for
/// them; `--peer-route` overrides that per peer (a proxy, a NAT, the chaos suite's links).
#[derive(Clone, Debug, Default)]
pub struct Routes(std::sync::Arc<std::collections::BTreeMap<NodeId, String>>);

impl Routes {
    pub fn new(routes: std::collections::BTreeMap<NodeId, String>) -> Self {
        Routes(std::sync::Arc::new(routes))
    }

    /// The address to connect to for `node`, whose membership address is `recorded`.
    pub fn resolve<'a>(&'a self, node: NodeId, recorded: &'a str) -> &'a str {
        self.0.get(&node).map(String::as_str).unwrap_or(recorded)
    }
}

/// A lazily connecting channel to a peer's internal port, with keepalive, over
/// `connector` (plain TCP, or mutual TLS with the cluster CA).
pub fn peer_channel(
    address: &str,
    connector: &Connector,
) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector.clone()))
}

/// Metadata key of the cluster secret on every call one node makes to another's internal
/// port (Raft, forwarded calls, admin); a node started with a secret refuses calls without it.
pub const CLUSTER_SECRET_HEADER: &str = "endure-cluster-secret";

/// The cluster secret this node sends to its peers (none: the internal port is open).
/// Its `Debug` never shows the value, so it cannot reach a log line.
#[derive(Clone, Default)]
pub struct ClusterSecret(Option<MetadataValue<Ascii>>);

impl ClusterSecret {
    /// The secret to send; the server checked its characters when it read it (`auth::Token`),
    /// so this fails only on a value no metadata can carry.
    pub fn new(secret: &str) -> Result<Self, String> {
        let mut value = MetadataValue::try_from(secret)
            .map_err(|_| "the cluster secret is not a valid metadata value".to_string())?;
        value.set_sensitive(true);
        Ok(ClusterSecret(Some(value)))
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(_) => f.write_str("ClusterSecret(set)"),
            None => f.write_str("ClusterSecret(none)"),
        }
    }
}

impl Interceptor for ClusterSecret {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(secret) = &self.0 {
            request
                .metadata_mut()
                .insert(CLUSTER_SECRET_HEADER, secret.clone());
        }
        Ok(request)
    }
}

/// A channel to a peer's internal port that sends the cluster secret on every call.
pub type PeerChannel = InterceptedService<Channel, ClusterSecret>;

/// One channel per peer address, shared by every shard's Raft group on this node and by
/// its forwarding (rebuilt by tonic after failures): N shards never mean N connections to
/// a peer. Every call on them carries the cluster secret, over the cluster's TLS if set.
#[derive(Clone, Default, Debug)]
pub struct Channels {
    open: Arc<Mutex<HashMap<String, Channel>>>,
    secret: ClusterSecret,
    connector: Connector,
}

impl Channels {
    /// Channels whose calls carry `secret`, connected by `connector`.
    pub fn new(secret: ClusterSecret, connector: Connector) -> Self {
        Channels {
            open: Arc::default(),
            secret,
            connector,
        }
    }

    /// The channel to `address`, connected lazily on first use.
    pub fn get(&self, address: &str) -> Result<PeerChannel, tonic::transport::Error> {
        let mut channels = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let channel = match channels.get(address) {
            Some(channel) => channel.clone(),
            None => {
                let channel = peer_channel(address, &self.connector)?;
                channels.insert(address.to_string(), channel.clone());
                channel
            }
        };
        Ok(InterceptedService::new(channel, self.secret.clone()))
    }
}

/// Builds connections to peers for one shard's Raft group.
#[derive(Clone, Default)]
pub struct Network {
    pub routes: Routes,
    /// The shard every RPC of this group is marked with.
    pub shard: u32,
    pub channels: Channels,
}

/// One shard's client over the shared channel to one peer.
pub struct Connection {
    target: NodeId,
    shard: u32,
    client: Result<RaftServiceClient<PeerChannel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let address = self.routes.resolve(target, &node.addr);
        let client = self
            .channels
            .get(address)
            .map(|channel| RaftServiceClient::new(channel).max_decoding_message_size(usize::MAX))
            .map_err(|e| format!("bad address {address} of node {target}: {e}"));
        Connection {
            target,
            shard: self.shard,
            client,
        }
    }
}

fn unreachable<E: std::error::Error>(
    reason: impl std::fmt::Display,
) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(reason.to_string())))
}

fn network_error<E: std::error::Error>(
    reason: impl std::fmt::Display,
) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(
        reason.to_string(),
    )))
}

impl Connection {
    /// Sends one message and decodes the remote `Result<Response, RaftError<E>>`.
    async fn call<Resp, E>(
        &mut self,
        message: RaftMessage,
        option: &RPCOption,
        send: impl AsyncFnOnce(
            &mut RaftServiceClient<PeerChannel>,
            tonic::Request<RaftMessage>,
        ) -> Result<tonic::Response<RaftMessage>, tonic::Status>,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let target = self.target;
        let client = self.client.as_mut().map_err(|e| unreachable(e.clone()))?;
        let message = RaftMessage {
            shard: self.shard,
            ..message
        };
        let mut request = tonic::Request::new(message);
        request.set_timeout(option.hard_ttl());
        let reply = match send(client, request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(unreachable(format!("node {target}: {}", status.message())))
            }
            Err(status) => return Err(network_error(format!("node {target}: {status}"))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.json)
            .map_err(|e| network_error(format!("bad reply from node {target}: {e}")))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("openraft messages serialize to JSON")
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let meta = AppendMeta {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            leader_commit: rpc.leader_commit,
        };
        let mut entries = Vec::with_capacity(rpc.entries.len());
        for entry in &rpc.entries {
            entries.push(codec::encode_entry(entry).map_err(network_error)?);
        }
        let message = RaftMessage {
            json: json(&meta),
            entries,
            data: Vec::new(),
            shard: 0,
        };
        self.call(message, &option, async |client, request| {
            client.append_entries(request).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let meta = SnapshotChunkMeta {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            done: rpc.done,
        };
        let message = RaftMessage {
            json: json(&meta),
            entries: Vec::new(),
            data: rpc.data,
            shard: 0,
        };
        self.call(message, &option, async |client, request| {
            client.install_snapshot(request).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let message = RaftMessage {
            json: json(&rpc),
            entries: Vec::new(),
            data: Vec::new(),
            shard: 0,
        };
        self.call(message, &option, async |client, request| {
            client.vote(request).await
        })
        .await
    }
}
