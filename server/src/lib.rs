//! Endure's server: a node of the workflow engine, as a library (the `endure` binary and
//! the integration tests start it through [`app::App`]).
//!
//! Where things are:
//! - [`app`]: wiring; binds the ports at once, runs the components until shutdown.
//! - [`config`]: settings from flags, environment and TOML.
//! - [`auth`]: the API token, the cluster secret and the metrics token, checked per port.
//! - [`service`]: what a client can ask (start, raise, terminate, …), transport-neutral,
//!   including forwarding to the leader ([`service::forward`]).
//! - [`grpc`]: the SDK-facing `TaskHubSidecarService` and `Admin`, adapters over `service`.
//! - [`http`]: Dapr's workflow HTTP API, health, readiness, metrics; adapters over `service`.
//! - [`dispatch`]: leader only; sends turns and activities to workers, fences their answers.
//! - [`timers`]: leader only; fires due durable timers.
//! - [`outbox`]: leader only; delivers messages between instances (children, events).
//! - [`cluster`]: proposing through Raft, the leader's clock, leadership, membership.
//! - [`telemetry`]: Prometheus metrics; every name in [`telemetry::names`].
//! - [`cli`]: the `endure workflow` and `endure cluster` commands (gRPC clients).

pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod grpc;
pub mod http;
pub mod outbox;
pub mod service;
pub mod sync;
pub mod telemetry;
pub mod timers;
