//! Workers that fail without saying so: a connection that stops delivering without
//! closing (a dead host, a cut link) must lose its stream within seconds, and what it held
//! must go to a live worker.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

/// A TCP proxy in front of one address that can turn into a black hole: bytes in either
/// direction are then read and dropped, and no connection is closed, so neither side
/// learns anything from TCP.
struct Proxy {
    port: u16,
    silent: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = Arc::new(AtomicBool::new(false));
        let flag = silent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&target).await.unwrap();
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, flag.clone()));
                tokio::spawn(pipe(server_read, client_write, flag.clone()));
            }
        });
        Proxy { port, silent }
    }

    fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if silent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    // Keep the other half open while silent: a black hole never closes anything.
    while silent.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Connects a worker through `proxy` that answers turns like `shout_worker` but keeps
/// every activity it gets without answering; the receiver fires once it holds one.
async fn worker_that_takes_an_activity_and_goes_quiet(
    proxy: &Proxy,
) -> tokio::sync::oneshot::Receiver<()> {
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut client = TaskHubSidecarServiceClient::connect(endpoint)
        .await
        .unwrap();
    let mut stream = client
        .get_work_items(GetWorkItemsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (got_activity, wait) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut got_activity = Some(got_activity);
        while let Some(Ok(item)) = stream.next().await {
            match item.request {
                Some(work_item::Request::OrchestratorRequest(turn)) => {
                    let response = OrchestratorResponse {
                        instance_id: turn.instance_id.clone(),
                        actions: common::shout_turn(&turn).into_iter().collect(),
                        completion_token: item.completion_token,
                        ..Default::default()
                    };
                    let _ = client.complete_orchestrator_task(response).await;
                }
                Some(work_item::Request::ActivityRequest(_)) => {
                    if let Some(signal) = got_activity.take() {
                        let _ = signal.send(());
                    }
                }
                _ => {}
            }
        }
        // Hold the client (and its connection) until the test ends.
        std::future::pending::<()>().await;
    });
    wait
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_held_by_a_silently_dead_worker_moves_to_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(format!("127.0.0.1:{}", server.grpc_port)).await;
    let holds_activity = worker_that_takes_an_activity_and_goes_quiet(&proxy).await;
    let mut client = server.client().await;
    client
        .start_instance(CreateInstanceRequest {
            instance_id: "held".into(),
            name: "Shout".into(),
            input: Some("\"hello\"".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    holds_activity
        .await
        .expect("the quiet worker never received the activity");
    proxy.go_silent();
    let silent_at = Instant::now();
    let _live = common::shout_worker(&server).await;

    let mut request = tonic::Request::new(GetInstanceRequest {
        instance_id: "held".into(),
        get_inputs_and_outputs: true,
        ..Default::default()
    });
    // Far below the 600 s after which an unanswered activity is sent again anyway: only
    // noticing the dead connection can make this.
    request.set_timeout(Duration::from_secs(40));
    let state = client
        .wait_for_instance_completion(request)
        .await
        .expect("the workflow did not complete while its activity sat with a dead worker")
        .into_inner()
        .orchestration_state
        .unwrap();
    assert_eq!(state.output.as_deref(), Some("\"HELLO\""));
    let took = silent_at.elapsed();
    println!("the activity moved to the live worker {took:?} after the link went silent");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}
