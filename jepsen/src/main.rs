//! `endure-chaos`: run a chaos test against a real Endure cluster, re-check a stored run,
//! or list what it can do. The work is in the library; this is the command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use endure_chaos::{nemesis, net, run, workload};

#[derive(Parser)]
#[command(
    name = "endure-chaos",
    about = "Jepsen-style chaos tests for an Endure cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster, run workloads under faults, heal, check, report.
    Run(run::RunArgs),
    /// Re-check a stored run (history.jsonl, final_state.json, witness.jsonl).
    Check { dir: PathBuf },
    /// Name the nemeses, network backends and workloads.
    List,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build();
            let command: Vec<String> = std::env::args().collect();
            runtime
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(run::run(args, command)))
        }
        Command::Check { dir } => endure_chaos::check::check(&dir),
        Command::List => {
            list();
            Ok(0)
        }
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            endure_chaos::cluster::kill_recorded_pids();
            endure_chaos::net::netns::teardown_recorded();
            eprintln!("endure-chaos: {error:#}");
            std::process::exit(2);
        }
    }
}

fn list() {
    println!("nemeses (--nemesis, comma list or `all`):");
    for (name, what) in nemesis::DESCRIPTIONS {
        println!("  {name:<10} {what}");
    }
    println!("network backends (--net):");
    for (name, what) in net::DESCRIPTIONS {
        println!("  {name:<10} {what}");
    }
    println!("workloads (always all, mixed by the clients):");
    for (name, what) in workload::DESCRIPTIONS {
        println!("  {name:<10} {what}");
    }
}
