//! What a client can ask of Endure, independent of the transport: one function per
//! operation, each taking plain messages and answering `Result<_, service::Error>`. The
//! gRPC service (`grpc::taskhub`) and the HTTP API (`http::workflow`) are thin adapters over
//! these, so both front ends behave the same and map errors once each.
//!
//! - [`forward`]: a node that does not lead an instance's shard passes the call to the
//!   shard's leader (once).
//! - [`start`]: start an instance, rerun one from an event.
//! - [`manage`]: raise an event, terminate, suspend, resume, purge.
//! - [`query`]: get an instance, its history, the list of instances.
//! - [`wait`]: long polls until an instance starts or completes.
//! - [`answers`]: a worker's answers to turns and activities.
//! - [`error`]: the one error type.
//! - [`limits`]: per-node limits on pending writes, waiting polls and worker streams.

pub mod answers;
pub mod error;
pub mod forward;
pub mod limits;
pub mod manage;
pub mod query;
pub mod start;
pub mod wait;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::shards::{Shard, Shards};
use crate::dispatch;
pub use error::Error;

/// Longest instance ID or name accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1_024;

/// How a call arrived, as far as the service cares.
#[derive(Clone, Debug, Default)]
pub struct Call {
    /// When the caller stops waiting (the gRPC deadline, a little early).
    pub deadline: Option<Instant>,
    /// Another node already forwarded this call: it is never forwarded again.
    pub forwarded: bool,
    /// A forwarded query asks for this one shard only (the forwarding node merges the
    /// shards' answers).
    pub shard: Option<u32>,
}

/// What runs on a shard's leader only, published while this node leads the shard.
#[derive(Clone)]
pub struct LeaderServices {
    pub dispatcher: dispatch::Handle,
}

/// The workflow service: cheap to clone, shares the node's components.
#[derive(Clone)]
pub struct Workflows {
    /// Every shard of this node; an instance's calls go to its shard.
    pub(crate) shards: Shards,
    /// Numbers the worker streams opened on this node.
    pub(crate) next_worker_id: Arc<AtomicU64>,
    /// Largest request accepted, in bytes; larger ones get [`Error::TooLarge`].
    max_message_bytes: usize,
    /// Turns true on shutdown: long polls end with UNAVAILABLE so clients retry elsewhere.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The per-node limits on what clients make this node hold.
    pub(crate) gates: limits::Gates,
    pub(crate) limits: limits::Limits,
    /// Told when a place under a cap on work in flight is given back (see
    /// `dispatch::budget`); a worker stream's caps tell it too.
    pub(crate) freed: Arc<tokio::sync::Notify>,
}

/// What [`Workflows`] is built from.
pub struct Options {
    pub shards: Shards,
    pub max_message_bytes: usize,
    pub shutdown: watch::Receiver<bool>,
    pub limits: limits::Limits,
    /// The node's notification that room was freed under the caps on work in flight.
    pub freed: Arc<tokio::sync::Notify>,
}

impl Workflows {
    pub fn new(options: Options) -> Workflows {
        Workflows {
            shards: options.shards,
            next_worker_id: Arc::new(AtomicU64::new(0)),
            max_message_bytes: options.max_message_bytes,
            shutdown: options.shutdown,
            gates: limits::Gates::new(options.limits),
            limits: options.limits,
            freed: options.freed,
        }
    }

    /// Proposes a client's write on `shard` (this node leads it), within
    /// `--max-pending-proposals`; an engine rejection becomes its error.
    pub(crate) async fn propose(
        &self,
        shard: &Shard,
        kind: endure_engine::records::command::Kind,
    ) -> Result<endure_raft::types::Response, Error> {
        let _slot = self.gates.proposal()?;
        error::check(shard.proposer.propose(kind).await)
    }

    /// The shard that owns `instance_id`.
    pub(crate) fn shard(&self, instance_id: &str) -> &Shard {
        self.shards.of(instance_id)
    }

    /// Why this node cannot serve workflow calls now, if it cannot: shutting down, a shard
    /// with no leader known, or a shard led here whose services are not yet serving (its
    /// time line is being fixed).
    pub fn not_ready(&self) -> Option<String> {
        if *self.shutdown.borrow() {
            return Some("the node is shutting down".into());
        }
        for shard in self.shards.iter() {
            match shard.node.leader() {
                None => {
                    return Some(format!(
                        "no Raft leader of shard {} is known to this node yet",
                        shard.id
                    ))
                }
                Some(leader) if leader == shard.node.node_id && !shard.serving() => {
                    return Some(format!(
                        "this node was elected leader of shard {} and is starting its services",
                        shard.id
                    ))
                }
                Some(_) => {}
            }
        }
        None
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

    /// Refuses a payload (input, event data, output, reason) over `--max-payload-bytes`.
    pub fn payload_within_limit(&self, what: &str, payload: Option<&String>) -> Result<(), Error> {
        let size = payload.map_or(0, String::len);
        let limit = self.limits.payload_bytes;
        if size > limit {
            return Err(Error::too_large(format!(
                "the {what} is {size} bytes; at most {limit} bytes are accepted \
                 (--max-payload-bytes)"
            )));
        }
        Ok(())
    }
}

/// Waits until this node may serve a linearizable read of `shard`.
async fn linearizable(shard: &Shard) -> Result<(), Error> {
    shard.proposer.linearizable().await.map_err(Error::from)
}

/// Refuses an empty or over-long ID or name, or one with a control character (a newline
/// or NUL in an ID would forge log lines and break every tool that reads IDs as text).
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
    if let Some(control) = value.chars().find(|c| c.is_control()) {
        return Err(Error::invalid_argument(format!(
            "{what} contains the control character U+{:04X}; IDs and names must be printable",
            control as u32
        )));
    }
    Ok(())
}

/// A fresh instance ID: a random UUID in hex (letters and digits only, like Python's
/// `uuid4().hex`), so it passes every ID check.
pub fn new_instance_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_must_be_present_short_and_printable() {
        assert!(require("order-17:0001 é", "instanceId").is_ok());
        assert!(require("", "instanceId")
            .unwrap_err()
            .message()
            .contains("required"));
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert!(require(&long, "name")
            .unwrap_err()
            .message()
            .contains("at most"));
        for bad in ["a\nb", "nul\0", "tab\there", "\u{7f}"] {
            let refused = require(bad, "instanceId").unwrap_err();
            assert!(matches!(refused, Error::InvalidArgument(_)), "{bad:?}");
            assert!(
                refused.message().contains("control character U+"),
                "{refused}"
            );
        }
    }
}
