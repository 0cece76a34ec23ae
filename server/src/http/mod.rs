//! The HTTP front end (being written): Dapr's workflow HTTP API, health, readiness, metrics.

use std::sync::Arc;

use endure_raft::node::Node;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::grpc::Sidecar;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The gRPC service's operations, reused so both front ends behave the same.
    pub sidecar: Sidecar,
    pub node: Node,
    /// Renders the Prometheus text exposition.
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, state: HttpState, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let _ = (listener, state);
    let _ = shutdown.changed().await;
    Ok(())
}
