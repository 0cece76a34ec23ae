//! The client CLI (being written): `endure workflow ...` and `endure cluster ...`.

use clap::Args;

/// `endure workflow ...`
#[derive(Args, Debug)]
pub struct WorkflowArgs {}

/// `endure cluster ...`
#[derive(Args, Debug)]
pub struct ClusterArgs {}

/// Runs a workflow subcommand; returns the process exit code.
pub fn run_workflow(_args: WorkflowArgs) -> i32 {
    eprintln!("not available yet");
    2
}

/// Runs a cluster subcommand; returns the process exit code.
pub fn run_cluster(_args: ClusterArgs) -> i32 {
    eprintln!("not available yet");
    2
}
