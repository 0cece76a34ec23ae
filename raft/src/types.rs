//! The openraft type configuration: what a log entry carries and what applying it returns.

use std::io::Cursor;

use endure_proto::endure::internal::Command;
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Node IDs are small integers given by the operator (`--node-id`); never reused.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Endure's Raft: entries carry engine commands, applying one returns its outcome.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Raft = openraft::Raft<TypeConfig>;

/// One engine command, the application payload of a Raft entry.
///
/// Serialized as its protobuf bytes: openraft asks for serde, the durable format is prost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request(pub Command);

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::de::Deserialize::deserialize(deserializer)?;
        Command::decode(bytes.as_slice())
            .map(Request)
            .map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0.kind.as_ref().map(std::mem::discriminant))
    }
}

/// What applying one entry answered: the engine's outcome, for the client that proposed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// `None` when the command was applied; otherwise why it was refused.
    pub rejection: Option<Rejection>,
    /// Instances the command purged (PurgeInstances reports the count).
    pub purged: u32,
}

/// A command the state machine refused (nothing was changed), and why.
pub use endure_engine::{Rejection, RejectionCode};
