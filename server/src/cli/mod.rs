//! The client CLI: `endure workflow ...` and `endure cluster ...`, talking to any node's gRPC
//! address like an SDK does.
//!
//! - [`workflow`]: the `workflow` subcommands: start, inspect and steer instances.
//! - [`instance`]: how an instance is shown (`get`, `list`).
//! - [`events`]: one history event reduced to its type, name, payload and fields.
//! - [`history`]: how history events are shown (`history`).
//! - [`cluster`]: `cluster status`, one section per node.
//! - [`output`]: the table renderer, JSON printing and status names.
//! - [`time`]: RFC 3339 timestamps.
//!
//! Results go to stdout, errors to stderr, and the exit code says what went wrong so that
//! scripts can branch on it: 0 ok, 1 server error, 2 usage (clap's code), 3 not found,
//! 4 server unreachable.

mod cluster;
mod events;
mod history;
mod instance;
mod output;
mod time;
mod workflow;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use endure_tls::Connector;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use output::Format;

/// Where the CLI looks for a node when neither `--endpoint` nor `ENDURE_ENDPOINT` is given:
/// the default gRPC address of `endure serve` (and of the Dapr SDKs).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50001";
/// How long to wait for a TCP connection before calling the node unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the deadline it sends the client waits, so that the server's own
/// answer to an expired deadline arrives before the client gives up on its own.
const CLIENT_GRACE: Duration = Duration::from_secs(2);
/// Largest response accepted, in bytes: a long history is one message, and the server
/// does not cap what it sends (tonic's default of 4 MiB would refuse it).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// What went wrong, by what the user does next; each has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments cannot be used (exit 2, as for clap's own usage errors).
    #[error("{0}")]
    Usage(String),
    /// The instance does not exist (exit 3), maybe never or maybe purged.
    #[error("no such instance: {0}")]
    NotFound(String),
    /// No answer from the node (exit 4): down, wrong address, or unable to serve now.
    #[error("cannot reach endure at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// The node answered with an error (exit 1).
    #[error("{0}")]
    Server(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Server(_) => 1,
            Error::Usage(_) => 2,
            Error::NotFound(_) => 3,
            Error::Unreachable { .. } => 4,
        }
    }
}

/// `endure workflow ...`
#[derive(Args, Debug)]
pub struct WorkflowArgs {
    /// gRPC address of any Endure node.
    #[arg(long, env = "ENDURE_ENDPOINT", default_value = DEFAULT_ENDPOINT, global = true)]
    pub endpoint: String,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: workflow::Command,
}

/// `endure cluster ...`
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// gRPC address of a node; repeat it (or separate with commas) to ask several nodes.
    #[arg(long, env = "ENDURE_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_delimiter = ',', global = true)]
    pub endpoint: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: cluster::Command,
}

/// Flags every client command takes.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// How to print results.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Seconds to wait for an answer; `workflow start` waits this long for the workflow to
    /// begin running.
    #[arg(long = "timeout", value_name = "SECS", default_value_t = 30, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_seconds: u64,
    /// The API token the nodes were started with (`--api-token`), sent as `dapr-api-token`.
    #[arg(long, env = "ENDURE_API_TOKEN", hide_env_values = true, global = true)]
    pub api_token: Option<String>,
    /// The admin token the nodes were started with (`--admin-token`), sent as
    /// `endure-admin-token` (`cluster join` and `leave` need it when it is set).
    #[arg(
        long,
        env = "ENDURE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
    /// CA (PEM) that signed the nodes' certificate, for `https://` endpoints.
    #[arg(long, env = "ENDURE_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// Certificate (PEM) to show nodes that ask for one (`--tls-client-ca`); needs
    /// --tls-client-key.
    #[arg(
        long,
        env = "ENDURE_TLS_CLIENT_CERT",
        global = true,
        requires = "tls_client_key"
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-client-cert.
    #[arg(
        long,
        env = "ENDURE_TLS_CLIENT_KEY",
        global = true,
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<PathBuf>,
}

/// Runs a workflow subcommand; returns the process exit code.
pub fn run_workflow(args: WorkflowArgs) -> i32 {
    let target = match Target::new(&args.endpoint, &args.common) {
        Ok(target) => target,
        Err(error) => return report(Err(error)),
    };
    let format = args.common.output;
    block_on(async move { report(workflow::run(args.command, &target, format).await) })
}

/// Runs a cluster subcommand; returns the process exit code.
pub fn run_cluster(args: ClusterArgs) -> i32 {
    let targets: Result<Vec<Target>, Error> = args
        .endpoint
        .iter()
        .map(|endpoint| Target::new(endpoint, &args.common))
        .collect();
    let targets = match targets {
        Ok(targets) => targets,
        Err(error) => return report(Err(error)),
    };
    block_on(cluster::run(args.command, targets, args.common.output))
}

/// Runs the command on a small runtime: `main` is synchronous, and a CLI call needs
/// one thread, not one per core.
fn block_on(future: impl Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            eprintln!("error: cannot start the tokio runtime: {error}");
            1
        }
    }
}

/// Prints an error to stderr and turns the outcome into an exit code.
fn report(result: Result<(), Error>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

/// One node to talk to, with the deadline every call gets.
#[derive(Clone, Debug)]
pub struct Target {
    /// The node's URL as shown in messages (`http://` added when the user left it out).
    pub endpoint: String,
    /// The deadline sent with each call.
    pub timeout: Duration,
    /// The API token sent with each call.
    api_token: Option<MetadataValue<Ascii>>,
    /// The admin token sent with each call.
    admin_token: Option<MetadataValue<Ascii>>,
    /// Whether the endpoint is `https://` (or `grpcs://`).
    secure: bool,
    /// TCP, or TLS with the CA of `--tls-ca`.
    connector: Connector,
}

/// A token as a metadata value whose `Debug` shows "Sensitive", never the token.
fn metadata_token(flag: &str, token: Option<&str>) -> Result<Option<MetadataValue<Ascii>>, Error> {
    let Some(token) = token else {
        return Ok(None);
    };
    let mut value: MetadataValue<Ascii> = token
        .trim()
        .parse()
        .map_err(|_| Error::Usage(format!("{flag} must be printable ASCII without spaces")))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// The connector of `https://` endpoints, from --tls-ca (and the client certificate).
fn tls_connector(common: &CommonArgs) -> Result<Connector, Error> {
    let Some(ca) = &common.tls_ca else {
        return Ok(Connector::plain());
    };
    let identity = match (&common.tls_client_cert, &common.tls_client_key) {
        (Some(cert), Some(key)) => Some(endure_tls::KeyPair {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let tls = endure_tls::ClientTls::load("the CLI's TLS", ca.clone(), identity)
        .map_err(|e| Error::Usage(e.to_string()))?;
    Ok(Connector::tls(tls))
}

impl Target {
    fn new(endpoint: &str, common: &CommonArgs) -> Result<Target, Error> {
        let api_token = metadata_token("--api-token", common.api_token.as_deref())?;
        let admin_token = metadata_token("--admin-token", common.admin_token.as_deref())?;
        let mut target = Target {
            api_token,
            admin_token,
            ..Target::at(endpoint, common.timeout_seconds)
        };
        // --tls-ca (or ENDURE_TLS_CA in the environment) applies to TLS endpoints only.
        if target.secure {
            target.connector = tls_connector(common)?;
        }
        if target.secure && !target.connector.is_tls() {
            return Err(Error::Usage(format!(
                "{} is a TLS endpoint: give --tls-ca (the CA that signed the node's certificate)",
                target.endpoint
            )));
        }
        Ok(target)
    }

    fn at(endpoint: &str, timeout_seconds: u64) -> Target {
        let endpoint = endpoint.trim();
        let endpoint = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let secure = endpoint.starts_with("https://") || endpoint.starts_with("grpcs://");
        Target {
            endpoint,
            timeout: Duration::from_secs(timeout_seconds),
            api_token: None,
            admin_token: None,
            secure,
            connector: Connector::plain(),
        }
    }

    /// Connects now, so that an unreachable node is reported as such, not as a failed call.
    pub async fn connect(&self) -> Result<Channel, Error> {
        // tonic is given an http:// URI: TLS, when the endpoint asks for it, is the
        // connector's.
        let address = match self.endpoint.split_once("://") {
            Some((_, rest)) => format!("http://{rest}"),
            None => self.endpoint.clone(),
        };
        let endpoint = Endpoint::from_shared(address)
            .map_err(|e| Error::Usage(format!("invalid endpoint '{}': {e}", self.endpoint)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(self.timeout + CLIENT_GRACE);
        endpoint
            .connect_with_connector(self.connector.clone())
            .await
            .map_err(|error| Error::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: error_chain(&error),
            })
    }

    /// A client of the workflow service on a fresh connection.
    pub async fn workflows(
        &self,
    ) -> Result<
        endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient<Channel>,
        Error,
    > {
        let channel = self.connect().await?;
        Ok(
            endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient::new(
                channel,
            )
            .max_decoding_message_size(MAX_RESPONSE_BYTES),
        )
    }

    /// A request carrying this target's deadline, so that the server stops waiting too.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(token) = &self.api_token {
            request
                .metadata_mut()
                .insert(crate::auth::API_TOKEN_HEADER, token.clone());
        }
        if let Some(token) = &self.admin_token {
            request
                .metadata_mut()
                .insert(crate::auth::ADMIN_TOKEN_HEADER, token.clone());
        }
        request
    }

    /// The one place a gRPC status becomes a CLI error. `instance_id` names the instance
    /// the call was about, so that NOT_FOUND reads the same for every command.
    pub fn error(&self, status: Status, instance_id: Option<&str>) -> Error {
        match (status.code(), instance_id) {
            (Code::NotFound, Some(id)) => Error::NotFound(id.to_string()),
            (Code::Unavailable, _) => Error::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: status.message().to_string(),
            },
            _ if is_timeout(&status) => Error::Server(format!(
                "no answer within {} s (raise it with --timeout)",
                self.timeout.as_secs()
            )),
            (code, _) => Error::Server(format!("{} ({code:?})", status.message())),
        }
    }
}

/// Whether a call failed because its deadline passed: the server says DEADLINE_EXCEEDED when
/// its own wait ends, tonic says CANCELLED ("Timeout expired") when its timeout layer fires.
pub fn is_timeout(status: &Status) -> bool {
    status.code() == Code::DeadlineExceeded
        || (status.code() == Code::Cancelled && status.message().contains("Timeout expired"))
}

/// An error and its sources on one line ("transport error: tcp connect error: Connection
/// refused"); tonic's top-level message alone says nothing useful.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_gets_a_scheme() {
        assert_eq!(
            Target::at("10.0.0.1:50001", 1).endpoint,
            "http://10.0.0.1:50001"
        );
        assert_eq!(
            Target::at("https://node:443", 1).endpoint,
            "https://node:443"
        );
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        let target = Target::at(DEFAULT_ENDPOINT, 30);
        let not_found = target.error(Status::not_found("no such instance exists: 'x'"), Some("x"));
        assert_eq!(
            (not_found.exit_code(), not_found.to_string()),
            (3, "no such instance: x".to_string())
        );
        let unavailable = target.error(Status::unavailable("shutting down"), None);
        assert_eq!(unavailable.exit_code(), 4);
        assert_eq!(
            unavailable.to_string(),
            "cannot reach endure at http://127.0.0.1:50001: shutting down"
        );
        let timeout = target.error(Status::cancelled("Timeout expired"), None);
        assert!(
            timeout.to_string().contains("no answer within 30 s"),
            "{timeout}"
        );
        let refused = target.error(Status::invalid_argument("name is required"), Some("x"));
        assert_eq!(
            (refused.exit_code(), refused.to_string()),
            (1, "name is required (InvalidArgument)".to_string())
        );
    }
}
