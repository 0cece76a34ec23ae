//! TLS on the client ports (gRPC and HTTP), the CLI against an `https://` endpoint, and a
//! certificate swapped (on change, and on SIGHUP) while a client stays connected (mutual TLS between nodes
//! is in tests/cluster_auth.rs). Certificates are made by the test (endure-tls's
//! `testing`).

mod common;
mod tls_support;

use std::time::{Duration, Instant};

use common::{free_port, Server};
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::GetInstanceRequest;
use endure_tls::testing::Authority;
use endure_tls::{Connector, KeyPair};
use tls_support::{channel, trusting};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

async fn get_instance(channel: Channel, id: &str) -> Result<bool, tonic::Status> {
    let request = GetInstanceRequest {
        instance_id: id.into(),
        ..Default::default()
    };
    let answer = TaskHubSidecarServiceClient::new(channel)
        .get_instance(request)
        .await?;
    Ok(answer.into_inner().exists)
}

/// Waits until a TLS call to the node's gRPC port succeeds (readiness over TLS).
async fn wait_tls_ready(server: &Server, connector: &Connector) -> Channel {
    let started = Instant::now();
    loop {
        if let Ok(channel) = channel(server.grpc_port, connector).await {
            if get_instance(channel.clone(), "probe").await.is_ok() {
                return channel;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the TLS node did not serve: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP/1.1 request without a body over `connector`; the status line and body.
async fn https(
    port: u16,
    connector: &Connector,
    method: &str,
    path: &str,
) -> std::io::Result<String> {
    let uri = format!("http://127.0.0.1:{port}").parse().unwrap();
    let mut conn = connector.connect(&uri).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await?;
    Ok(reply)
}

fn tls_flags(pair: &KeyPair) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        pair.cert.display().to_string(),
        "--tls-key".into(),
        pair.key.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ports_speak_tls_only_and_a_new_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = Authority::create(dir.path(), "first-ca").unwrap();
    let pair = first
        .issue(dir.path(), "server", &["localhost", "127.0.0.1"])
        .unwrap();
    let flags = tls_flags(&pair);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::spawn_with(&dir.path().join("data"), free_port(), free_port(), &flags);
    let connector = trusting(&first.cert, None);
    let kept = wait_tls_ready(&server, &connector).await;

    // HTTP over TLS: readiness and a start through the Dapr workflow API (which does not
    // wait for a worker); gRPC over TLS reads it back.
    let port = server.http_port;
    let ready = https(port, &connector, "GET", "/readyz").await.unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let path = "/v1.0/workflows/dapr/chain/start?instanceID=over-tls";
    let started = https(port, &connector, "POST", path).await.unwrap();
    assert!(started.starts_with("HTTP/1.1 202"), "{started}");
    assert!(get_instance(kept.clone(), "over-tls").await.unwrap());
    let status = https(port, &connector, "GET", "/v1.0/workflows/dapr/over-tls")
        .await
        .unwrap();
    assert!(
        status.starts_with("HTTP/1.1 200") && status.contains("over-tls"),
        "{status}"
    );

    // Cleartext is not served on either port.
    let plain = channel(server.grpc_port, &Connector::plain()).await;
    let refused = match plain {
        Ok(channel) => get_instance(channel, "over-tls").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a cleartext gRPC call was answered");
    let plain_http = https(port, &Connector::plain(), "GET", "/readyz").await;
    assert!(
        !plain_http
            .as_deref()
            .unwrap_or("")
            .starts_with("HTTP/1.1 200"),
        "{plain_http:?}"
    );
    // A client that trusts another CA is refused in the handshake.
    let stranger = Authority::create(dir.path(), "stranger-ca").unwrap();
    assert!(channel(server.grpc_port, &trusting(&stranger.cert, None))
        .await
        .is_err());

    // The same files, now signed by a second CA: the node sees the change by itself.
    let second = Authority::create(dir.path(), "second-ca").unwrap();
    second
        .issue(dir.path(), "server", &["localhost", "127.0.0.1"])
        .unwrap();
    let renewed = trusting(&second.cert, None);
    let started = Instant::now();
    loop {
        if let Ok(channel) = channel(server.grpc_port, &renewed).await {
            if get_instance(channel, "over-tls").await.unwrap_or(false) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the new certificate was not served: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        channel(server.grpc_port, &connector).await.is_err(),
        "new connections still get the old certificate"
    );
    // The node kept running, and the connection opened before the reload still works.
    assert!(get_instance(kept, "over-tls").await.unwrap());
    let reloads = |logs: &str| logs.matches("TLS files reloaded").count();
    assert_eq!(reloads(&server.logs()), 1, "{}", server.logs());

    // SIGHUP reloads even when nothing changed, and does not stop the node.
    let pid = server.child.as_ref().unwrap().id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_log(&server, |logs| reloads(logs) == 2).await;

    // A broken file is reported and the certificate in use stays. (A poll between the two
    // writes of a renewal can see a new key beside the old certificate: that is refused
    // too, and counted here.)
    let refusals = |logs: &str| logs.matches("TLS files not reloaded").count();
    let before = refusals(&server.logs());
    std::fs::write(&pair.cert, "not a certificate").unwrap();
    wait_log(&server, |logs| refusals(logs) > before).await;
    let channel = channel(server.grpc_port, &renewed).await.unwrap();
    assert!(get_instance(channel, "over-tls").await.unwrap());
}

/// Waits up to 20 s until the node's log satisfies `done`.
async fn wait_log(server: &Server, done: impl Fn(&str) -> bool) {
    let started = Instant::now();
    while !done(&server.logs()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_an_https_endpoint_with_the_ca_and_explains_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::create(dir.path(), "ca").unwrap();
    let pair = ca.issue(dir.path(), "server", &["127.0.0.1"]).unwrap();
    let flags = tls_flags(&pair);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::spawn_with(&dir.path().join("data"), free_port(), free_port(), &flags);
    let _ready = wait_tls_ready(&server, &trusting(&ca.cert, None)).await;
    let endpoint = format!("https://127.0.0.1:{}", server.grpc_port);
    let cli = |extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_endure"));
        command
            .args(["workflow", "list", "--endpoint", &endpoint, "-o", "json"])
            .args(extra)
            .env_remove("ENDURE_TLS_CA");
        command.output().unwrap()
    };
    let ca_path = ca.cert.display().to_string();
    let listed = cli(&["--tls-ca", &ca_path]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let refused = cli(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("--tls-ca"), "{stderr}");
}
