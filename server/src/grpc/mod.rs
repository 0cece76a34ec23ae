//! The gRPC front end: tonic server assembly (limits, keepalive, layers, listeners).
//!
//! - [`taskhub`]: `TaskHubSidecarService`, as the Dapr SDKs call it, over the service layer.
//! - [`work_items`]: the `GetWorkItems` stream (local on the leader, relayed elsewhere).
//! - [`admin`]: the `Admin` service (cluster status, membership, replica, chaos controls).
//! - [`status`]: service errors → gRPC statuses, and a request → its `Call` (one place).
//! - [`metrics_layer`]: request counts and latency per method.

pub mod admin;
pub mod metrics_layer;
pub mod status;
pub mod taskhub;
pub mod work_items;

use std::time::Duration;

use endure_proto::endure::internal::admin_server::AdminServer;
use endure_proto::endure::internal::raft_service_server::RaftServiceServer;
use endure_proto::task_hub_sidecar_service_server::TaskHubSidecarServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The transport refuses messages this many times the configured limit (tonic answers
/// OUT_OF_RANGE); below that, the service's own check answers RESOURCE_EXHAUSTED.
const TRANSPORT_CAP_FACTOR: usize = 4;
/// How often the server pings every connection (HTTP/2 PING), and how long the answer may
/// take: a worker whose connection went silent without closing (a dead host, a cut link, a
/// stopped process) loses its stream within about the sum of the two, and what it held is
/// sent to other workers.
const CONNECTION_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const CONNECTION_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open calls get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What one gRPC listener serves.
pub struct Services {
    pub taskhub: taskhub::TaskHub,
    pub admin: admin::AdminService,
    /// The Raft service of every shard, on the internal listener only.
    pub rafts: Option<std::sync::Arc<Vec<endure_raft::types::Raft>>>,
    pub max_message_bytes: usize,
    /// Who may call this listener (the API token, or the cluster secret inside).
    pub auth: crate::auth::GrpcAuthLayer,
    /// The listener's TLS (`None`: cleartext HTTP/2).
    pub tls: Option<std::sync::Arc<endure_tls::ServerTls>>,
}

/// Serves gRPC on `listener` until shutdown, then gives open calls [`SHUTDOWN_GRACE`].
pub async fn serve(listener: TcpListener, services: Services, shutdown: watch::Receiver<bool>) {
    let taskhub = TaskHubSidecarServiceServer::new(services.taskhub)
        .max_decoding_message_size(
            services
                .max_message_bytes
                .saturating_mul(TRANSPORT_CAP_FACTOR),
        )
        .max_encoding_message_size(usize::MAX);
    let raft = services.rafts.map(|rafts| {
        RaftServiceServer::new(endure_raft::rpc::RaftRpc { rafts })
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    });
    // Sets TCP_NODELAY (small replies must not wait for the peer's delayed ACK, ~40 ms a
    // step) and runs each TLS handshake off the accept loop.
    let incoming = endure_tls::server::incoming(listener, services.tls);
    let mut signal = shutdown.clone();
    let mut forced = shutdown;
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(CONNECTION_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(CONNECTION_KEEPALIVE_TIMEOUT))
        .http2_max_header_list_size(crate::http::MAX_HEADER_BYTES as u32)
        .layer(metrics_layer::GrpcMetricsLayer)
        .layer(services.auth)
        .add_service(taskhub)
        .add_service(AdminServer::new(services.admin))
        .add_optional_service(raft)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = signal.changed().await;
        });
    tokio::select! {
        result = server => if let Err(e) = result { tracing::error!(error = %e, "gRPC server failed") },
        _ = async { let _ = forced.changed().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("calls still open after the grace period; closing them");
        }
    }
}
