//! Starting a node for integration tests: in this process on `127.0.0.1:0` (the
//! default: no free-port races, no binary to spawn), or as a real `endure serve` process
//! where a test kills it, signals it or reads its exit status.

#![allow(dead_code)]

mod readyz;
pub use readyz::readyz;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use tonic::transport::Channel;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node running in this process, on its own runtime thread; stopped when dropped.
pub struct InProcess {
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running node: an in-process `App` or an `endure serve` process (killed when dropped).
pub struct Server {
    pub child: Option<Child>,
    app: Option<InProcess>,
    pub grpc_port: u16,
    pub http_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Starts a node in this process with `data_dir` and waits until it serves.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// Starts a node in this process with extra `serve` flags and waits until it serves.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        use clap::Parser;
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            serve: endure::config::ServeArgs,
        }
        let data = data_dir.to_str().expect("a UTF-8 path");
        let mut args = vec!["serve", "--data-dir", data, "--grpc-addr", "127.0.0.1:0"];
        args.extend(["--http-addr", "127.0.0.1:0"]);
        args.extend(extra);
        let settings = endure::config::Settings::resolve(Flags::parse_from(args).serve)
            .expect("valid settings");
        let (shutdown, stopped) = tokio::sync::watch::channel(false);
        let (addresses_tx, addresses_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = endure::app::App::start(settings)
                    .await
                    .expect("the node starts");
                addresses_tx.send(app.addresses()).unwrap();
                app.run(stopped).await.expect("the node runs");
            });
        });
        let addresses = addresses_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the node binds its ports");
        let server = Server {
            child: None,
            app: Some(InProcess {
                shutdown: Some(shutdown),
                thread: Some(thread),
            }),
            grpc_port: addresses.grpc.port(),
            http_port: addresses.http.port(),
            data_dir: data_dir.to_path_buf(),
            log: data_dir.with_extension("log"),
        };
        server.wait_ready();
        server
    }

    /// Starts an `endure serve` process on fresh ports and waits until it serves.
    pub fn start_process(data_dir: &Path) -> Server {
        let server = Server::spawn(data_dir, free_port(), free_port());
        server.wait_ready();
        server
    }

    /// The `endure serve` process (for nodes started as one).
    pub fn process(&mut self) -> &mut Child {
        self.child.as_mut().expect("a node started as a process")
    }

    pub fn spawn(data_dir: &Path, grpc_port: u16, http_port: u16) -> Server {
        Server::spawn_with(data_dir, grpc_port, http_port, &[])
    }

    pub fn spawn_with(data_dir: &Path, grpc_port: u16, http_port: u16, extra: &[&str]) -> Server {
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_endure"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--grpc-addr")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--log-level")
            .arg("info")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("the endure binary starts");
        Server {
            child: Some(child),
            app: None,
            grpc_port,
            http_port,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// Waits until `GET /readyz` answers 200: every port opens at start, and the node can
    /// serve once it leads (or knows the leader).
    pub fn wait_ready(&self) {
        let started = Instant::now();
        while !readyz(self.http_port) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "server did not become ready: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        match self.app {
            Some(_) => "(an in-process node logs nowhere)".to_string(),
            None => std::fs::read_to_string(&self.log).unwrap_or_default(),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub async fn client(&self) -> TaskHubSidecarServiceClient<Channel> {
        TaskHubSidecarServiceClient::connect(self.endpoint())
            .await
            .unwrap()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        self.process().kill().unwrap();
        self.process().wait().unwrap();
    }

    /// Starts the node again on the same ports and data directory.
    pub fn restart(&mut self) {
        let again = Server::spawn(&self.data_dir, self.grpc_port, self.http_port);
        let old = std::mem::replace(self, again);
        std::mem::forget(old);
        self.wait_ready();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A worker for tests that need a workflow with a real history: every workflow calls the
/// activity `Shout` with its input, then completes with the activity's result; `Shout`
/// returns its input upper-cased. History: OrchestratorStarted, ExecutionStarted,
/// TaskScheduled(0, Shout), OrchestratorStarted, TaskCompleted(0), ExecutionCompleted.
pub async fn shout_worker(server: &Server) -> tokio::task::JoinHandle<()> {
    use endure_proto::*;
    use tokio_stream::StreamExt;

    let mut client = server.client().await;
    let mut stream = client
        .get_work_items(GetWorkItemsRequest::default())
        .await
        .unwrap()
        .into_inner();
    tokio::spawn(async move {
        while let Some(Ok(item)) = stream.next().await {
            match item.request {
                Some(work_item::Request::OrchestratorRequest(turn)) => {
                    let response = OrchestratorResponse {
                        instance_id: turn.instance_id.clone(),
                        actions: shout_turn(&turn).into_iter().collect(),
                        completion_token: item.completion_token,
                        ..Default::default()
                    };
                    client.complete_orchestrator_task(response).await.unwrap();
                }
                Some(work_item::Request::ActivityRequest(activity)) => {
                    let response = ActivityResponse {
                        instance_id: activity
                            .orchestration_instance
                            .map(|i| i.instance_id)
                            .unwrap_or_default(),
                        task_id: activity.task_id,
                        result: activity.input.map(|input| input.to_uppercase()),
                        completion_token: item.completion_token,
                        ..Default::default()
                    };
                    client.complete_activity_task(response).await.unwrap();
                }
                _ => {}
            }
        }
    })
}

/// The one new action of a `shout_worker` turn: schedule `Shout` first, complete once it
/// answered, nothing while it runs.
pub fn shout_turn(
    turn: &endure_proto::OrchestratorRequest,
) -> Option<endure_proto::OrchestratorAction> {
    use endure_proto::history_event::EventType;
    use endure_proto::orchestrator_action::OrchestratorActionType as Action;
    use endure_proto::*;

    let events = || {
        turn.past_events
            .iter()
            .chain(turn.new_events.iter())
            .filter_map(|e| e.event_type.as_ref())
    };
    if let Some(result) = events().find_map(|e| match e {
        EventType::TaskCompleted(done) => Some(done.result.clone()),
        _ => None,
    }) {
        let done = CompleteOrchestrationAction {
            orchestration_status: OrchestrationStatus::Completed as i32,
            result,
            ..Default::default()
        };
        return Some(OrchestratorAction {
            id: 1,
            orchestrator_action_type: Some(Action::CompleteOrchestration(done)),
            ..Default::default()
        });
    }
    if events().any(|e| matches!(e, EventType::TaskScheduled(_))) {
        return None;
    }
    let input = events().find_map(|e| match e {
        EventType::ExecutionStarted(started) => started.input.clone(),
        _ => None,
    });
    let shout = ScheduleTaskAction {
        name: "Shout".into(),
        input,
        ..Default::default()
    };
    Some(OrchestratorAction {
        id: 0,
        orchestrator_action_type: Some(Action::ScheduleTask(shout)),
        ..Default::default()
    })
}

/// A worker that answers every turn with `answer(turn) -> (actions, custom status)` and
/// ignores other work items: the stream loop the turn-only test workers share.
pub async fn turn_worker<F>(server: &Server, answer: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(
            &endure_proto::OrchestratorRequest,
        ) -> (Vec<endure_proto::OrchestratorAction>, Option<String>)
        + Send
        + 'static,
{
    use endure_proto::*;
    use tokio_stream::StreamExt;

    let mut client = server.client().await;
    let mut stream = client
        .get_work_items(GetWorkItemsRequest::default())
        .await
        .unwrap()
        .into_inner();
    tokio::spawn(async move {
        while let Some(Ok(item)) = stream.next().await {
            let Some(work_item::Request::OrchestratorRequest(turn)) = item.request else {
                continue;
            };
            let (actions, custom_status) = answer(&turn);
            let response = OrchestratorResponse {
                instance_id: turn.instance_id,
                actions,
                custom_status,
                completion_token: item.completion_token,
                ..Default::default()
            };
            client.complete_orchestrator_task(response).await.unwrap();
        }
    })
}
