//! The phases of `endure-chaos run`: start the proxies and the cluster, run workers,
//! clients, the sampler and the nemeses for the time limit, heal, let the clients finish,
//! drain, probe new starts, read every replica, check and report. And `endure-chaos check`,
//! which repeats only the last two on a stored run ([`crate::check`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::cluster::{self, Cluster, Options, Ports, READY_TIMEOUT};
use crate::final_state;
use crate::history::Op;
use crate::nemesis::{self, clock::ChaosSupport, disk, heal, Faults, Profile};
use crate::net::{self, Backend, Net};
use crate::recorder::{read_jsonl, Recorder, Witness};
use crate::report::RunInfo;
use crate::sampler;
use crate::state::FinalState;
use crate::workload::client::{Client, Env as ClientEnv};
use crate::workload::{worker, Known, Phase};

/// Flags of `endure-chaos run`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct RunArgs {
    /// Comma list of nemeses (`all`, `none`, or any of `endure-chaos list`).
    #[arg(long, default_value = "kill")]
    pub nemesis: String,
    /// Seconds of workload and faults before the heal.
    #[arg(long, default_value_t = 60)]
    pub time_limit: u64,
    /// Client operations per second, over all clients.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Number of logical clients (spread over the nodes).
    #[arg(long, default_value_t = 6)]
    pub concurrency: usize,
    /// Seed of every random choice (random when absent; printed and stored).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Run directory (created; a previous run in it is replaced).
    #[arg(long, default_value = "/tmp/endure-chaos")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Profile::Safe)]
    pub profile: Profile,
    /// The `endure` server binary (default: $HOME/.cache/endure-target/release/endure).
    #[arg(long)]
    pub endure_bin: Option<PathBuf>,
    /// First port of a fixed port range (default: free ports picked by the OS).
    #[arg(long)]
    pub base_port: Option<u16>,
    /// `--snapshot-logs` of every node (small, so that snapshots happen).
    #[arg(long, default_value_t = 200)]
    pub snapshot_logs: u64,
    /// Seconds to wait after the heal for every acknowledged instance to be terminal.
    #[arg(long, default_value_t = 120)]
    pub drain_limit: u64,
    /// How partitions are made: per-link TCP proxies, or network namespaces with nft
    /// rules (root only).
    #[arg(long, value_enum, default_value_t = Backend::Proxy)]
    pub net: Backend,
}

fn default_bin() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/endure-target/release/endure")
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Empties the run directory, which must be new or hold a previous run.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let previous = dir.join("history.jsonl").exists() || dir.join("nodes").exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        anyhow::ensure!(
            previous || empty,
            "{} exists and is not a chaos run directory",
            dir.display()
        );
        if let Ok(slots) = std::fs::read_dir(dir.join("nodes")) {
            for slot in slots.flatten() {
                disk::unmount(&slot.path().join("disk"));
            }
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Everything the run phases share.
struct Run {
    args: RunArgs,
    info: RunInfo,
    kinds: Vec<String>,
    cluster: Arc<Cluster>,
    net: Arc<Net>,
    recorder: Arc<Recorder>,
    witness: Arc<Witness>,
    faults: Arc<Faults>,
    tmpfs: bool,
}

/// `endure-chaos run`; returns the exit code.
pub async fn run(args: RunArgs, command: Vec<String>) -> anyhow::Result<i32> {
    cluster::install_panic_hook();
    let kinds = nemesis::parse_list(&args.nemesis)?;
    anyhow::ensure!(
        args.nodes >= 1 && args.concurrency >= 1 && args.rate > 0.0,
        "bad sizes"
    );
    prepare_dir(&args.out)?;
    let seed = args
        .seed
        .unwrap_or_else(|| crate::recorder::wall_ns() as u64);
    let info = RunInfo {
        seed,
        git_revision: git_revision(),
        command,
        flags: serde_json::to_value(&args)?,
        ..Default::default()
    };
    println!(
        "endure-chaos run: seed {seed}, nemesis {:?}, dir {}",
        kinds,
        args.out.display()
    );
    let mut run = setup(args, info, kinds).await?;
    println!("network: {:?}", run.net.backend());
    let cleanup = run.cluster.clone();
    let out = run.args.out.clone();
    let tmpfs = run.tmpfs;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        let signalled = tokio::select! {
            interrupt = tokio::signal::ctrl_c() => interrupt.is_ok(),
            term = terminate.recv() => term.is_some(),
        };
        if signalled {
            eprintln!("interrupted: killing the cluster");
            cleanup.kill_all_now();
            net::netns::teardown_recorded();
            if tmpfs {
                unmount_all(&out, cleanup.len());
            }
            std::process::exit(130);
        }
    });
    let state = phases(&mut run).await;
    run.cluster.kill_all_now();
    net::netns::teardown_recorded();
    if run.tmpfs {
        unmount_all(&run.args.out, run.cluster.len());
    }
    crate::check::finish(&run.args.out, run.info, state)
}

fn unmount_all(dir: &Path, nodes: usize) {
    for slot in 0..nodes {
        disk::unmount(
            &dir.join("nodes")
                .join(format!("n{}", slot + 1))
                .join("disk"),
        );
    }
}

async fn setup(args: RunArgs, mut info: RunInfo, kinds: Vec<String>) -> anyhow::Result<Run> {
    let bin = args.endure_bin.clone().unwrap_or_else(default_bin);
    anyhow::ensure!(
        bin.exists(),
        "no server binary at {} (use --endure-bin)",
        bin.display()
    );
    let peer_route = cluster::server_has_flag(&bin, "--peer-route");
    if !peer_route && args.net == Backend::Proxy {
        info.notes.push(
            "server has no --peer-route: raft links bypass the proxies; partitions are skipped"
                .into(),
        );
    }
    let n = args.nodes;
    let real = cluster::pick_ports(3 * n, args.base_port)?;
    let raft: Vec<u16> = (0..n).map(|i| real[3 * i + 2]).collect();
    let grpc: Vec<u16> = (0..n).map(|i| real[3 * i]).collect();
    let net = Arc::new(match args.net {
        Backend::Proxy => {
            Net::proxies(&raft, &grpc, args.base_port.map(|b| b + 3 * n as u16)).await?
        }
        Backend::Netns => Net::namespaces(&raft, &grpc)?,
    });
    let ports: Vec<Ports> = (0..n)
        .map(|i| Ports {
            host: net.node_host(i),
            grpc: real[3 * i],
            http: real[3 * i + 1],
            raft: real[3 * i + 2],
        })
        .collect();
    let options = Options {
        endure_bin: bin,
        dir: args.out.clone(),
        snapshot_logs: args.snapshot_logs,
        peer_route,
        wrappers: (0..n).map(|i| net.exec_prefix(i)).collect(),
    };
    let cluster = Arc::new(Cluster::new(options, ports, net.raft_routes()));
    let tmpfs = mount_disks(&cluster, &kinds, &mut info);
    let recorder = Recorder::create(&args.out.join("history.jsonl"))?;
    let witness = Witness::create(&args.out.join("witness.jsonl"))?;
    let faults = Faults::new(args.profile, n);
    Ok(Run {
        args,
        info,
        kinds,
        cluster,
        net,
        recorder,
        witness,
        faults,
        tmpfs,
    })
}

/// Mounts a tmpfs per slot when the disk nemesis runs and this process may mount.
fn mount_disks(cluster: &Cluster, kinds: &[String], info: &mut RunInfo) -> bool {
    if !kinds.iter().any(|k| k == "disk") {
        return false;
    }
    if !disk::can_mount() {
        info.notes
            .push("not root: no tmpfs data dirs; disk-full actions are skipped".into());
        return false;
    }
    for slot in 0..cluster.len() {
        if let Err(error) = disk::mount_tmpfs(&cluster.disk_dir(slot)) {
            info.notes.push(format!(
                "tmpfs mount failed ({error:#}); disk-full actions are skipped"
            ));
            for s in 0..slot {
                disk::unmount(&cluster.disk_dir(s));
            }
            return false;
        }
    }
    true
}

/// Starts the cluster; false (with the reason recorded) if it never got ready.
async fn start_cluster(run: &mut Run) -> bool {
    for slot in 0..run.cluster.len() {
        if let Err(error) = run.cluster.spawn(slot) {
            run.info.harness_errors.push(format!("{error:#}"));
            return false;
        }
    }
    for slot in 0..run.cluster.len() {
        if let Err(error) = run.cluster.wait_ready(slot, READY_TIMEOUT).await {
            run.info
                .harness_errors
                .push(format!("cluster never got ready: {error:#}"));
            return false;
        }
    }
    println!("cluster ready: nodes {:?}", run.cluster.node_ids());
    true
}

/// Runs every phase; harness problems go into `info.harness_errors`.
async fn phases(run: &mut Run) -> FinalState {
    if !start_cluster(run).await {
        return FinalState::default();
    }
    let (workers_tx, workers_stop) = watch::channel(false);
    let (nemesis_tx, nemesis_stop) = watch::channel(false);
    let (sampler_tx, sampler_stop) = watch::channel(false);
    let (phase_tx, phase) = watch::channel(Phase::Run);
    let client_addrs: Vec<_> = (0..run.cluster.len())
        .map(|s| run.net.client_addr(s, run.cluster.ports(s).grpc))
        .collect();
    let workers: Vec<_> = client_addrs
        .iter()
        .map(|&addr| tokio::spawn(worker::run(addr, run.witness.clone(), workers_stop.clone())))
        .collect();
    let samplers = sampler::spawn(run.cluster.clone(), run.recorder.clone(), sampler_stop);
    let env = ClientEnv {
        recorder: run.recorder.clone(),
        cluster: run.cluster.clone(),
        known: Arc::new(Known::default()),
        client_addrs,
    };
    let clients = spawn_clients(run, &env, phase);
    let nemesis_env = nemesis_env(run, nemesis_stop);
    let nemeses = nemesis::spawn_all(&nemesis_env, &run.kinds, run.info.seed);
    tokio::time::sleep(Duration::from_secs(run.args.time_limit)).await;
    println!("time limit reached: stopping clients and nemeses, healing");
    let _ = phase_tx.send(Phase::Hold);
    let _ = nemesis_tx.send(true);
    for task in nemeses {
        let _ = task.await;
    }
    if !heal::heal(&nemesis_env).await {
        run.info
            .harness_errors
            .push("the heal did not bring every node back".into());
    }
    let heal_end = Instant::now();
    let mut readers = final_state::readers(&env, run.info.seed);
    let new_start_secs = final_state::new_starts(&mut readers, heal_end).await;
    println!("healed; new starts {new_start_secs:?}; clients finish their raises and resumes");
    let _ = phase_tx.send(Phase::Finish);
    for client in clients {
        let _ = client.await;
    }
    let state = final_phase(run, readers, heal_end, new_start_secs).await;
    let _ = sampler_tx.send(true);
    for task in samplers {
        let _ = task.await;
    }
    let _ = workers_tx.send(true);
    for task in workers {
        let _ = task.await;
    }
    state
}

fn spawn_clients(
    run: &Run,
    env: &ClientEnv,
    phase: watch::Receiver<Phase>,
) -> Vec<tokio::task::JoinHandle<Client>> {
    let c = run.args.concurrency;
    let interval = Duration::from_secs_f64(c as f64 / run.args.rate);
    (0..c)
        .map(|process| {
            let client = Client::new(
                process as u64,
                process % run.cluster.len(),
                run.info.seed,
                env.clone(),
            );
            tokio::spawn(client.run(interval, phase.clone()))
        })
        .collect()
}

fn nemesis_env(run: &Run, stop: watch::Receiver<bool>) -> nemesis::Env {
    nemesis::Env {
        cluster: run.cluster.clone(),
        net: run.net.clone(),
        recorder: run.recorder.clone(),
        faults: run.faults.clone(),
        stop,
        partitionable: run.net.can_partition(run.cluster.options().peer_route),
        tmpfs: run.tmpfs,
        chaos: Arc::new(ChaosSupport::default()),
    }
}

/// Drain, new starts, the last samples and the replica reads; writes final_state.json.
async fn final_phase(
    run: &mut Run,
    readers: Vec<Client>,
    heal_end: Instant,
    new_start_secs: BTreeMap<u64, Option<f64>>,
) -> FinalState {
    // The probes of the new-start check are acknowledged starts too: they drain as well.
    let history: Vec<Op> = read_jsonl(&run.args.out.join("history.jsonl")).unwrap_or_default();
    let acked = final_state::acked_starts(&history);
    println!(
        "draining {} acknowledged instances (limit {} s)",
        acked.len(),
        run.args.drain_limit
    );
    let limit = Duration::from_secs(run.args.drain_limit);
    let (_, drain_secs) = final_state::drain(readers, acked, heal_end, limit).await;
    println!("drain: {drain_secs:?} s; reading every replica");
    let (nodes, converged) = final_state::read_all_nodes(&run.cluster).await;
    for slot in 0..run.cluster.len() {
        let process = sampler::SAMPLER_PROCESS_BASE + slot as u64;
        sampler::sample_once(&run.cluster, &run.recorder, slot, process).await;
    }
    let skew = run
        .faults
        .max_skew_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let state = final_state::assemble(nodes, converged, skew, drain_secs, new_start_secs);
    let path = run.args.out.join("final_state.json");
    if let Err(error) = std::fs::write(
        &path,
        serde_json::to_string_pretty(&state).unwrap_or_default(),
    ) {
        run.info
            .harness_errors
            .push(format!("writing {}: {error}", path.display()));
    }
    state
}
