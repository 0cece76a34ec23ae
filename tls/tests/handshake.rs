//! Handshakes between `incoming` and `Connector` over loopback, with certificates made by
//! the test: one-way TLS, mutual TLS, refusals, and a reload that swaps the certificate.

use std::path::Path;
use std::sync::Arc;

use endure_tls::testing::Authority;
use endure_tls::{server, ClientTls, Connector, KeyPair, Reload, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

/// Serves `tls` on a loopback port: every connection gets "hello" and is closed.
async fn hello_server(tls: Arc<ServerTls>) -> http::Uri {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        let mut incoming = Box::pin(server::incoming(listener, Some(tls)));
        while let Some(Ok(mut conn)) = incoming.next().await {
            tokio::spawn(async move {
                let _ = conn.write_all(b"hello").await;
                let _ = conn.shutdown().await;
            });
        }
    });
    uri.parse().unwrap()
}

async fn greeting(connector: &Connector, uri: &http::Uri) -> Result<String, String> {
    let mut conn = connector.connect(uri).await.map_err(|e| e.to_string())?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .await
        .map_err(|e| e.to_string())?;
    Ok(text)
}

fn trusting(ca: &Path, identity: Option<KeyPair>) -> Connector {
    Connector::tls(ClientTls::load("test client", ca.to_path_buf(), identity).unwrap())
}

#[tokio::test]
async fn a_client_trusting_the_ca_connects_and_one_trusting_another_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::create(dir.path(), "ca").unwrap();
    let other = Authority::create(dir.path(), "other").unwrap();
    let pair = ca.issue(dir.path(), "server", &["127.0.0.1"]).unwrap();
    let uri = hello_server(ServerTls::load("test", pair, None, &[b"h2"]).unwrap()).await;

    assert_eq!(
        greeting(&trusting(&ca.cert, None), &uri).await.unwrap(),
        "hello"
    );
    let refused = greeting(&trusting(&other.cert, None), &uri)
        .await
        .unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
    // A plain client gets no greeting: the server waits for a ClientHello it never sends,
    // and the bytes it reads are not TLS.
    let plain = greeting(&Connector::plain(), &uri).await;
    assert_ne!(plain, Ok("hello".to_string()));
}

#[tokio::test]
async fn mutual_tls_wants_a_client_certificate_from_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Authority::create(dir.path(), "cluster").unwrap();
    let stranger_ca = Authority::create(dir.path(), "stranger-ca").unwrap();
    let node = cluster.issue(dir.path(), "node", &["127.0.0.1"]).unwrap();
    let stranger = stranger_ca
        .issue(dir.path(), "stranger", &["127.0.0.1"])
        .unwrap();
    let server_tls = ServerTls::load("test", node.clone(), Some(cluster.cert.clone()), &[b"h2"]);
    let uri = hello_server(server_tls.unwrap()).await;

    let member = trusting(&cluster.cert, Some(node));
    assert_eq!(greeting(&member, &uri).await.unwrap(), "hello");
    // TLS 1.3 reports the refused client certificate on the first read after the handshake.
    assert!(greeting(&trusting(&cluster.cert, None), &uri)
        .await
        .is_err());
    assert!(greeting(&trusting(&cluster.cert, Some(stranger)), &uri)
        .await
        .is_err());
}

#[tokio::test]
async fn a_reload_swaps_the_certificate_and_a_broken_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = Authority::create(dir.path(), "first").unwrap();
    let second = Authority::create(dir.path(), "second").unwrap();
    let pair = first.issue(dir.path(), "server", &["127.0.0.1"]).unwrap();
    let tls = ServerTls::load("test", pair.clone(), None, &[b"h2"]).unwrap();
    let uri = hello_server(tls.clone()).await;
    assert_eq!(tls.reload(false), Ok(false), "nothing changed yet");

    // The same paths, now signed by the second CA.
    second.issue(dir.path(), "server", &["127.0.0.1"]).unwrap();
    assert_eq!(tls.reload(false), Ok(true));
    assert!(greeting(&trusting(&first.cert, None), &uri).await.is_err());
    assert_eq!(
        greeting(&trusting(&second.cert, None), &uri).await.unwrap(),
        "hello"
    );

    // A half-written key: the reload fails, names the file, and the second cert stays.
    std::fs::write(&pair.key, "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
    let error = tls.reload(true).unwrap_err();
    assert!(error.0.contains("server-key.pem"), "{error}");
    assert_eq!(
        greeting(&trusting(&second.cert, None), &uri).await.unwrap(),
        "hello"
    );
}

#[test]
fn missing_and_empty_files_are_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = KeyPair {
        cert: dir.path().join("absent.pem"),
        key: dir.path().join("absent-key.pem"),
    };
    let error = ServerTls::load("test", missing, None, &[]).err().unwrap();
    assert!(error.0.contains("absent.pem"), "{error}");

    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let error = ClientTls::load("test", dir.path().join("empty.pem"), None)
        .err()
        .unwrap();
    assert!(
        error.0.contains("empty.pem") && error.0.contains("no PEM"),
        "{error}"
    );
}
