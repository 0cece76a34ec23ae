//! The three (or more) `endure serve` processes of a run: spawned with `tokio::process`,
//! each with its own data dir and log file under `DIR/nodes/nN/`, killed, paused, resumed
//! and restarted with the same flags. A node *slot* is a fixed set of ports and a directory;
//! the node ID living in it changes when the wipe nemesis replaces the node.
//!
//! No process may outlive the harness: every PID is kept in a global set that [`Drop`],
//! the ctrl-c handler and the panic hook ([`install_panic_hook`]) SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::endure::internal::{ClusterStatus, ClusterStatusRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::rpc;

/// How long a started node may take to answer `/readyz` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two readiness probes.
const READY_POLL: Duration = Duration::from_millis(200);
/// Deadline of one `/readyz` request.
const READY_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Deadline of the Admin calls the cluster makes itself (leader lookups).
const STATUS_DEADLINE: Duration = Duration::from_secs(2);

/// PIDs of every server process the harness started and has not reaped.
static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// SIGCONTs and SIGKILLs every recorded server process (safe from a panic hook).
pub fn kill_recorded_pids() {
    let pids = PIDS.lock().unwrap_or_else(|p| p.into_inner());
    for &pid in pids.iter() {
        // SAFETY: plain signal delivery to PIDs this harness spawned.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid as i32, libc::SIGCONT);
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

/// Makes a panic anywhere kill every server process before the default report.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_recorded_pids();
        crate::net::netns::teardown_recorded();
        previous(info);
    }));
}

/// The address and the three ports of one slot.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Ports {
    /// What the node binds and is reached at (127.0.0.1, or its namespace's address).
    pub host: Ipv4Addr,
    pub grpc: u16,
    pub http: u16,
    pub raft: u16,
}

impl Ports {
    pub fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.grpc))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.http))
    }

    pub fn raft_addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.raft))
    }
}

/// How to start the servers.
#[derive(Clone, Debug)]
pub struct Options {
    pub endure_bin: PathBuf,
    /// The run directory; nodes live in `dir/nodes/n{slot+1}/`.
    pub dir: PathBuf,
    pub snapshot_logs: u64,
    /// Whether the server knows `--peer-route` (else links bypass the proxies).
    pub peer_route: bool,
    /// Per slot, the command the server runs under (`ip netns exec <ns>`); empty: none.
    pub wrappers: Vec<Vec<String>>,
}

struct Slot {
    node_id: u64,
    ports: Ports,
    /// Started with `--join` (a node added by the wipe nemesis) instead of `--peer`s.
    join: bool,
    child: Option<Child>,
    paused: bool,
    /// Starts after the first count as restarts (for P13/P14's restart bookkeeping).
    started_once: bool,
    restarts: u64,
}

/// The running cluster.
pub struct Cluster {
    options: Options,
    slots: Mutex<Vec<Slot>>,
    /// Proxy port for the raft link from slot `.0` to slot `.1`.
    routes: BTreeMap<(usize, usize), u16>,
    /// The initial voters `ID=HOST:PORT` (real raft addresses).
    initial_peers: Vec<String>,
}

impl Cluster {
    pub fn new(options: Options, ports: Vec<Ports>, routes: BTreeMap<(usize, usize), u16>) -> Self {
        let initial_peers = ports
            .iter()
            .enumerate()
            .map(|(slot, p)| format!("{}={}", slot + 1, p.raft_addr()))
            .collect();
        let slots = ports
            .into_iter()
            .enumerate()
            .map(|(slot, ports)| Slot {
                node_id: slot as u64 + 1,
                ports,
                join: false,
                child: None,
                paused: false,
                started_once: false,
                restarts: 0,
            })
            .collect();
        Cluster {
            options,
            slots: Mutex::new(slots),
            routes,
            initial_peers,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn node_dir(&self, slot: usize) -> PathBuf {
        self.options
            .dir
            .join("nodes")
            .join(format!("n{}", slot + 1))
    }

    /// The slot's disk: where the data dir lives (a tmpfs mount point for the disk
    /// nemesis, so that the data dir itself can be moved aside by the wipe nemesis).
    pub fn disk_dir(&self, slot: usize) -> PathBuf {
        self.node_dir(slot).join("disk")
    }

    /// The data directory of a slot (replaced in place by the wipe nemesis).
    pub fn data_dir(&self, slot: usize) -> PathBuf {
        self.disk_dir(slot).join("data")
    }

    pub fn log_path(&self, slot: usize) -> PathBuf {
        self.node_dir(slot).join("endure.log")
    }

    pub fn node_id(&self, slot: usize) -> u64 {
        self.lock()[slot].node_id
    }

    pub fn node_ids(&self) -> Vec<u64> {
        self.lock().iter().map(|s| s.node_id).collect()
    }

    pub fn slot_of(&self, node_id: u64) -> Option<usize> {
        self.lock().iter().position(|s| s.node_id == node_id)
    }

    pub fn ports(&self, slot: usize) -> Ports {
        self.lock()[slot].ports
    }

    pub fn restarts(&self, slot: usize) -> u64 {
        self.lock()[slot].restarts
    }

    pub fn is_paused(&self, slot: usize) -> bool {
        self.lock()[slot].paused
    }

    /// Whether the slot's process is alive (a paused process is alive).
    pub fn is_running(&self, slot: usize) -> bool {
        let mut slots = self.lock();
        let Some(child) = slots[slot].child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            _ => {
                forget_pid(child.id());
                slots[slot].child = None;
                slots[slot].paused = false;
                false
            }
        }
    }

    /// Puts a new node ID into the slot; it will start with `--join` on an empty data dir.
    pub fn replace_node(&self, slot: usize, node_id: u64) {
        let mut slots = self.lock();
        slots[slot].node_id = node_id;
        slots[slot].join = true;
        slots[slot].started_once = false;
        slots[slot].restarts = 0;
    }

    /// Starts the slot's process if it is not running (same flags every time).
    pub fn spawn(&self, slot: usize) -> anyhow::Result<()> {
        if self.is_running(slot) {
            return Ok(());
        }
        let dir = self.node_dir(slot);
        std::fs::create_dir_all(self.data_dir(slot))
            .with_context(|| format!("creating {}", dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(slot))?;
        let mut command = self.command(slot);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", self.options.endure_bin.display()))?;
        if let Some(pid) = child.id() {
            PIDS.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
        }
        let mut slots = self.lock();
        if slots[slot].started_once {
            slots[slot].restarts += 1;
        }
        slots[slot].started_once = true;
        slots[slot].child = Some(child);
        slots[slot].paused = false;
        Ok(())
    }

    fn command(&self, slot: usize) -> Command {
        let slots = self.lock();
        let me = &slots[slot];
        let wrapper = self.options.wrappers.get(slot).filter(|w| !w.is_empty());
        let mut command = match wrapper {
            Some(wrapper) => {
                let mut command = Command::new("ip");
                command.args(wrapper).arg(&self.options.endure_bin);
                command
            }
            None => Command::new(&self.options.endure_bin),
        };
        command
            .arg("serve")
            .args(["--node-id", &me.node_id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(slot))
            .args(["--grpc-addr", &me.ports.grpc_addr().to_string()])
            .args(["--http-addr", &me.ports.http_addr().to_string()])
            .args(["--raft-addr", &me.ports.raft_addr().to_string()])
            .args(["--snapshot-logs", &self.options.snapshot_logs.to_string()]);
        if me.join {
            command.arg("--join");
        } else {
            for peer in &self.initial_peers {
                command.args(["--peer", peer]);
            }
        }
        if self.options.peer_route {
            for (other, peer) in slots.iter().enumerate() {
                if let Some(port) = self.routes.get(&(slot, other)) {
                    command.args([
                        "--peer-route",
                        &format!("{}=127.0.0.1:{port}", peer.node_id),
                    ]);
                }
            }
        }
        command
    }

    /// SIGKILLs the slot's process and reaps it; false if it was not running.
    pub async fn kill(&self, slot: usize) -> bool {
        let child = {
            let mut slots = self.lock();
            slots[slot].paused = false;
            slots[slot].child.take()
        };
        let Some(mut child) = child else {
            return false;
        };
        if let Some(pid) = child.id() {
            signal(pid, libc::SIGCONT);
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
        forget_pid(child.id());
        true
    }

    /// SIGSTOP (`stop`) or SIGCONT the slot's process; false if it is not running.
    pub fn set_paused(&self, slot: usize, stop: bool) -> bool {
        if !self.is_running(slot) {
            return false;
        }
        let mut slots = self.lock();
        let Some(pid) = slots[slot].child.as_ref().and_then(|c| c.id()) else {
            return false;
        };
        signal(pid, if stop { libc::SIGSTOP } else { libc::SIGCONT });
        slots[slot].paused = stop;
        true
    }

    /// Waits until `GET /readyz` answers 200 (a leader is known), up to `timeout`.
    pub async fn wait_ready(&self, slot: usize, timeout: Duration) -> anyhow::Result<()> {
        let addr = self.ports(slot).http_addr();
        let started = Instant::now();
        loop {
            if readyz(addr).await {
                return Ok(());
            }
            if !self.is_running(slot) {
                anyhow::bail!(
                    "node in slot {} exited; see {}",
                    slot + 1,
                    self.log_path(slot).display()
                );
            }
            if started.elapsed() > timeout {
                anyhow::bail!("node in slot {} not ready after {timeout:?}", slot + 1);
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The slot's own view of the cluster (direct, not through a proxy).
    pub async fn status(&self, slot: usize) -> Result<ClusterStatus, tonic::Status> {
        let mut admin = AdminClient::new(rpc::channel(self.ports(slot).grpc_addr()));
        rpc::call(
            STATUS_DEADLINE,
            admin.cluster_status(rpc::request(ClusterStatusRequest {}, STATUS_DEADLINE)),
        )
        .await
    }

    /// The slot of the leader as the first running, unpaused node that knows one says.
    pub async fn leader(&self) -> Option<usize> {
        for slot in 0..self.len() {
            if !self.is_running(slot) || self.is_paused(slot) {
                continue;
            }
            if let Ok(status) = self.status(slot).await {
                if let Some(leader) = status.leader_id.and_then(|id| self.slot_of(id)) {
                    return Some(leader);
                }
            }
        }
        None
    }

    /// Kills every process now (Drop, ctrl-c, the end of a run).
    pub fn kill_all_now(&self) {
        let mut slots = self.lock();
        for slot in slots.iter_mut() {
            if let Some(mut child) = slot.child.take() {
                if let Some(pid) = child.id() {
                    signal(pid, libc::SIGCONT);
                    signal(pid, libc::SIGKILL);
                }
                let _ = child.try_wait();
            }
            slot.paused = false;
        }
        kill_recorded_pids();
    }

    pub fn options(&self) -> &Options {
        &self.options
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all_now();
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signal delivery to a child this harness spawned.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn forget_pid(pid: Option<u32>) {
    if let Some(pid) = pid {
        PIDS.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
    }
}

/// One raw HTTP/1.1 `GET /readyz`; true on status 200.
async fn readyz(addr: SocketAddr) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(READY_REQUEST_TIMEOUT, probe).await,
        Ok(Ok(true))
    )
}

/// Free ports: bound on 127.0.0.1:0 and released (or `base + i` when a base is given).
pub fn pick_ports(count: usize, base: Option<u16>) -> anyhow::Result<Vec<u16>> {
    if let Some(base) = base {
        return Ok((0..count as u16).map(|i| base + i).collect());
    }
    // Below Linux's ephemeral range (32768-60999 by default): a port the kernel hands out
    // for `:0` is also what outgoing connections (the harness's own clients, another run's)
    // take as their local port, and a node then fails to bind it ("address in use").
    let mut rng = rand::rng();
    let mut ports = Vec::with_capacity(count);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count * 100 {
        if ports.len() == count {
            break;
        }
        let port = rand::Rng::random_range(&mut rng, PICKED_PORTS);
        if ports.contains(&port) {
            continue;
        }
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            ports.push(port);
            held.push(listener);
        }
    }
    anyhow::ensure!(
        ports.len() == count,
        "found only {} free ports in {PICKED_PORTS:?}",
        ports.len()
    );
    Ok(ports)
}

/// Where [`pick_ports`] looks for free ports.
const PICKED_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Whether `endure serve --help` lists `flag`.
pub fn server_has_flag(bin: &Path, flag: &str) -> bool {
    std::process::Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
        .unwrap_or(false)
}
