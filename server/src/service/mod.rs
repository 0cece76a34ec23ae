//! What a client can ask of Endure, independent of the transport: one function per
//! operation, each taking plain messages and answering `Result<_, service::Error>`. The
//! gRPC service (`grpc::taskhub`) and the HTTP API (`http::workflow`) are thin adapters over
//! these, so both front ends behave the same and map errors once each.
//!
//! - [`forward`]: a node that is not the leader passes the call to the leader (once).
//! - [`start`]: start an instance, rerun one from an event.
//! - [`manage`]: raise an event, terminate, suspend, resume, purge.
//! - [`query`]: get an instance, its history, the list of instances.
//! - [`wait`]: long polls until an instance starts or completes.
//! - [`answers`]: a worker's answers to turns and activities.
//! - [`error`]: the one error type.

pub mod answers;
pub mod error;
pub mod forward;
pub mod manage;
pub mod query;
pub mod start;
pub mod wait;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use endure_raft::node::Node;
use endure_raft::state_machine::Shared;
use endure_storage::Store;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::proposer::Proposer;
use crate::dispatch;
pub use error::Error;
use forward::Forwarder;

/// Longest instance ID or name accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1_024;

/// How a call arrived, as far as the service cares.
#[derive(Clone, Debug, Default)]
pub struct Call {
    /// When the caller stops waiting (the gRPC deadline, a little early).
    pub deadline: Option<Instant>,
    /// Another node already forwarded this call: it is never forwarded again.
    pub forwarded: bool,
}

/// What runs on the leader only, published while this node leads.
#[derive(Clone)]
pub struct LeaderServices {
    pub dispatcher: dispatch::Handle,
}

/// The workflow service: cheap to clone, shares the node's components.
#[derive(Clone)]
pub struct Workflows {
    pub(crate) proposer: Proposer,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) node: Node,
    /// The leader-only services while this node leads (`None` otherwise).
    leading: watch::Receiver<Option<LeaderServices>>,
    pub(crate) forward: Forwarder,
    /// Numbers the worker streams opened on this node.
    pub(crate) next_worker_id: Arc<AtomicU64>,
    /// Largest request accepted, in bytes; larger ones get [`Error::TooLarge`].
    max_message_bytes: usize,
    /// Turns true on shutdown: long polls end with UNAVAILABLE so clients retry elsewhere.
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// What [`Workflows`] is built from.
pub struct Options {
    pub node: Node,
    pub proposer: Proposer,
    pub leading: watch::Receiver<Option<LeaderServices>>,
    pub max_message_bytes: usize,
    pub shutdown: watch::Receiver<bool>,
}

impl Workflows {
    pub fn new(options: Options) -> Workflows {
        Workflows {
            proposer: options.proposer,
            store: options.node.store.clone(),
            shared: options.node.shared.clone(),
            forward: Forwarder::new(options.node.clone()),
            node: options.node,
            leading: options.leading,
            next_worker_id: Arc::new(AtomicU64::new(0)),
            max_message_bytes: options.max_message_bytes,
            shutdown: options.shutdown,
        }
    }

    /// The dispatcher, or UNAVAILABLE while this node is not (yet) a serving leader.
    pub fn dispatcher(&self) -> Result<dispatch::Handle, Error> {
        self.leading
            .borrow()
            .as_ref()
            .map(|services| services.dispatcher.clone())
            .ok_or_else(|| {
                Error::unavailable("this node is not serving as leader right now; retry")
            })
    }

    /// Why this node cannot serve workflow calls now, if it cannot: shutting down, no
    /// leader known, or leading but not yet serving (its time line is being fixed).
    pub fn not_ready(&self) -> Option<&'static str> {
        if *self.shutdown.borrow() {
            return Some("the node is shutting down");
        }
        match self.node.leader() {
            None => Some("no Raft leader is known to this node yet"),
            Some(leader) if leader == self.node.node_id && self.leading.borrow().is_none() => {
                Some("this node was elected leader and is starting its services")
            }
            Some(_) => None,
        }
    }

    /// Refuses a request over the configured size (the transport's own cap is higher, so
    /// that this check, with its clear message, is the one clients meet).
    pub fn within_limit(&self, message: &impl prost::Message) -> Result<(), Error> {
        let size = message.encoded_len();
        if size > self.max_message_bytes {
            return Err(Error::too_large(format!(
                "the request is {size} bytes; at most {} bytes are accepted",
                self.max_message_bytes
            )));
        }
        Ok(())
    }

    /// Waits until this node may serve a linearizable read.
    async fn linearizable(&self) -> Result<(), Error> {
        self.proposer.linearizable().await.map_err(Error::from)
    }
}

/// Refuses an empty or over-long ID or name.
pub fn require(value: &str, what: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid_argument(format!("{what} is required")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(Error::invalid_argument(format!(
            "{what} is {} bytes long; at most {MAX_ID_BYTES} are allowed",
            value.len()
        )));
    }
    Ok(())
}

/// A fresh instance ID: a random UUID in hex (letters and digits only, like Python's
/// `uuid4().hex`), so it passes every ID check.
pub fn new_instance_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
