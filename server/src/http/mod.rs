//! The HTTP front end: Dapr's workflow HTTP API, health, readiness, metrics and cluster
//! status, served with hyper (HTTP/1.1 and HTTP/2, over TLS when the node has a
//! certificate).
//!
//! - [`router`]: method and path → route, 404 and 405.
//! - [`workflow`]: the Dapr workflow routes, over the service layer.
//! - [`ops`]: health, readiness, metadata, metrics, cluster status.
//! - [`errors`]: Dapr's error bodies and the one service error → HTTP mapping.

pub mod errors;
pub mod ops;
pub mod router;
pub mod workflow;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::shards::Shards;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::service::Workflows;
use endure_tls::ServerTls;

/// Most HTTP connections served at once (as mini-redis bounds `MAX_CONNECTIONS`); a client
/// beyond them waits for a place once it has spoken. A connection takes its place only
/// after its first byte or TLS handshake, so clients that connect and say nothing never
/// hold one (they are closed after the handshake timeout).
pub const MAX_CONNECTIONS: usize = 1_024;
/// Largest request head (request line and headers; an HTTP/2 header list) a client may
/// send, in bytes, on the HTTP and the gRPC port; a larger one is refused (431 on HTTP/1).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long an HTTP/1 client may take to send its request headers (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);
/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Every answer has a fully buffered body: the API's bodies are small JSON documents.
pub type Response = hyper::Response<Full<Bytes>>;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The operations, shared with the gRPC front end so both behave the same.
    pub workflows: Workflows,
    /// This node's shards: `/cluster/status` reads their Raft groups.
    pub shards: Shards,
    /// Renders the Prometheus text exposition.
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The token every route but health and readiness (and `/metrics`) requires.
    pub api_token: Option<crate::auth::Token>,
    /// The bearer token `/metrics` requires.
    pub metrics_token: Option<crate::auth::Token>,
}

/// Serves HTTP on `listener` until `shutdown` turns true; then stops accepting, lets open
/// requests finish for up to [`SHUTDOWN_GRACE`], and returns.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    tls: Option<Arc<ServerTls>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let handshakes = Arc::new(Semaphore::new(endure_tls::server::MAX_PENDING_HANDSHAKES));
    while let Some((stream, handshake)) =
        next_connection(&listener, &handshakes, &mut shutdown).await
    {
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(router::handle(state, request).await) }
        });
        let (builder, tls, watcher) = (builder.clone(), tls.clone(), graceful.watcher());
        let slots = slots.clone();
        // The handshake runs in the connection's task: a slow client holds its own
        // handshake place, never the accept loop.
        tokio::spawn(async move {
            let established = endure_tls::server::establish(stream, tls.as_deref()).await;
            drop(handshake);
            match established {
                Ok(conn) => {
                    let Ok(slot) = slots.acquire_owned().await else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(conn), service);
                    if let Err(error) = watcher.watch(connection.into_owned()).await {
                        debug!(%error, "HTTP connection ended with an error");
                    }
                    drop(slot);
                }
                Err(error) => debug!(%error, "HTTP connection failed its handshake"),
            }
        });
    }
    drop(listener);
    info!("HTTP stopped accepting; finishing open requests");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("HTTP requests still open after the grace period; closing them"),
    }
    Ok(())
}

/// The next accepted connection and its place among the handshakes under way, or `None`
/// once shutdown begins.
async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    loop {
        if *shutdown.borrow_and_update() {
            return None;
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.ok()?,
            _ = shutdown.changed() => return None,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => return Some((stream, slot)),
                Err(error) => {
                    warn!(%error, "cannot accept an HTTP connection; retrying");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

/// A JSON answer; serializing our own body types cannot fail.
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).expect("response bodies serialize");
    let mut response = hyper::Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A text answer with the given content type.
pub fn text_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An answer without a body (204).
pub fn empty_response(status: StatusCode) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
