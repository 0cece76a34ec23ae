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
mod cli;
mod clock;
mod config;
mod dispatcher;
mod grpc;
mod http;
mod proposer;
mod telemetry;
mod timers;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use endure_proto::task_hub_sidecar_service_server::TaskHubSidecarServiceServer;
use endure_raft::node::{self, NodeOptions};
use tokio::sync::watch;
use tracing::info;

use crate::clock::{Clock, SystemClock};
use crate::config::{ServeArgs, Settings};

/// How long a starting node waits to become leader of its cluster.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// The transport refuses messages this many times the configured limit (tonic answers
/// OUT_OF_RANGE); below that, the service's own check answers RESOURCE_EXHAUSTED.
const TRANSPORT_CAP_FACTOR: usize = 4;
/// How long open calls get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(name = "endure", version, about = "Endure: a durable workflow engine that speaks the Dapr Workflow protocol")]
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
            let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
            runtime.block_on(serve(settings))
        }
        Command::Workflow(args) => std::process::exit(cli::run_workflow(args)),
        Command::Cluster(args) => std::process::exit(cli::run_cluster(args)),
    }
}

fn init_logging(level: &str, format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder.init(),
        config::LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let metrics_handle = telemetry::install()?;
    let options = NodeOptions { node_id: settings.node_id, raft_addr: settings.grpc_addr.to_string() };
    let node = node::start(&settings.data_dir, options).await?;
    node.raft
        .wait(Some(LEADER_WAIT))
        .current_leader(settings.node_id, "this node leads its single-voter cluster")
        .await
        .context("the node did not become leader")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let proposer = proposer::Proposer::new(node.clone(), clock.clone());
    proposer.linearizable().await.context("cannot catch up with the log")?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let telemetry_task = tokio::spawn(telemetry::run(node.clone(), metrics_handle.clone(), shutdown_rx.clone()));
    let (dispatcher, dispatcher_handle) =
        dispatcher::Dispatcher::new(node.store.clone(), clock.clone(), node.shared.subscribe());
    let dispatcher_task = tokio::spawn(dispatcher.run(shutdown_rx.clone()));
    let timer_service = timers::TimerService {
        store: node.store.clone(),
        proposer: proposer.clone(),
        clock,
        shared: node.shared.clone(),
    };
    let timer_task = tokio::spawn(timer_service.run(shutdown_rx.clone()));

    let sidecar = grpc::Sidecar {
        proposer,
        store: node.store.clone(),
        shared: node.shared.clone(),
        dispatcher: dispatcher_handle,
        shutdown: shutdown_rx.clone(),
        next_worker_id: Arc::new(AtomicU64::new(0)),
        max_message_bytes: settings.max_message_bytes,
    };
    let http_state = http::HttpState {
        sidecar: sidecar.clone(),
        node: node.clone(),
        render_metrics: Arc::new(move || metrics_handle.render()),
        max_body_bytes: settings.max_message_bytes,
    };
    let http_listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
    let http_local = http_listener.local_addr()?;
    let http_task = tokio::spawn(http::serve(http_listener, http_state, shutdown_rx.clone()));
    let admin = endure_proto::endure::internal::admin_server::AdminServer::new(admin::AdminService { node: node.clone() });
    let service = TaskHubSidecarServiceServer::new(sidecar)
        .max_decoding_message_size(settings.max_message_bytes.saturating_mul(TRANSPORT_CAP_FACTOR))
        .max_encoding_message_size(usize::MAX);
    let listener = tokio::net::TcpListener::bind(settings.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.grpc_addr))?;
    let local = listener.local_addr()?;
    info!(grpc = %local, http = %http_local, data_dir = %settings.data_dir.display(), node_id = settings.node_id, "endure serving gRPC");
    // Without TCP_NODELAY small replies wait for the peer's delayed ACK (~40 ms a step).
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |stream| {
        stream.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    let mut shutdown_signal = shutdown_rx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    let mut forced = shutdown_rx.clone();
    let server = tonic::transport::Server::builder()
        .layer(grpc::metrics_layer::GrpcMetricsLayer)
        .add_service(service)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown_signal.changed().await;
        });
    tokio::select! {
        result = server => result.context("gRPC server failed")?,
        _ = async { let _ = forced.changed().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("calls still open after the grace period; closing them");
        }
    }
    let _ = dispatcher_task.await;
    let _ = timer_task.await;
    let _ = telemetry_task.await;
    match http_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server failed"),
        Err(e) => tracing::warn!(error = %e, "HTTP server panicked"),
        Ok(Ok(())) => {}
    }
    node.raft.shutdown().await.ok();
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
