//! Three real `endure` processes on loopback, and a small chain worker written with the
//! generated gRPC client, for the cluster tests.

#![allow(dead_code)]

#[path = "../common/readyz.rs"]
mod readyz;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::endure::internal::{ClusterStatus, ClusterStatusRequest};
use endure_proto::orchestrator_action::OrchestratorActionType as Action;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::*;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Node {
    pub id: u64,
    pub grpc_port: u16,
    pub http_port: u16,
    pub raft_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Three nodes forming one cluster; every process is killed on drop.
pub struct Cluster {
    pub nodes: Vec<Node>,
    snapshot_logs: Option<u64>,
    /// `--shards`, when given (else the binary's default, or ENDURE_SHARDS).
    shards: Option<u32>,
    /// Further flags every node is started with.
    extra: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(snapshot_logs: Option<u64>) -> Cluster {
        Cluster::start_with(snapshot_logs, None)
    }

    /// Three nodes of a cluster with `shards` shards.
    pub fn sharded(shards: u32) -> Cluster {
        Cluster::start_with(None, Some(shards))
    }

    /// Three nodes, each started with the flags `extra` too.
    pub fn with_args(extra: &[&str]) -> Cluster {
        Cluster::start_full(None, None, extra.iter().map(|a| a.to_string()).collect())
    }

    fn start_with(snapshot_logs: Option<u64>, shards: Option<u32>) -> Cluster {
        Cluster::start_full(snapshot_logs, shards, Vec::new())
    }

    fn start_full(snapshot_logs: Option<u64>, shards: Option<u32>, extra: Vec<String>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=3)
            .map(|id| Node {
                id,
                grpc_port: free_port(),
                http_port: free_port(),
                raft_port: free_port(),
                data_dir: dir.path().join(format!("node-{id}")),
                log: dir.path().join(format!("node-{id}.log")),
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            snapshot_logs,
            shards,
            extra,
            _dir: dir,
        };
        for index in 0..3 {
            cluster.spawn(index);
        }
        for index in 0..3 {
            cluster.wait_port(index);
        }
        cluster
    }

    fn peers_of_first_three(&self) -> Vec<String> {
        self.nodes
            .iter()
            .take(3)
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.raft_port))
            .collect()
    }

    /// Adds a node started with `--join` (not yet a member); returns its index.
    pub fn add_joining_node(&mut self, id: u64) -> usize {
        let dir = self.nodes[0].data_dir.parent().unwrap().to_path_buf();
        self.nodes.push(Node {
            id,
            grpc_port: free_port(),
            http_port: free_port(),
            raft_port: free_port(),
            data_dir: dir.join(format!("node-{id}")),
            log: dir.join(format!("node-{id}.log")),
            child: None,
        });
        let index = self.nodes.len() - 1;
        self.spawn_with(index, true);
        index
    }

    /// Waits for the node's process to exit (a node that refused to start).
    pub fn wait_exit(&mut self, index: usize) -> std::process::ExitStatus {
        let mut child = self.nodes[index].child.take().expect("node was started");
        child.wait().unwrap()
    }

    pub async fn admin(&self, index: usize) -> AdminClient<Channel> {
        AdminClient::connect(self.endpoint(index)).await.unwrap()
    }

    pub fn spawn(&mut self, index: usize) {
        self.spawn_with(index, false);
    }

    fn spawn_with(&mut self, index: usize, join: bool) {
        let peers = if join {
            Vec::new()
        } else {
            self.peers_of_first_three()
        };
        let node = &mut self.nodes[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_endure"));
        command
            .arg("serve")
            .args(["--node-id", &node.id.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--grpc-addr", &format!("127.0.0.1:{}", node.grpc_port)])
            .args(["--http-addr", &format!("127.0.0.1:{}", node.http_port)])
            .args(["--raft-addr", &format!("127.0.0.1:{}", node.raft_port)]);
        for peer in peers {
            command.args(["--peer", &peer]);
        }
        if join {
            command.arg("--join");
        }
        if let Some(every) = self.snapshot_logs {
            command.args(["--snapshot-logs", &every.to_string()]);
        }
        if let Some(shards) = self.shards {
            command.args(["--shards", &shards.to_string()]);
        }
        command.args(&self.extra);
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    pub fn wait_port(&self, index: usize) {
        let node = &self.nodes[index];
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", node.grpc_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "node {} did not start: {}",
                node.id,
                self.logs(index)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self, index: usize) -> String {
        std::fs::read_to_string(&self.nodes[index].log).unwrap_or_default()
    }

    pub fn kill9(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGSTOP: the process hangs with its sockets open, as a stalled host does.
    pub fn pause(&self, index: usize) {
        self.signal(index, "-STOP");
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&self, index: usize) {
        self.signal(index, "-CONT");
    }

    fn signal(&self, index: usize, signal: &str) {
        let pid = self.nodes[index].child.as_ref().expect("node running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    pub fn restart(&mut self, index: usize) {
        self.spawn(index);
        self.wait_port(index);
    }

    pub fn wipe(&mut self, index: usize) {
        self.kill9(index);
        std::fs::remove_dir_all(&self.nodes[index].data_dir).unwrap();
    }

    pub fn endpoint(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[index].grpc_port)
    }

    pub async fn client(&self, index: usize) -> TaskHubSidecarServiceClient<Channel> {
        TaskHubSidecarServiceClient::connect(self.endpoint(index))
            .await
            .unwrap()
    }

    pub async fn status(&self, index: usize) -> Result<ClusterStatus, tonic::Status> {
        let mut admin = AdminClient::connect(self.endpoint(index))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(admin
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    /// Index of the node that reports itself leader, waiting up to 30 s.
    pub async fn leader(&self, alive: &[usize]) -> usize {
        let started = Instant::now();
        loop {
            for &index in alive {
                if let Ok(status) = self.status(index).await {
                    let leads =
                        status.state == "Leader" && status.leader_id == Some(status.node_id);
                    // Serving, too: its time line fixed and its dispatcher running.
                    if leads && readyz::readyz(self.nodes[index].http_port) {
                        return index;
                    }
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no leader elected"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Cluster {
    /// Waits until every node of `alive` is ready and sees each shard led by its preferred
    /// node: elections and the first hand-overs after a start are over.
    pub async fn settled(&self, alive: &[usize]) {
        let started = Instant::now();
        loop {
            let mut settled = true;
            for &index in alive {
                let ready = readyz::readyz(self.nodes[index].http_port);
                let placed = self.status(index).await.is_ok_and(|status| {
                    status
                        .shards
                        .iter()
                        .all(|shard| shard.leader_id == Some(shard.preferred_leader))
                });
                settled &= ready && placed;
            }
            if settled {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the shards' leaders did not settle"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill9(index);
        }
    }
}

/// The turn's workflow name and input (from its ExecutionStarted).
fn started(turn: &OrchestratorRequest) -> (String, String) {
    for event in turn.past_events.iter().chain(turn.new_events.iter()) {
        if let Some(history_event::EventType::ExecutionStarted(e)) = &event.event_type {
            return (e.name.clone(), e.input.clone().unwrap_or_default());
        }
    }
    (String::new(), String::new())
}

/// "parent": input `CHILD_NAME:ID,ID,...`; starts one child per ID (input 10), then, once
/// every child completed, completes with the sum of their outputs.
fn parent_actions(turn: &OrchestratorRequest, input: &str) -> Vec<OrchestratorAction> {
    let (child_name, ids) = input.split_once(':').unwrap_or(("chain", ""));
    let ids: Vec<&str> = ids.split(',').filter(|id| !id.is_empty()).collect();
    let mut created = 0;
    let mut results = Vec::new();
    for event in turn.past_events.iter().chain(turn.new_events.iter()) {
        match &event.event_type {
            Some(history_event::EventType::SubOrchestrationInstanceCreated(_)) => created += 1,
            Some(history_event::EventType::SubOrchestrationInstanceCompleted(e)) => results.push(
                e.result
                    .as_deref()
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0),
            ),
            _ => {}
        }
    }
    if created == 0 {
        return ids
            .iter()
            .enumerate()
            .map(|(i, id)| OrchestratorAction {
                id: i as i32 + 1,
                orchestrator_action_type: Some(Action::CreateSubOrchestration(
                    CreateSubOrchestrationAction {
                        instance_id: id.to_string(),
                        name: child_name.to_string(),
                        input: Some("10".into()),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            })
            .collect();
    }
    if results.len() < ids.len() {
        return Vec::new();
    }
    vec![OrchestratorAction {
        id: ids.len() as i32 + 1,
        orchestrator_action_type: Some(Action::CompleteOrchestration(
            CompleteOrchestrationAction {
                orchestration_status: OrchestrationStatus::Completed as i32,
                result: Some(results.iter().sum::<i64>().to_string()),
                ..Default::default()
            },
        )),
        ..Default::default()
    }]
}

/// "timed": sets a one-second timer from its start, and completes with `<event>+timer`
/// once both the timer fired and an event "go" (payload `<event>`) arrived.
fn timed_actions(turn: &OrchestratorRequest) -> Vec<OrchestratorAction> {
    let mut started_at = None;
    let mut timer_created = false;
    let mut fired = false;
    let mut go = None;
    for event in turn.past_events.iter().chain(turn.new_events.iter()) {
        match &event.event_type {
            Some(history_event::EventType::ExecutionStarted(_)) => started_at = event.timestamp,
            Some(history_event::EventType::TimerCreated(_)) => timer_created = true,
            Some(history_event::EventType::TimerFired(_)) => fired = true,
            Some(history_event::EventType::EventRaised(e)) if e.name == "go" => {
                go = Some(e.input.clone().unwrap_or_default())
            }
            _ => {}
        }
    }
    let kind = if !timer_created {
        let mut fire_at = started_at.unwrap_or_default();
        fire_at.seconds += 1;
        Action::CreateTimer(CreateTimerAction {
            fire_at: Some(fire_at),
            ..Default::default()
        })
    } else if let (true, Some(go)) = (fired, go) {
        Action::CompleteOrchestration(CompleteOrchestrationAction {
            orchestration_status: OrchestrationStatus::Completed as i32,
            result: Some(format!("{go}+timer")),
            ..Default::default()
        })
    } else {
        return Vec::new();
    };
    vec![OrchestratorAction {
        id: if timer_created { 2 } else { 1 },
        orchestrator_action_type: Some(kind),
        ..Default::default()
    }]
}

/// The actions of a turn, by workflow: "chain", "parent", "timed", or "waiter" (never
/// decides anything: it runs until terminated).
fn actions(turn: &OrchestratorRequest) -> Vec<OrchestratorAction> {
    let (name, input) = started(turn);
    match name.as_str() {
        "parent" => parent_actions(turn, &input),
        "timed" => timed_actions(turn),
        "waiter" => Vec::new(),
        _ => chain_actions(turn),
    }
}

/// Reads the starting value and every activity result from a turn's events.
fn chain_state(turn: &OrchestratorRequest) -> (i64, Vec<i64>, usize) {
    let mut input = 0;
    let mut results = Vec::new();
    let mut scheduled = 0;
    for event in turn.past_events.iter().chain(turn.new_events.iter()) {
        match &event.event_type {
            Some(history_event::EventType::ExecutionStarted(e)) => {
                input = e.input.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            Some(history_event::EventType::TaskScheduled(_)) => scheduled += 1,
            Some(history_event::EventType::TaskCompleted(e)) => results.push(
                e.result
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            _ => {}
        }
    }
    (input, results, scheduled)
}

/// The worker's answer: schedule the next of three "add one" activities, then complete
/// with the last result. Deterministic from the history, as an SDK replay would be.
fn chain_actions(turn: &OrchestratorRequest) -> Vec<OrchestratorAction> {
    let (input, results, scheduled) = chain_state(turn);
    if scheduled > results.len() {
        return Vec::new();
    }
    let value = results.last().copied().unwrap_or(input);
    let id = scheduled as i32 + 1;
    let kind = if scheduled < 3 {
        Action::ScheduleTask(ScheduleTaskAction {
            name: "add_one".into(),
            input: Some(value.to_string()),
            ..Default::default()
        })
    } else {
        Action::CompleteOrchestration(CompleteOrchestrationAction {
            orchestration_status: OrchestrationStatus::Completed as i32,
            result: Some(value.to_string()),
            ..Default::default()
        })
    };
    vec![OrchestratorAction {
        id,
        orchestrator_action_type: Some(kind),
        ..Default::default()
    }]
}

/// A worker on `endpoint` that runs chains of three activities and reconnects whenever its
/// stream ends, as the SDKs do. Answers that fail (a leader died) are left to re-dispatch.
pub fn chain_worker(endpoint: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = serve_once(&endpoint).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn serve_once(endpoint: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut client = TaskHubSidecarServiceClient::connect(endpoint.to_string()).await?;
    let mut stream = client
        .get_work_items(GetWorkItemsRequest::default())
        .await?
        .into_inner();
    while let Some(item) = stream.next().await {
        let item = item?;
        match item.request {
            Some(work_item::Request::OrchestratorRequest(turn)) => {
                let response = OrchestratorResponse {
                    instance_id: turn.instance_id.clone(),
                    actions: actions(&turn),
                    completion_token: item.completion_token,
                    ..Default::default()
                };
                let _ = client.complete_orchestrator_task(response).await;
            }
            Some(work_item::Request::ActivityRequest(activity)) => {
                let value: i64 = activity
                    .input
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let response = ActivityResponse {
                    instance_id: activity
                        .orchestration_instance
                        .map(|i| i.instance_id)
                        .unwrap_or_default(),
                    task_id: activity.task_id,
                    result: Some((value + 1).to_string()),
                    completion_token: item.completion_token,
                    ..Default::default()
                };
                let _ = client.complete_activity_task(response).await;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Waits for completion through `client`, retrying while the cluster fails over.
pub async fn wait_completed(
    client: &mut TaskHubSidecarServiceClient<Channel>,
    id: &str,
) -> OrchestrationState {
    let started = Instant::now();
    loop {
        let mut request = tonic::Request::new(GetInstanceRequest {
            instance_id: id.to_string(),
            get_inputs_and_outputs: true,
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(20));
        match client.wait_for_instance_completion(request).await {
            Ok(response) => return response.into_inner().orchestration_state.unwrap(),
            Err(status) => {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "{id} did not complete: {status}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Starts an instance, retrying on UNAVAILABLE (a failover under way). A retry that finds
/// the instance already there (ALREADY_EXISTS) means an earlier attempt was applied.
pub async fn start_chain(client: &mut TaskHubSidecarServiceClient<Channel>, id: &str, input: i64) {
    start_named(client, id, "chain", &input.to_string()).await
}

/// [`start_chain`] for any workflow of the test worker.
pub async fn start_named(
    client: &mut TaskHubSidecarServiceClient<Channel>,
    id: &str,
    name: &str,
    input: &str,
) {
    let started = Instant::now();
    loop {
        let request = CreateInstanceRequest {
            instance_id: id.to_string(),
            name: name.into(),
            input: Some(input.to_string()),
            ..Default::default()
        };
        match client.start_instance(request).await {
            Ok(_) => return,
            Err(status) if status.code() == tonic::Code::AlreadyExists => return,
            Err(status) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "cannot start {id}: {status}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
