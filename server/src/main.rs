//! `endure`: the Endure workflow engine's binary. `endure serve` runs a node
//! ([`endure::app::App`]); `endure workflow` and `endure cluster` are its CLI
//! ([`endure::cli`]).

use anyhow::Context;
use clap::{Parser, Subcommand};
use endure::app::App;
use endure::cli;
use endure::config::{self, ServeArgs, Settings};
use tokio::sync::watch;
use tracing::info;

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
    Serve(Box<ServeArgs>),
    /// Start, inspect and steer workflows on a running node.
    Workflow(cli::WorkflowArgs),
    /// Inspect the cluster.
    Cluster(cli::ClusterArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::resolve(*args)?;
            init_logging(&settings.log_level, settings.log_format);
            abort_on_panic();
            raise_open_files_limit();
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

/// Raises the soft limit on open files to the hard one. Every client connection, worker
/// stream and peer link is a descriptor; at the usual soft default of 1,024, `accept` would
/// fail with EMFILE long before memory or CPU run out (Go's runtime does the same).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    #[allow(unsafe_code)]
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let before = limit.rlim_cur;
        // An unlimited hard limit is still capped by the kernel's nr_open.
        limit.rlim_cur = limit.rlim_max.min(1 << 20);
        before < limit.rlim_cur && libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
    };
    if raised {
        info!(open_files = limit.rlim_cur, "raised the open-files limit");
    }
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

/// Runs a node until SIGINT or SIGTERM.
async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = App::start(settings).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    app.run(shutdown_rx).await
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
