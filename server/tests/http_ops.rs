//! The operations routes (health, readiness, metadata, metrics, cluster status), the
//! protocol errors (404, 405, 413) and graceful shutdown, against the real binary.

mod common;
mod http_support;

use std::time::{Duration, Instant};

use common::Server;
use http_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn health_metadata_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;

    let health = get(port, "/v1.0/healthz").await;
    assert_eq!((health.status, health.body.len()), (204, 0));
    let metadata = get(port, "/v1.0/metadata").await;
    assert_eq!(metadata.status, 200);
    let metadata = metadata.json();
    assert_eq!(metadata["id"], "endure");
    assert_eq!(metadata["runtimeVersion"], env!("CARGO_PKG_VERSION"));
    let live = get(port, "/healthz").await;
    assert_eq!((live.status, live.text().as_str()), (200, "ok"));
    let head = request(port, "HEAD", "/healthz", None, &[]).await;
    assert_eq!(
        (head.status, head.body.len()),
        (200, 0),
        "HEAD is GET without the body"
    );
    assert_eq!(head.header("content-length"), Some("2"));
    let ready = get(port, "/readyz").await;
    assert_eq!(
        ready.status,
        200,
        "a single node leads itself: {}",
        ready.text()
    );
}

#[tokio::test]
async fn cluster_status_shows_this_node_leading() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));

    let cluster = get(server.http_port, "/cluster/status").await;
    assert_eq!(cluster.status, 200);
    let cluster = cluster.json();
    assert_eq!(
        (&cluster["node_id"], &cluster["leader_id"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(cluster["state"], "Leader");
    let index = |key: &str| {
        cluster[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {cluster}"))
    };
    assert!(
        index("term") >= 1 && index("applied_index") >= 1,
        "{cluster}"
    );
    assert!(
        index("committed_index") >= index("applied_index"),
        "{cluster}"
    );
    assert!(
        index("last_log_index") >= index("committed_index"),
        "{cluster}"
    );
    let members = cluster["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{cluster}");
    assert_eq!(
        (&members[0]["id"], &members[0]["role"]),
        (&json!(1), &json!("voter"))
    );
    let address = members[0]["address"].as_str().unwrap_or_default();
    assert!(!address.is_empty(), "{cluster}");
}

#[tokio::test]
async fn metrics_show_an_http_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;

    let start = post(
        port,
        "/v1.0/workflows/dapr/Approval/start?instanceID=m-1",
        b"",
    )
    .await;
    assert_eq!(start.status, 202);
    let started = Instant::now();
    loop {
        let metrics = get(port, "/metrics").await;
        assert_eq!(metrics.status, 200);
        let content_type = metrics.header("content-type").unwrap();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = metrics.text();
        if text.contains(r#"endure_workflows_started_total{workflow="Approval"}"#) {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the start never showed in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;

    let unknown = [
        "/",
        "/v1.0/state/store",
        "/v2.0/workflows/dapr/x",
        "/v1.0/workflows/dapr/x/explode",
        "/healthz/",
    ];
    for path in unknown {
        let message = get(port, path).await.error(404, "ERR_NOT_FOUND");
        assert!(message.contains(path), "{message}");
    }
    let cases = [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/v1.0/workflows/dapr/x", "GET, HEAD"),
        ("GET", "/v1.0/workflows/dapr/x/terminate", "POST"),
        ("GET", "/v1.0/workflows/dapr/Approval/start", "POST"),
        ("PUT", "/cluster/status", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let reply = request(port, method, path, None, &[]).await;
        reply.error(405, "ERR_METHOD_NOT_ALLOWED");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let port = server.http_port;

    // A declared length over the limit is refused before any body is read, so a client
    // that waits for 100-continue never sends it.
    let declared = (LIMIT_BYTES + 1).to_string();
    let headers = [
        ("Content-Length", declared.as_str()),
        ("Expect", "100-continue"),
    ];
    let reply = request(
        port,
        "POST",
        "/v1.0/workflows/dapr/Approval/start?instanceID=big-1",
        None,
        &headers,
    )
    .await;
    reply.error(413, "ERR_BODY_TOO_LARGE");

    let chunked = post_chunked(
        port,
        "/v1.0/workflows/dapr/Approval/start?instanceID=big-2",
        LIMIT_BYTES + 1,
    )
    .await;
    chunked.error(413, "ERR_BODY_TOO_LARGE");
    assert_eq!(
        post(
            port,
            "/v1.0/workflows/dapr/Approval/start?instanceID=small",
            b""
        )
        .await
        .status,
        202
    );
    let event = post_chunked(
        port,
        "/v1.0/workflows/dapr/small/raiseEvent/e",
        LIMIT_BYTES + 1,
    )
    .await;
    event.error(413, "ERR_BODY_TOO_LARGE");

    let near = vec![b'1'; LIMIT_BYTES - 1024];
    let accepted = post(
        port,
        "/v1.0/workflows/dapr/Approval/start?instanceID=near",
        &near,
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    for refused in ["big-1", "big-2"] {
        assert_eq!(
            get(port, &format!("/v1.0/workflows/dapr/{refused}"))
                .await
                .status,
            404,
            "{refused} was stored"
        );
    }
}

#[tokio::test]
async fn sigterm_closes_the_http_port_and_the_node_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_process(&dir.path().join("data"));
    let port = server.http_port;
    assert_eq!(get(port, "/healthz").await.status, 200);
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    let read = idle.read(&mut first).await.unwrap();
    assert!(
        first[..read].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..read])
    );

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.process().id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.process().try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < WAIT,
            "the node did not exit after SIGTERM: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}: {}", server.logs());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for the idle connection"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the HTTP port still accepts"
    );
    assert!(
        server.logs().contains("HTTP stopped accepting"),
        "{}",
        server.logs()
    );
}

/// A cluster member opens every port at start, before it knows a leader: `/healthz` says
/// the process lives, `/readyz` says why it cannot serve yet, and gRPC calls answer
/// UNAVAILABLE (which the SDKs retry) instead of the port staying closed.
#[tokio::test]
async fn a_node_waiting_for_its_peers_answers_on_every_port_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, raft, absent) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let raft_addr = format!("127.0.0.1:{raft}");
    let me = format!("1=127.0.0.1:{raft}");
    let peer = format!("2=127.0.0.1:{absent}");
    let server = Server::spawn_with(
        &dir.path().join("data"),
        grpc,
        http,
        &["--raft-addr", &raft_addr, "--peer", &me, "--peer", &peer],
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(http, "/healthz").await.status, 200);
    let ready = get(http, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("no Raft leader"), "{}", ready.text());

    let mut client = server.client().await;
    let status = client
        .get_instance(endure_proto::GetInstanceRequest {
            instance_id: "any".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("no Raft leader"),
        "{}",
        status.message()
    );
}
