//! `endure`: the Endure workflow engine.
//!
//! Modules:
//! - [`config`]: settings from flags, environment and TOML.
//! - [`clock`]: the leader's clock.
//! - [`proposer`]: stamping and proposing commands through Raft.
//! - [`dispatcher`]: sending turns and activities to workers.
//! - [`timers`]: firing due durable timers.
//! - [`grpc`]: the SDK-facing `TaskHubSidecarService`.

mod admin;
mod chaos;
mod cli;
mod clock;
mod config;
mod dispatcher;
mod forward;
mod grpc;
mod http;
mod leadership;
mod proposer;
mod replica;
mod sync;
mod telemetry;
mod timers;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use endure_proto::endure::internal::admin_server::AdminServer;
use endure_proto::endure::internal::raft_service_server::RaftServiceServer;
use endure_proto::task_hub_sidecar_service_server::TaskHubSidecarServiceServer;
use endure_raft::node::{self, NodeOptions};
use tokio::sync::watch;
use tracing::info;

use crate::clock::{LeaderClock, SystemClock};
use crate::config::{ServeArgs, Settings};

/// How long a starting node waits for a leader before it serves anyway.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// The transport refuses messages this many times the configured limit (tonic answers
/// OUT_OF_RANGE); below that, the service's own check answers RESOURCE_EXHAUSTED.
const TRANSPORT_CAP_FACTOR: usize = 4;
/// How long binding an address that is in use is retried.
const BIND_RETRY_FOR: Duration = Duration::from_secs(15);
/// How often the server pings every connection (HTTP/2 PING), and how long the answer may
/// take: a worker whose connection went silent without closing (a dead host, a cut link, a
/// stopped process) loses its stream within about the sum of the two, and what it held is
/// sent to other workers.
const CONNECTION_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const CONNECTION_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open calls get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "endure",
    version,
    about = "Endure: a durable workflow engine that speaks the Dapr Workflow protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve(ServeArgs),
    /// Start, inspect and steer workflows on a running node.
    Workflow(cli::WorkflowArgs),
    /// Inspect the cluster.
    Cluster(cli::ClusterArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::resolve(args)?;
            init_logging(&settings.log_level, settings.log_format);
            abort_on_panic();
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
            runtime.block_on(serve(settings))
        }
        Command::Workflow(args) => std::process::exit(cli::run_workflow(args)),
        Command::Cluster(args) => std::process::exit(cli::run_cluster(args)),
    }
}

/// A panic anywhere (a broken invariant, an unreadable record in a background task) stops
/// the whole process: a node must never run on with a dead dispatcher or timer service.
/// Restarting recovers from the fsynced log.
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(%info, "panic: stopping the node");
        std::process::abort();
    }));
}

fn init_logging(level: &str, format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder.init(),
        config::LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let metrics_handle = telemetry::install()?;
    let options = NodeOptions {
        node_id: settings.node_id,
        raft_addr: settings.raft_addr.to_string(),
        peers: settings.peers.clone(),
        join: settings.join,
        snapshot_every_logs: settings.snapshot_logs,
        logs_kept_after_snapshot: node::LOGS_KEPT_AFTER_SNAPSHOT.min(settings.snapshot_logs),
        routes: endure_raft::network::Routes::new(settings.peer_routes.clone()),
    };
    let node = node::start(&settings.data_dir, options).await?;
    let clock = Arc::new(LeaderClock::new(SystemClock));
    let proposer = proposer::Proposer::new(node.clone(), clock.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let slot = Arc::new(std::sync::RwLock::new(None));
    let leadership = leadership::Leadership {
        node: node.clone(),
        proposer: proposer.clone(),
        clock,
        slot: slot.clone(),
        max_turn_bytes: settings.max_message_bytes,
    };
    tokio::spawn(exit_when_raft_stops(node.clone(), shutdown_rx.clone()));
    let mut tasks = vec![
        tokio::spawn(leadership.run(shutdown_rx.clone())),
        tokio::spawn(telemetry::run(
            node.clone(),
            metrics_handle.clone(),
            shutdown_rx.clone(),
        )),
    ];
    let sidecar = grpc::Sidecar {
        proposer,
        store: node.store.clone(),
        shared: node.shared.clone(),
        dispatcher: slot,
        forward: forward::Forwarder::new(node.clone()),
        shutdown: shutdown_rx.clone(),
        next_worker_id: Arc::new(AtomicU64::new(0)),
        max_message_bytes: settings.max_message_bytes,
    };
    let membership_lock = Arc::new(tokio::sync::Mutex::new(()));
    // Peers must reach this node's Raft service before any leader can be elected.
    if settings.serve_internal {
        let internal = bind(settings.raft_addr).await?;
        tasks.push(tokio::spawn(serve_grpc(
            internal,
            settings.max_message_bytes,
            node.clone(),
            sidecar.clone(),
            membership_lock.clone(),
            true,
            shutdown_rx.clone(),
        )));
    }
    wait_for_leader(&node, &sidecar).await;
    let http_state = http::HttpState {
        sidecar: sidecar.clone(),
        node: node.clone(),
        render_metrics: Arc::new(move || metrics_handle.render()),
        max_body_bytes: settings.max_message_bytes,
    };
    let http_listener = bind(settings.http_addr).await?;
    let http_local = http_listener.local_addr()?;
    let http_task = tokio::spawn(http::serve(http_listener, http_state, shutdown_rx.clone()));
    let public = bind(settings.grpc_addr).await?;
    info!(grpc = %public.local_addr()?, http = %http_local, raft = %settings.raft_addr,
        data_dir = %settings.data_dir.display(), node_id = settings.node_id, "endure serving gRPC");
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    serve_grpc(
        public,
        settings.max_message_bytes,
        node.clone(),
        sidecar.clone(),
        membership_lock,
        false,
        shutdown_rx,
    )
    .await;
    for task in tasks {
        let _ = task.await;
    }
    match http_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server failed"),
        Err(e) => tracing::warn!(error = %e, "HTTP server panicked"),
        Ok(Ok(())) => {}
    }
    node.raft.shutdown().await.ok();
    info!("stopped");
    Ok(())
}

/// Raft stops on its own only after a storage failure (a failed fsync, a full disk): the
/// node must not run on, answering UNAVAILABLE for ever. It exits with an error instead;
/// a restart recovers from what was synced (an fsync is never retried, DESIGN §7).
async fn exit_when_raft_stops(node: endure_raft::node::Node, shutdown: watch::Receiver<bool>) {
    let mut metrics = node.raft.metrics();
    loop {
        let stopped = metrics.borrow().state == openraft::ServerState::Shutdown;
        if stopped || metrics.changed().await.is_err() {
            break;
        }
    }
    if *shutdown.borrow() {
        return;
    }
    let error = node.raft.metrics().borrow().running_state.clone().err();
    tracing::error!(error = ?error, "raft stopped after a storage failure; exiting");
    std::process::exit(70);
}

/// Binds a listener. An address in use is retried for a while: right after a crash, a
/// port in the ephemeral range (Dapr's 50001 is) can be held briefly by another socket.
async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let started = tokio::time::Instant::now();
    loop {
        match tokio::net::TcpListener::bind(addr).await {
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

/// Waits (bounded) until this node serves as leader or knows another leader, so that the
/// first clients are not refused while an election runs. Serves anyway after the bound.
async fn wait_for_leader(node: &endure_raft::node::Node, sidecar: &grpc::Sidecar) {
    let started = tokio::time::Instant::now();
    while started.elapsed() < LEADER_WAIT {
        let leader = node.raft.metrics().borrow().current_leader;
        match leader {
            Some(id) if id != node.node_id => return,
            Some(_) if sidecar.dispatcher().is_ok() => return,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    tracing::warn!("no Raft leader after {LEADER_WAIT:?}; serving anyway (requests get UNAVAILABLE until one is elected)");
}

/// Serves gRPC on `listener` until shutdown: the SDK-facing service and Admin, plus the
/// Raft service on the internal listener.
async fn serve_grpc(
    listener: tokio::net::TcpListener,
    max_message_bytes: usize,
    node: endure_raft::node::Node,
    sidecar: grpc::Sidecar,
    membership_lock: Arc<tokio::sync::Mutex<()>>,
    internal: bool,
    shutdown: watch::Receiver<bool>,
) {
    let raft_handle = node.raft.clone();
    let admin = AdminServer::new(admin::AdminService {
        node,
        sidecar: sidecar.clone(),
        membership_lock,
    });
    let service = TaskHubSidecarServiceServer::new(sidecar)
        .max_decoding_message_size(max_message_bytes.saturating_mul(TRANSPORT_CAP_FACTOR))
        .max_encoding_message_size(usize::MAX);
    let raft = internal.then(|| {
        RaftServiceServer::new(endure_raft::rpc::RaftRpc { raft: raft_handle })
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    });
    // Without TCP_NODELAY small replies wait for the peer's delayed ACK (~40 ms a step).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |stream| {
            stream.inspect(|stream| {
                let _ = stream.set_nodelay(true);
            })
        },
    );
    let mut signal = shutdown.clone();
    let mut forced = shutdown;
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(CONNECTION_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(CONNECTION_KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(CONNECTION_KEEPALIVE_INTERVAL))
        .layer(grpc::metrics_layer::GrpcMetricsLayer)
        .add_service(service)
        .add_service(admin)
        .add_optional_service(raft)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = signal.changed().await;
        });
    tokio::select! {
        result = server => if let Err(e) = result { tracing::error!(error = %e, "gRPC server failed") },
        _ = async { let _ = forced.changed().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("calls still open after the grace period; closing them");
        }
    }
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
