//! Byte formats of what the log store writes: log entries, their keys, and Raft metadata.
//!
//! A log entry is stored as a fixed header followed by its payload (integers big-endian):
//!
//! | offset | size | field                                           |
//! |--------|------|-------------------------------------------------|
//! | 0      | 1    | format version ([`ENTRY_FORMAT_VERSION`])       |
//! | 1      | 8    | term                                            |
//! | 9      | 8    | node id of the leader that proposed the entry   |
//! | 17     | 8    | log index                                       |
//! | 25     | 1    | payload kind: 0 blank, 1 normal, 2 membership   |
//! | 26     | ...  | payload bytes                                   |
//!
//! A normal payload is the protobuf encoding of the engine [`Command`] (the same bytes that
//! travel between nodes); a membership payload is openraft's `Membership` as JSON, which
//! openraft's `serde` feature keeps stable and which is rare and small. The version byte lets
//! a later format be read next to this one. Small Raft metadata (vote, log ids) is JSON.

use endure_proto::endure::internal::Command;
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::types::{Entry, LogId, Membership, Request};

/// Version of the entry layout above; bump it (and keep reading the old one) to change it.
pub const ENTRY_FORMAT_VERSION: u8 = 1;

/// Bytes before the payload: version, term, leader node id, index, payload kind.
const ENTRY_HEADER_LEN: usize = 26;

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Key of the entry at `index`: big-endian so RocksDB's byte order is log order.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The log index a `raft_log` key names.
pub fn decode_log_key(key: &[u8]) -> Result<u64, Error> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| corrupt("log key", format!("{} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Encodes one entry in the layout described in the module docs.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, Error> {
    let (kind, payload) = match &entry.payload {
        EntryPayload::Blank => (KIND_BLANK, Vec::new()),
        EntryPayload::Normal(request) => (KIND_NORMAL, request.0.encode_to_vec()),
        EntryPayload::Membership(membership) => {
            (KIND_MEMBERSHIP, encode_json("membership", membership)?)
        }
    };
    let mut bytes = Vec::with_capacity(ENTRY_HEADER_LEN + payload.len());
    bytes.push(ENTRY_FORMAT_VERSION);
    bytes.extend_from_slice(&entry.log_id.leader_id.term.to_be_bytes());
    bytes.extend_from_slice(&entry.log_id.leader_id.node_id.to_be_bytes());
    bytes.extend_from_slice(&entry.log_id.index.to_be_bytes());
    bytes.push(kind);
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Decodes an entry written by [`encode_entry`]; any malformed input is `Error::Corruption`.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, Error> {
    let log_id = decode_entry_log_id(bytes)?;
    let payload_bytes = &bytes[ENTRY_HEADER_LEN..];
    let payload = match bytes[ENTRY_HEADER_LEN - 1] {
        KIND_BLANK if payload_bytes.is_empty() => EntryPayload::Blank,
        KIND_BLANK => return Err(corrupt("log entry", "blank entry with payload bytes")),
        KIND_NORMAL => EntryPayload::Normal(decode_command(payload_bytes)?),
        KIND_MEMBERSHIP => {
            EntryPayload::Membership(decode_json::<Membership>("membership", payload_bytes)?)
        }
        other => {
            return Err(corrupt(
                "log entry",
                format!("unknown payload kind {other}"),
            ))
        }
    };
    Ok(Entry { log_id, payload })
}

/// Reads only the log id of an encoded entry: finding the last log id needs no payload.
///
/// Also checks the version byte and that the whole header is present, so a successful return
/// means `bytes` holds at least [`ENTRY_HEADER_LEN`] bytes.
pub fn decode_entry_log_id(bytes: &[u8]) -> Result<LogId, Error> {
    if bytes.len() < ENTRY_HEADER_LEN {
        return Err(corrupt(
            "log entry",
            format!("{} bytes, shorter than the header", bytes.len()),
        ));
    }
    if bytes[0] != ENTRY_FORMAT_VERSION {
        return Err(corrupt(
            "log entry",
            format!("unknown format version {}", bytes[0]),
        ));
    }
    let term = u64_at(bytes, 1)?;
    let node_id = u64_at(bytes, 9)?;
    let index = u64_at(bytes, 17)?;
    Ok(LogId::new(CommittedLeaderId::new(term, node_id), index))
}

/// JSON bytes of a small metadata value (vote, log id, membership).
pub fn encode_json<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Encode {
        what,
        reason: e.to_string(),
    })
}

/// Decodes JSON written by [`encode_json`]; a failure means the stored bytes are corrupt.
pub fn decode_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what, e.to_string()))
}

fn decode_command(bytes: &[u8]) -> Result<Request, Error> {
    Command::decode(bytes)
        .map(Request)
        .map_err(|e| corrupt("command", e.to_string()))
}

/// The big-endian u64 at `offset`; the caller has checked the length, this never panics anyway.
fn u64_at(bytes: &[u8], offset: usize) -> Result<u64, Error> {
    bytes
        .get(offset..offset + 8)
        .and_then(|slice| <[u8; 8]>::try_from(slice).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt("log entry", format!("no u64 at offset {offset}")))
}

fn corrupt(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Corruption {
        what,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::BasicNode;

    use super::*;

    fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node_id), index)
    }

    fn round_trip(entry: Entry) {
        let bytes = encode_entry(&entry).expect("encode");
        let decoded = decode_entry(&bytes).expect("decode");
        assert_eq!(decoded.log_id, entry.log_id);
        assert_eq!(decoded.payload, entry.payload);
        assert_eq!(decode_entry_log_id(&bytes).expect("log id"), entry.log_id);
    }

    fn membership() -> Membership {
        let voters = BTreeSet::from([1, 2, 3]);
        let nodes = BTreeMap::from([
            (1, BasicNode::new("10.0.0.1:7000")),
            (2, BasicNode::new("10.0.0.2:7000")),
            (3, BasicNode::new("10.0.0.3:7000")),
            (4, BasicNode::new("10.0.0.4:7000")),
        ]);
        Membership::new(vec![voters], nodes)
    }

    #[test]
    fn blank_round_trips() {
        round_trip(Entry {
            log_id: log_id(3, 2, 17),
            payload: EntryPayload::Blank,
        });
    }

    #[test]
    fn normal_round_trips() {
        let command = Command {
            id_seed: "seed-42".to_string(),
            ..Command::default()
        };
        round_trip(Entry {
            log_id: log_id(u64::MAX, 7, 1 << 40),
            payload: EntryPayload::Normal(Request(command)),
        });
    }

    #[test]
    fn membership_round_trips() {
        round_trip(Entry {
            log_id: log_id(1, 1, 0),
            payload: EntryPayload::Membership(membership()),
        });
    }

    #[test]
    fn header_is_the_documented_layout() {
        let bytes = encode_entry(&Entry {
            log_id: log_id(1, 2, 3),
            payload: EntryPayload::Blank,
        })
        .expect("encode");
        let mut expected = vec![ENTRY_FORMAT_VERSION];
        for n in [1u64, 2, 3] {
            expected.extend_from_slice(&n.to_be_bytes());
        }
        expected.push(KIND_BLANK);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let entry = Entry {
            log_id: log_id(1, 1, 5),
            payload: EntryPayload::Membership(membership()),
        };
        let bytes = encode_entry(&entry).expect("encode");
        for len in 0..bytes.len() {
            let result = decode_entry(&bytes[..len]);
            assert!(
                matches!(result, Err(Error::Corruption { .. })),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let mut unknown_kind = encode_entry(&Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Blank,
        })
        .expect("encode");
        unknown_kind[ENTRY_HEADER_LEN - 1] = 9;
        let mut bad_version = unknown_kind.clone();
        bad_version[0] = 0xff;
        let mut bad_command = unknown_kind.clone();
        bad_command[ENTRY_HEADER_LEN - 1] = KIND_NORMAL;
        bad_command.extend_from_slice(&[0xff, 0xff, 0xff]);
        let mut blank_with_bytes = unknown_kind.clone();
        blank_with_bytes[ENTRY_HEADER_LEN - 1] = KIND_BLANK;
        blank_with_bytes.push(1);
        for bytes in [
            unknown_kind,
            bad_version,
            bad_command,
            blank_with_bytes,
            vec![0xde; 64],
        ] {
            assert!(
                matches!(decode_entry(&bytes), Err(Error::Corruption { .. })),
                "{bytes:?} decoded"
            );
        }
    }

    #[test]
    fn log_keys_sort_in_index_order_and_round_trip() {
        assert!(log_key(255) < log_key(256));
        assert_eq!(decode_log_key(&log_key(1 << 33)).expect("key"), 1 << 33);
        assert!(decode_log_key(&[1, 2, 3]).is_err());
    }

    #[test]
    fn corrupt_json_is_an_error() {
        let result = decode_json::<LogId>("last_purged", b"{\"leader_id\":");
        assert!(matches!(
            result,
            Err(Error::Corruption {
                what: "last_purged",
                ..
            })
        ));
    }
}
