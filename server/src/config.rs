//! Settings of `endure serve`: command-line flags, `ENDURE_*` environment variables and an
//! optional TOML file (`--config`), in that order of precedence, then the defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;

use crate::auth::Token;

/// Default gRPC address: the Dapr SDKs' default endpoint.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50001";
/// Default HTTP address: Dapr's default HTTP port.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:3500";
pub const DEFAULT_DATA_DIR: &str = "./endure-data";
/// Default internal (Raft) address.
pub const DEFAULT_RAFT_ADDR: &str = "127.0.0.1:50101";
/// Largest gRPC message accepted, in bytes (the gRPC default the SDKs also use).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Shards of a new cluster of several nodes (started with `--peer` or `--join`): enough
/// for the leaders to spread over three to eight nodes.
pub const DEFAULT_CLUSTER_SHARDS: u32 = 8;
/// Shards of a node on its own (the embedded mode): one, as before shards.
pub const DEFAULT_SINGLE_SHARDS: u32 = 1;

/// Flags of `endure serve`; each can also come from an `ENDURE_*` variable.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "ENDURE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of this node's RocksDB (Raft log and state machine).
    #[arg(long, env = "ENDURE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the SDK-facing gRPC service.
    #[arg(long, env = "ENDURE_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Address of the HTTP API: Dapr's workflow API, /metrics, /healthz, /readyz.
    #[arg(long, env = "ENDURE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// This node's Raft ID (never reuse one).
    #[arg(long, env = "ENDURE_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address of this node's internal service (Raft, forwarding) that peers connect to.
    #[arg(long, env = "ENDURE_RAFT_ADDR")]
    pub raft_addr: Option<SocketAddr>,
    /// An initial voter as `ID=HOST:PORT` (its raft address); repeat for every voter,
    /// this node included. Without peers the node forms a cluster of its own.
    #[arg(long = "peer", env = "ENDURE_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// How this node connects to peer ID, when not at the address the cluster membership
    /// records for it (a proxy or NAT in between): `ID=HOST:PORT`, repeatable. Only this
    /// node's outgoing connections change; the membership keeps each node's own address.
    #[arg(long = "peer-route", env = "ENDURE_PEER_ROUTES", value_delimiter = ',')]
    pub peer_routes: Vec<String>,
    /// Start empty and wait to be added with `endure cluster join` (a new node).
    #[arg(long, env = "ENDURE_JOIN")]
    pub join: bool,
    /// Raft log entries between two snapshots (the log behind a snapshot is purged).
    #[arg(long, env = "ENDURE_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    /// Shards (Raft groups) the instances are spread over, fixed when the cluster is
    /// created: every node of a cluster takes the same count, and a data directory refuses
    /// another. 1 to 256; default 8 with --peer or --join, else 1.
    #[arg(long, env = "ENDURE_SHARDS")]
    pub shards: Option<u32>,
    /// Log filter (`info`, `debug`, `endure=debug,openraft=warn`, ...); RUST_LOG wins.
    #[arg(long, env = "ENDURE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "ENDURE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Log format: `text` (human-readable) or `json` (one object per line).
    #[arg(long, env = "ENDURE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// API token every client call must carry in its `dapr-api-token` header (gRPC metadata
    /// or HTTP), as Dapr's sidecar takes it; /healthz and /readyz stay open. Prefer
    /// --api-token-file, which keeps it off the command line.
    #[arg(long, env = "ENDURE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the API token (a trailing newline is ignored).
    #[arg(long, env = "ENDURE_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Token /metrics requires as `Authorization: Bearer <token>` (default: open).
    #[arg(long, env = "ENDURE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// File holding the metrics token.
    #[arg(long, env = "ENDURE_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Token the Admin calls beyond cluster status (`cluster join/leave`, replica reads,
    /// chaos controls) need on the client ports, in `endure-admin-token`, besides the API
    /// token. Default: the API token alone lets them through.
    #[arg(long, env = "ENDURE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin token.
    #[arg(long, env = "ENDURE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Secret every node of the cluster shares: calls to the internal port (Raft,
    /// forwarding, admin) without it are refused, and this node sends it to its peers.
    #[arg(long, env = "ENDURE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret.
    #[arg(long, env = "ENDURE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Certificate chain (PEM) of the client ports: with --tls-key, gRPC and HTTP speak
    /// TLS only (`https://` / `grpcs://` endpoints). Reloaded on SIGHUP or when it changes.
    #[arg(long, env = "ENDURE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "ENDURE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that must have signed a certificate every client shows on the client ports
    /// (mutual TLS). Default: clients show none.
    #[arg(long, env = "ENDURE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// The cluster CA (PEM): with --cluster-tls-cert and --cluster-tls-key, the internal
    /// port speaks mutual TLS, accepting only nodes whose certificate this CA signed, and
    /// this node checks its peers' certificates against it.
    #[arg(long, env = "ENDURE_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM) on the internal port and towards its peers; it must
    /// name the host of this node's --raft-addr (a DNS name or IP address).
    #[arg(long, env = "ENDURE_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --cluster-tls-cert.
    #[arg(long, env = "ENDURE_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,
}

/// The limits' flags (see `service::limits` for what each bounds). A TOML file takes the
/// same names, with `_` for `-`, at its top level.
#[derive(Args, Debug, Default, Deserialize)]
pub struct LimitArgs {
    /// Client writes (start, raise, terminate, ...) this node may be committing at once;
    /// more are refused with RESOURCE_EXHAUSTED / 429 and a retry hint.
    #[arg(long, env = "ENDURE_MAX_PENDING_PROPOSALS")]
    pub max_pending_proposals: Option<usize>,
    /// Calls waiting for an instance to start or complete this node may hold at once.
    #[arg(long, env = "ENDURE_MAX_WAITING_POLLS")]
    pub max_waiting_polls: Option<usize>,
    /// Worker streams (GetWorkItems) this node may hold open at once.
    #[arg(long, env = "ENDURE_MAX_WORKER_STREAMS")]
    pub max_worker_streams: Option<usize>,
    /// Turns one worker stream may hold unanswered (fewer if its SDK asks for fewer).
    #[arg(long, env = "ENDURE_MAX_TURNS_PER_WORKER")]
    pub max_turns_per_worker: Option<usize>,
    /// Activities one worker stream may hold unanswered (fewer if its SDK asks for fewer).
    #[arg(long, env = "ENDURE_MAX_ACTIVITIES_PER_WORKER")]
    pub max_activities_per_worker: Option<usize>,
    /// Turns this node's shard leaders may have sent and not had answered, over all
    /// workers; more wait, durably, until one is answered.
    #[arg(long, env = "ENDURE_MAX_TURNS_IN_FLIGHT")]
    pub max_turns_in_flight: Option<usize>,
    /// Activities this node's shard leaders may have sent and not had answered.
    #[arg(long, env = "ENDURE_MAX_ACTIVITIES_IN_FLIGHT")]
    pub max_activities_in_flight: Option<usize>,
    /// Events an instance's history may hold; a turn beyond it stalls the instance.
    #[arg(long, env = "ENDURE_MAX_HISTORY_EVENTS")]
    pub max_history_events: Option<u64>,
    /// Events an instance's inbox may hold; a client's raise beyond it is refused.
    #[arg(long, env = "ENDURE_MAX_INBOX_EVENTS")]
    pub max_inbox_events: Option<u64>,
    /// Largest input, event data, output or reason a client call may carry, in bytes
    /// (default: --max-message-bytes).
    #[arg(long, env = "ENDURE_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// Seconds a turn may stay unanswered before it goes to another worker.
    #[arg(long, env = "ENDURE_TURN_TIMEOUT_SECS")]
    pub turn_timeout_secs: Option<u64>,
    /// Seconds an activity may stay unanswered before it goes to another worker.
    #[arg(long, env = "ENDURE_ACTIVITY_TIMEOUT_SECS")]
    pub activity_timeout_secs: Option<u64>,
}

impl LimitArgs {
    /// Each limit from the flags, else the file, else its default; each must be at least 1.
    /// The payload cap defaults to the message cap, `max_message_bytes`.
    fn resolve(
        self,
        file: LimitArgs,
        max_message_bytes: usize,
    ) -> anyhow::Result<crate::service::limits::Limits> {
        use crate::service::limits::Limits;
        use std::time::Duration;
        let default = Limits::default();
        fn pick<T: Copy + PartialEq + From<u8>>(
            flag: &str,
            arg: Option<T>,
            file: Option<T>,
            default: T,
        ) -> anyhow::Result<T> {
            let value = arg.or(file).unwrap_or(default);
            if value == T::from(0) {
                bail!("{flag} must be at least 1");
            }
            Ok(value)
        }
        let secs = |flag, arg, file, default: Duration| {
            pick(flag, arg, file, default.as_secs()).map(Duration::from_secs)
        };
        let limits = Limits {
            pending_proposals: pick(
                "--max-pending-proposals",
                self.max_pending_proposals,
                file.max_pending_proposals,
                default.pending_proposals,
            )?,
            waiting_polls: pick(
                "--max-waiting-polls",
                self.max_waiting_polls,
                file.max_waiting_polls,
                default.waiting_polls,
            )?,
            worker_streams: pick(
                "--max-worker-streams",
                self.max_worker_streams,
                file.max_worker_streams,
                default.worker_streams,
            )?,
            turns_per_worker: pick(
                "--max-turns-per-worker",
                self.max_turns_per_worker,
                file.max_turns_per_worker,
                default.turns_per_worker,
            )?,
            activities_per_worker: pick(
                "--max-activities-per-worker",
                self.max_activities_per_worker,
                file.max_activities_per_worker,
                default.activities_per_worker,
            )?,
            turns_in_flight: pick(
                "--max-turns-in-flight",
                self.max_turns_in_flight,
                file.max_turns_in_flight,
                default.turns_in_flight,
            )?,
            activities_in_flight: pick(
                "--max-activities-in-flight",
                self.max_activities_in_flight,
                file.max_activities_in_flight,
                default.activities_in_flight,
            )?,
            history_events: pick(
                "--max-history-events",
                self.max_history_events,
                file.max_history_events,
                default.history_events,
            )?,
            inbox_events: pick(
                "--max-inbox-events",
                self.max_inbox_events,
                file.max_inbox_events,
                default.inbox_events,
            )?,
            payload_bytes: pick(
                "--max-payload-bytes",
                self.max_payload_bytes,
                file.max_payload_bytes,
                max_message_bytes,
            )?,
            turn_timeout: secs(
                "--turn-timeout-secs",
                self.turn_timeout_secs,
                file.turn_timeout_secs,
                default.turn_timeout,
            )?,
            activity_timeout: secs(
                "--activity-timeout-secs",
                self.activity_timeout_secs,
                file.activity_timeout_secs,
                default.activity_timeout,
            )?,
        };
        // A turn is built from one read of the history and one of the inbox, each bounded.
        let rows = endure_storage::MAX_SCAN_ROWS as u64;
        for (flag, value) in [
            ("--max-history-events", limits.history_events),
            ("--max-inbox-events", limits.inbox_events),
        ] {
            if value > rows / 2 {
                bail!("{flag} must be at most {}, not {value}", rows / 2);
            }
        }
        Ok(limits)
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The same settings as a TOML file holds them. (serde's `deny_unknown_fields` does not
/// work beside `flatten`: the keys nothing took land in `unknown`, which must be empty.)
#[derive(Debug, Default, Deserialize)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    node_id: Option<u64>,
    raft_addr: Option<SocketAddr>,
    #[serde(default)]
    peers: Vec<String>,
    #[serde(default)]
    peer_routes: Vec<String>,
    #[serde(default)]
    join: bool,
    snapshot_logs: Option<u64>,
    shards: Option<u32>,
    log_level: Option<String>,
    max_message_bytes: Option<usize>,
    log_format: Option<LogFormat>,
    #[serde(flatten)]
    limits: LimitArgs,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
    api_token: Option<String>,
    api_token_file: Option<PathBuf>,
    metrics_token: Option<String>,
    metrics_token_file: Option<PathBuf>,
    admin_token: Option<String>,
    admin_token_file: Option<PathBuf>,
    cluster_secret: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    cluster_tls_ca: Option<PathBuf>,
    cluster_tls_cert: Option<PathBuf>,
    cluster_tls_key: Option<PathBuf>,
}

/// Resolved settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub node_id: u64,
    pub raft_addr: SocketAddr,
    pub peers: BTreeMap<u64, String>,
    /// Per peer, the address this node connects to instead of the membership's.
    pub peer_routes: BTreeMap<u64, String>,
    pub join: bool,
    /// Whether to serve the internal (Raft) address: in a cluster, or when it was given so
    /// that the node can be grown into one.
    pub serve_internal: bool,
    pub snapshot_logs: u64,
    /// Shards of the cluster.
    pub shards: u32,
    /// Whether `--shards` (or the file) chose them; a default gives way to the count a data
    /// directory was created with.
    pub shards_explicit: bool,
    pub log_level: String,
    pub max_message_bytes: usize,
    pub log_format: LogFormat,
    /// Per-node limits on what clients make the node hold.
    pub limits: crate::service::limits::Limits,
    /// The client ports' token (`None`: open).
    pub api_token: Option<Token>,
    /// The token of `/metrics` (`None`: open).
    pub metrics_token: Option<Token>,
    /// The token of the client ports' admin calls (`None`: the API token suffices).
    pub admin_token: Option<Token>,
    /// The internal port's secret, shared by the cluster (`None`: open).
    pub cluster_secret: Option<Token>,
    /// TLS of the client ports (`None`: cleartext).
    pub tls: Option<ClientPortsTls>,
    /// Mutual TLS of the internal port and of the connections to peers (`None`: cleartext).
    pub cluster_tls: Option<ClusterTls>,
}

/// The client ports' certificate, and the CA clients must prove themselves to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPortsTls {
    pub pair: endure_tls::KeyPair,
    pub client_ca: Option<PathBuf>,
}

/// This node's certificate among its peers, and the CA every node's certificate chains to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTls {
    pub pair: endure_tls::KeyPair,
    pub ca: PathBuf,
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let raft_addr_given = args.raft_addr.is_some() || file.raft_addr.is_some();
        let max_message_bytes = args
            .max_message_bytes
            .or(file.max_message_bytes)
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let settings = Settings {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            grpc_addr: args
                .grpc_addr
                .or(file.grpc_addr)
                .unwrap_or_else(|| DEFAULT_GRPC_ADDR.parse().unwrap()),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| DEFAULT_HTTP_ADDR.parse().unwrap()),
            node_id: args.node_id.or(file.node_id).unwrap_or(1),
            raft_addr: args
                .raft_addr
                .or(file.raft_addr)
                .unwrap_or_else(|| DEFAULT_RAFT_ADDR.parse().unwrap()),
            peers: parse_peers(if args.peers.is_empty() {
                &file.peers
            } else {
                &args.peers
            })?,
            peer_routes: parse_id_addresses(
                "--peer-route",
                if args.peer_routes.is_empty() {
                    &file.peer_routes
                } else {
                    &args.peer_routes
                },
            )?,
            join: args.join || file.join,
            serve_internal: raft_addr_given
                || args.join
                || file.join
                || !args.peers.is_empty()
                || !file.peers.is_empty(),
            snapshot_logs: args
                .snapshot_logs
                .or(file.snapshot_logs)
                .unwrap_or(endure_raft::node::SNAPSHOT_EVERY_LOG_ENTRIES),
            shards_explicit: args.shards.or(file.shards).is_some(),
            shards: args.shards.or(file.shards).unwrap_or(
                match !args.peers.is_empty() || !file.peers.is_empty() || args.join || file.join {
                    true => DEFAULT_CLUSTER_SHARDS,
                    false => DEFAULT_SINGLE_SHARDS,
                },
            ),
            log_level: args
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            max_message_bytes,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            limits: args.limits.resolve(file.limits, max_message_bytes)?,
            api_token: secret(
                "--api-token",
                args.api_token.or(file.api_token),
                args.api_token_file.or(file.api_token_file),
            )?,
            metrics_token: secret(
                "--metrics-token",
                args.metrics_token.or(file.metrics_token),
                args.metrics_token_file.or(file.metrics_token_file),
            )?,
            admin_token: secret(
                "--admin-token",
                args.admin_token.or(file.admin_token),
                args.admin_token_file.or(file.admin_token_file),
            )?,
            cluster_secret: secret(
                "--cluster-secret",
                args.cluster_secret.or(file.cluster_secret),
                args.cluster_secret_file.or(file.cluster_secret_file),
            )?,
            tls: client_ports_tls(
                args.tls_cert.or(file.tls_cert),
                args.tls_key.or(file.tls_key),
                args.tls_client_ca.or(file.tls_client_ca),
            )?,
            cluster_tls: cluster_tls(
                args.cluster_tls_ca.or(file.cluster_tls_ca),
                args.cluster_tls_cert.or(file.cluster_tls_cert),
                args.cluster_tls_key.or(file.cluster_tls_key),
            )?,
        };
        if settings.node_id == 0 {
            bail!("--node-id must be at least 1");
        }
        if !(1..=endure_engine::shard::MAX_SHARDS).contains(&settings.shards) {
            bail!(
                "--shards must be between 1 and {}, not {}",
                endure_engine::shard::MAX_SHARDS,
                settings.shards
            );
        }
        if settings.snapshot_logs == 0 {
            bail!("--snapshot-logs must be at least 1");
        }
        if settings.join && !settings.peers.is_empty() {
            bail!("--join starts a node that waits to be added; it takes no --peer");
        }
        if !settings.peers.is_empty() && !settings.peers.contains_key(&settings.node_id) {
            bail!("--peer must list this node ({}) too", settings.node_id);
        }
        if settings.max_message_bytes < 1024 {
            bail!("--max-message-bytes must be at least 1024");
        }
        Ok(settings)
    }
}

/// A token given as `flag` (its value) or `flag`-file (a path), not both.
fn secret(
    flag: &str,
    value: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<Option<Token>> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("give {flag} or {flag}-file, not both"),
        (Some(value), None) => Token::new(flag, &value).map(Some),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {flag}-file {}", path.display()))?;
            Token::new(&format!("{flag}-file {}", path.display()), &text).map(Some)
        }
        (None, None) => Ok(None),
    }
}

/// The client ports' TLS: a certificate needs its key, and a client CA needs both.
fn client_ports_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> anyhow::Result<Option<ClientPortsTls>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(ClientPortsTls {
            pair: endure_tls::KeyPair { cert, key },
            client_ca,
        })),
        (None, None) if client_ca.is_some() => {
            bail!("--tls-client-ca needs --tls-cert and --tls-key (the ports' own certificate)")
        }
        (None, None) => Ok(None),
        (Some(_), None) => bail!("--tls-cert needs --tls-key (the certificate's private key)"),
        (None, Some(_)) => bail!("--tls-key needs --tls-cert (the certificate it belongs to)"),
    }
}

/// The internal port's mutual TLS: all three files, or none.
fn cluster_tls(
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> anyhow::Result<Option<ClusterTls>> {
    match (ca, cert, key) {
        (Some(ca), Some(cert), Some(key)) => Ok(Some(ClusterTls {
            pair: endure_tls::KeyPair { cert, key },
            ca,
        })),
        (None, None, None) => Ok(None),
        _ => bail!(
            "mutual TLS between nodes needs all three of --cluster-tls-ca, --cluster-tls-cert \
             and --cluster-tls-key"
        ),
    }
}

/// Parses `ID=HOST:PORT` peers; IDs are unique and at least 1.
fn parse_peers(peers: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    parse_id_addresses("--peer", peers)
}

/// Parses the `ID=HOST:PORT` values of `flag`; IDs are unique and at least 1.
fn parse_id_addresses(flag: &str, values: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut parsed = BTreeMap::new();
    for value in values {
        let Some((id, addr)) = value.split_once('=') else {
            bail!("{flag} {value:?} is not ID=HOST:PORT");
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("{flag} {value:?}: the ID is not a number"))?;
        if id == 0 {
            bail!("{flag} {value:?}: node IDs start at 1");
        }
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none()
        {
            bail!("{flag} {value:?}: the address needs a port");
        }
        if parsed.insert(id, addr.to_string()).is_some() {
            bail!("{flag} lists node {id} twice");
        }
    }
    Ok(parsed)
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let file: FileSettings =
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    if let Some(key) = file.unknown.keys().next() {
        bail!(
            "invalid config file {}: unknown field `{key}`",
            path.display()
        );
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endure.toml");
        std::fs::write(&path, "node_id = 3\ngrpc_addr = \"127.0.0.1:6000\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            grpc_addr: Some("127.0.0.1:7000".parse().unwrap()),
            ..ServeArgs::default()
        };
        let settings = Settings::resolve(args).unwrap();
        assert_eq!(settings.node_id, 3);
        assert_eq!(settings.grpc_addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(settings.http_addr, DEFAULT_HTTP_ADDR.parse().unwrap());
    }

    #[test]
    fn peers_are_parsed_and_checked() {
        let ok = parse_peers(&["1=10.0.0.1:7000".into(), "2=node-2:7000".into()]).unwrap();
        assert_eq!(ok[&2], "node-2:7000");
        for bad in ["x=1:2", "1", "0=a:1", "1=host"] {
            assert!(parse_peers(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(parse_peers(&["1=a:1".into(), "1=b:1".into()]).is_err());
        let missing = Settings::resolve(ServeArgs {
            node_id: Some(3),
            peers: vec!["1=a:1".into()],
            ..ServeArgs::default()
        });
        assert!(missing.is_err());
        let routes = Settings::resolve(ServeArgs {
            peer_routes: vec!["2=127.0.0.1:9002".into()],
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(routes.peer_routes[&2], "127.0.0.1:9002");
        let bad = Settings::resolve(ServeArgs {
            peer_routes: vec!["2=nowhere".into()],
            ..ServeArgs::default()
        });
        assert!(format!("{:#}", bad.unwrap_err()).contains("--peer-route"));
    }

    #[test]
    fn a_cluster_defaults_to_eight_shards_and_a_lone_node_to_one() {
        let lone = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!((lone.shards, lone.shards_explicit), (1, false));
        let clustered = Settings::resolve(ServeArgs {
            peers: vec!["1=a:1".into(), "2=b:1".into(), "3=c:1".into()],
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!((clustered.shards, clustered.shards_explicit), (8, false));
        let joining = Settings::resolve(ServeArgs {
            join: true,
            node_id: Some(4),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(joining.shards, 8);
        let chosen = Settings::resolve(ServeArgs {
            shards: Some(3),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!((chosen.shards, chosen.shards_explicit), (3, true));
        for bad in [0, 257] {
            let error = Settings::resolve(ServeArgs {
                shards: Some(bad),
                ..ServeArgs::default()
            })
            .unwrap_err();
            assert!(format!("{error:#}").contains("--shards must be between 1 and 256"));
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "grcp_addr = \"x\"\n").unwrap();
        let error = Settings::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("unknown field"), "{error:#}");
        let zero = Settings::resolve(ServeArgs {
            node_id: Some(0),
            ..ServeArgs::default()
        });
        assert!(zero.is_err());
    }

    #[test]
    fn tls_files_come_in_pairs_and_limits_are_at_least_one() {
        let refused = |args: ServeArgs| format!("{:#}", Settings::resolve(args).unwrap_err());
        let cert_alone = refused(ServeArgs {
            tls_cert: Some("c.pem".into()),
            ..ServeArgs::default()
        });
        assert!(
            cert_alone.contains("--tls-cert needs --tls-key"),
            "{cert_alone}"
        );
        let ca_alone = refused(ServeArgs {
            tls_client_ca: Some("ca.pem".into()),
            ..ServeArgs::default()
        });
        assert!(ca_alone.contains("--tls-client-ca needs"), "{ca_alone}");
        let cluster_part = refused(ServeArgs {
            cluster_tls_ca: Some("ca.pem".into()),
            cluster_tls_cert: Some("n.pem".into()),
            ..ServeArgs::default()
        });
        assert!(cluster_part.contains("all three"), "{cluster_part}");
        let zero = refused(ServeArgs {
            limits: LimitArgs {
                max_waiting_polls: Some(0),
                ..LimitArgs::default()
            },
            ..ServeArgs::default()
        });
        assert!(
            zero.contains("--max-waiting-polls must be at least 1"),
            "{zero}"
        );
        let pair = Settings::resolve(ServeArgs {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(pair.tls.map(|t| t.pair.key), Some("k.pem".into()));
    }
}
