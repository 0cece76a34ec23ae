//! The node, wired: binds every listener at once, opens the Raft node, and runs the
//! components until shutdown. Wiring only; each component lives in its own module.
//!
//! Every port opens before anything else happens, so `/healthz` answers at once and a
//! script that starts nodes one by one can wait for each port. Until the node can serve
//! (a leader is known and, on the leader, its services run), `/readyz` answers 503 with the
//! reason and workflow calls answer UNAVAILABLE, which the SDKs retry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use endure_raft::network::{Channels, ClusterSecret, CLUSTER_SECRET_HEADER};
use endure_raft::node::{self, Node, NodeOptions};
use endure_tls::{ClientTls, Connector, Reload, ServerTls};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::auth::{GrpcAuthLayer, API_TOKEN_HEADER};
use crate::cluster::clock::{LeaderClock, SystemClock};
use crate::cluster::leadership::{self, Leadership};
use crate::cluster::membership::Membership;
use crate::cluster::placement;
use crate::cluster::proposer::Proposer;
use crate::cluster::shards::{Shard, Shards};
use crate::config::Settings;
use crate::grpc::admin::AdminService;
use crate::grpc::taskhub::TaskHub;
use crate::service::forward::Forwarder;
use crate::service::{self, Workflows};
use crate::{dispatch, grpc, http, telemetry};

/// How long binding an address that is in use is retried.
const BIND_RETRY_FOR: Duration = Duration::from_secs(15);

/// The addresses a started node listens on (the real ports when `:0` was asked for).
#[derive(Clone, Copy, Debug)]
pub struct Addresses {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The internal (Raft) address, when this node serves one.
    pub raft: Option<SocketAddr>,
}

/// A node with its listeners bound and its Raft node open, ready to [`App::run`].
pub struct App {
    settings: Settings,
    /// Every shard's Raft node, in shard order.
    nodes: Vec<Node>,
    grpc: TcpListener,
    http: TcpListener,
    internal: Option<TcpListener>,
    addresses: Addresses,
    /// Connections to peers, shared by Raft and forwarding, sending the cluster secret.
    channels: Channels,
    tls: Tls,
}

/// The TLS of each listener and of the connections to peers, loaded before anything
/// starts (a bad file stops the node with its name) and reloaded while it runs.
#[derive(Default)]
struct Tls {
    /// The gRPC and HTTP ports (one certificate).
    client_ports: Option<Arc<ServerTls>>,
    internal: Option<Arc<ServerTls>>,
    reloadable: Vec<Arc<dyn Reload>>,
    /// SIGHUP, taken over at load so it never ends a node with TLS files.
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Tls {
    fn load(settings: &Settings) -> anyhow::Result<(Tls, Connector)> {
        let mut tls = Tls::default();
        let mut connector = Connector::plain();
        if let Some(ports) = &settings.tls {
            let server = ServerTls::load(
                "client ports' certificate",
                ports.pair.clone(),
                ports.client_ca.clone(),
                &[b"h2", b"http/1.1"],
            )?;
            tls.reloadable.push(server.clone());
            tls.client_ports = Some(server);
        }
        if let Some(cluster) = &settings.cluster_tls {
            let server = ServerTls::load(
                "internal port's certificate",
                cluster.pair.clone(),
                Some(cluster.ca.clone()),
                &[b"h2"],
            )?;
            let client = ClientTls::load(
                "certificate shown to peers",
                cluster.ca.clone(),
                Some(cluster.pair.clone()),
            )?;
            tls.reloadable.push(server.clone());
            tls.reloadable.push(client.clone());
            tls.internal = Some(server);
            connector = Connector::tls(client);
        }
        if !tls.reloadable.is_empty() {
            tls.hangup = endure_tls::hangups();
        }
        Ok((tls, connector))
    }
}

impl App {
    /// Binds the listeners, then opens the data directory and starts Raft.
    pub async fn start(settings: Settings) -> anyhow::Result<App> {
        let grpc = bind(settings.grpc_addr).await?;
        let http = bind(settings.http_addr).await?;
        let internal = match settings.serve_internal {
            true => Some(bind(settings.raft_addr).await?),
            false => None,
        };
        let addresses = Addresses {
            grpc: grpc.local_addr()?,
            http: http.local_addr()?,
            raft: internal.as_ref().map(TcpListener::local_addr).transpose()?,
        };
        let (tls, connector) = Tls::load(&settings)?;
        let secret = match &settings.cluster_secret {
            Some(token) => ClusterSecret::new(token.expose()).map_err(anyhow::Error::msg)?,
            None => ClusterSecret::default(),
        };
        let channels = Channels::new(secret, connector);
        let options = NodeOptions {
            node_id: settings.node_id,
            raft_addr: addresses.raft.unwrap_or(settings.raft_addr).to_string(),
            peers: settings.peers.clone(),
            join: settings.join,
            snapshot_every_logs: settings.snapshot_logs,
            logs_kept_after_snapshot: node::LOGS_KEPT_AFTER_SNAPSHOT.min(settings.snapshot_logs),
            routes: endure_raft::network::Routes::new(settings.peer_routes.clone()),
            shards: settings.shards,
            shards_explicit: settings.shards_explicit,
            channels: channels.clone(),
        };
        let probe = endure_raft::probe::AdminStatusProbe {
            channels: channels.clone(),
        };
        let nodes = node::start(&settings.data_dir, options, &probe).await?;
        Ok(App {
            settings,
            nodes,
            grpc,
            http,
            internal,
            addresses,
            channels,
            tls,
        })
    }

    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// Runs every component until `shutdown` turns true, then stops Raft.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let App {
            settings,
            nodes,
            grpc,
            http,
            internal,
            addresses,
            channels,
            tls,
        } = self;
        let metrics_handle = telemetry::install()?;
        let mut shards = Vec::new();
        let mut leaderships = Vec::new();
        let limits = settings.limits;
        let freed = Arc::new(tokio::sync::Notify::new());
        let node_caps = dispatch::budget::Caps::new(
            limits.turns_in_flight,
            limits.activities_in_flight,
            freed.clone(),
        );
        let dispatch_settings = dispatch::Settings {
            max_turn_bytes: settings.max_message_bytes,
            max_history_events: limits.history_events,
            turn_redelivery: limits.turn_timeout,
            activity_redelivery: limits.activity_timeout,
        };
        for node in &nodes {
            // Each shard's leader keeps its own time line.
            let clock = Arc::new(LeaderClock::new(SystemClock));
            let proposer = Proposer::new(node.clone(), clock.clone());
            let (leadership, leading) = Leadership::new(leadership::Options {
                node: node.clone(),
                proposer: proposer.clone(),
                clock,
                dispatch: dispatch_settings.clone(),
                node_caps: node_caps.clone(),
                freed: freed.clone(),
                channels: channels.clone(),
            });
            leaderships.push(leadership);
            shards.push(Shard {
                id: node.shard,
                node: node.clone(),
                proposer,
                forward: Forwarder::new(node.clone(), channels.clone()),
                leading,
            });
        }
        let shards = Shards::new(shards);
        let workflows = Workflows::new(service::Options {
            shards: shards.clone(),
            max_message_bytes: settings.max_message_bytes,
            shutdown: shutdown.clone(),
            limits,
            freed,
        });
        let membership = Membership::new(shards.clone(), channels.clone());
        let services = |rafts: Option<Arc<Vec<endure_raft::types::Raft>>>,
                        auth,
                        tls,
                        admin_token| grpc::Services {
            taskhub: TaskHub {
                workflows: workflows.clone(),
            },
            admin: AdminService {
                shards: shards.clone(),
                workflows: workflows.clone(),
                membership: membership.clone(),
                admin_token,
            },
            rafts,
            max_message_bytes: settings.max_message_bytes,
            auth,
            tls,
        };
        let render = metrics_handle.clone();
        let http_state = http::HttpState {
            workflows: workflows.clone(),
            shards: shards.clone(),
            render_metrics: Arc::new(move || render.render()),
            max_body_bytes: settings.max_message_bytes,
            api_token: settings.api_token.clone(),
            metrics_token: settings.metrics_token.clone(),
        };
        let mut tasks = Vec::new();
        for (leadership, node) in leaderships.into_iter().zip(&nodes) {
            tokio::spawn(exit_when_raft_stops(node.clone(), shutdown.clone()));
            tasks.push(tokio::spawn(
                leadership.run(shards.clone(), shutdown.clone()),
            ));
            tasks.push(tokio::spawn(telemetry::run(
                node.clone(),
                metrics_handle.clone(),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(placement::run(
            shards.clone(),
            channels.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(grpc::serve(
            grpc,
            services(
                None,
                GrpcAuthLayer::new(API_TOKEN_HEADER, settings.api_token.clone()),
                tls.client_ports.clone(),
                settings.admin_token.clone(),
            ),
            shutdown.clone(),
        )));
        if let Some(internal) = internal {
            let raft = Some(Arc::new(
                nodes.iter().map(|node| node.raft.clone()).collect(),
            ));
            tasks.push(tokio::spawn(grpc::serve(
                internal,
                services(
                    raft,
                    GrpcAuthLayer::new(CLUSTER_SECRET_HEADER, settings.cluster_secret.clone()),
                    tls.internal.clone(),
                    None,
                ),
                shutdown.clone(),
            )));
        }
        let http_task = tokio::spawn(http::serve(
            http,
            http_state,
            tls.client_ports.clone(),
            shutdown.clone(),
        ));
        tasks.push(tokio::spawn(endure_tls::watch(
            tls.reloadable,
            tls.hangup,
            shutdown.clone(),
        )));
        info!(grpc = %addresses.grpc, http = %addresses.http, raft = ?addresses.raft,
            data_dir = %settings.data_dir.display(), node_id = settings.node_id,
            tls = settings.tls.is_some(), cluster_tls = settings.cluster_tls.is_some(),
            "endure listening");
        for task in tasks {
            let _ = task.await;
        }
        match http_task.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server failed"),
            Err(e) => tracing::warn!(error = %e, "HTTP server panicked"),
            Ok(Ok(())) => {}
        }
        for node in &nodes {
            node.raft.shutdown().await.ok();
        }
        info!("stopped");
        Ok(())
    }
}

/// Raft stops on its own only after a storage failure (a failed fsync, a full disk): the
/// node must not run on, answering UNAVAILABLE for ever. It exits with an error instead;
/// a restart recovers from what was synced (an fsync is never retried, DESIGN §7).
async fn exit_when_raft_stops(node: Node, shutdown: watch::Receiver<bool>) {
    let mut watch = node.watch();
    watch.stopped().await;
    if *shutdown.borrow() {
        return;
    }
    let error = watch.fatal_error();
    tracing::error!(error = ?error, "raft stopped after a storage failure; exiting");
    std::process::exit(70);
}

/// Binds a listener. An address in use is retried for a while: right after a crash, a
/// port in the ephemeral range (Dapr's 50001 is) can be held briefly by another socket.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let started = tokio::time::Instant::now();
    loop {
        match TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < BIND_RETRY_FOR =>
            {
                tracing::warn!(%addr, "address in use; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            result => return result.with_context(|| format!("cannot listen on {addr}")),
        }
    }
}
