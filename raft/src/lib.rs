//! Raft replication of Endure: openraft's type configuration and its durable storage.
//!
//! Modules:
//! - [`types`]: the openraft type configuration ([`TypeConfig`]): what an entry carries
//!   ([`Request`]) and what applying it answers ([`Response`]), plus type aliases.
//! - [`log_store`]: the durable Raft log ([`LogStore`]) in RocksDB column families
//!   [`LOG_COLUMN_FAMILIES`], fsynced before openraft sees anything as persisted.
//! - [`group_commit`]: the one thread per node that syncs appended entries of every shard,
//!   many per fsync.
//! - [`codec`]: byte formats of stored log entries, log keys and Raft metadata.
//! - [`state_machine`]: applies committed commands through the engine into the store.
//! - [`node`]: opening a data directory and starting Raft on it; a running [`node::Node`]
//!   answers who leads, the members, and watches for changes ([`status`]).
//! - [`status`]: the cluster as this node sees it ([`status::Status`], [`status::RaftWatch`]),
//!   read from openraft's metrics.
//! - [`probe`]: "does a cluster already exist?", asked of the peers before a first start,
//!   through a [`probe::PeerProbe`] the caller passes.
//! - [`network`]: openraft RPCs to peers over tonic; [`rpc`]: serving them.
//! - [`error`]: the crate's [`Error`].

// openraft's storage traits answer `StorageError`, a large type this crate does not choose.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod error;
pub mod group_commit;
pub mod log_store;
pub mod network;
pub mod node;
pub mod probe;
pub mod rpc;
pub mod state_machine;
pub mod status;
pub mod types;

pub use error::Error;
pub use log_store::{LogStore, LOG_COLUMN_FAMILIES};
pub use types::{NodeId, Request, Response, TypeConfig};
