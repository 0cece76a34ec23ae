//! Key layouts. Big-endian so RocksDB's byte order is the tables' order; instance IDs are
//! length-prefixed so one ID is never a prefix of another's rows; signed numbers have their
//! sign bit flipped so negative values sort first.

use endure_engine::records::TimerKey;
use endure_engine::Mark;
use prost_types::Timestamp;

use crate::Error;

/// `len(u32) ++ id`: the prefix of every row of one instance.
pub fn instance(instance_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + instance_id.len() + 8);
    key.extend_from_slice(&(instance_id.len() as u32).to_be_bytes());
    key.extend_from_slice(instance_id.as_bytes());
    key
}

/// `instance ++ seq(u64)`: history and inbox rows.
pub fn sequenced(instance_id: &str, seq: u64) -> Vec<u8> {
    let mut key = instance(instance_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `instance ++ task_id(i32, sign-flipped)`: activity rows.
pub fn activity(instance_id: &str, task_id: i32) -> Vec<u8> {
    let mut key = instance(instance_id);
    key.extend_from_slice(&flip_i32(task_id));
    key
}

/// `fire_at.seconds(i64) ++ fire_at.nanos(i32) ++ instance ++ timer_id(i32)`, all
/// sign-flipped: timer rows in due order.
pub fn timer(key: &TimerKey) -> Vec<u8> {
    let at = key.fire_at.unwrap_or_default();
    let mut bytes = Vec::with_capacity(12 + 4 + key.instance_id.len() + 4);
    bytes.extend_from_slice(&((at.seconds as u64) ^ (1 << 63)).to_be_bytes());
    bytes.extend_from_slice(&flip_i32(at.nanos));
    bytes.extend_from_slice(&instance(&key.instance_id));
    bytes.extend_from_slice(&flip_i32(key.timer_id));
    bytes
}

/// The inverse of [`timer`].
pub fn parse_timer(bytes: &[u8]) -> Result<TimerKey, Error> {
    let corrupt = |reason: &str| Error::Corruption {
        table: "timers",
        reason: reason.to_string(),
    };
    if bytes.len() < 20 {
        return Err(corrupt("key too short"));
    }
    let seconds = (u64::from_be_bytes(bytes[0..8].try_into().unwrap()) ^ (1 << 63)) as i64;
    let nanos = unflip_i32(&bytes[8..12]);
    let (instance_id, rest) =
        parse_instance(&bytes[12..]).ok_or_else(|| corrupt("bad instance id"))?;
    if rest.len() != 4 {
        return Err(corrupt("bad timer id"));
    }
    Ok(TimerKey {
        fire_at: Some(Timestamp { seconds, nanos }),
        instance_id,
        timer_id: unflip_i32(rest),
    })
}

/// Splits a length-prefixed instance ID off the front of a key.
pub fn parse_instance(bytes: &[u8]) -> Option<(String, &[u8])> {
    let len = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let id = bytes.get(4..4 + len)?;
    Some((String::from_utf8(id.to_vec()).ok()?, &bytes[4 + len..]))
}

/// The trailing u64 sequence number of a history or inbox key.
pub fn parse_seq(rest: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The trailing task id of an activity key.
pub fn parse_task_id(rest: &[u8]) -> Option<i32> {
    (rest.len() == 4).then(|| unflip_i32(rest))
}

/// `seq(u64)`: outbox rows in sequence order.
pub fn outbox(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The inverse of [`outbox`].
pub fn parse_outbox(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// `0x00`: the next outbox sequence number; `0x01 ++ shard(u32)`: the last one applied
/// from that source shard.
pub fn mark(mark: Mark) -> Vec<u8> {
    match mark {
        Mark::OutboxNext => vec![0],
        Mark::DeliveredFrom(shard) => {
            let mut key = vec![1];
            key.extend_from_slice(&shard.to_be_bytes());
            key
        }
    }
}

/// The inverse of [`mark`].
pub fn parse_mark(bytes: &[u8]) -> Option<Mark> {
    match bytes {
        [0] => Some(Mark::OutboxNext),
        [1, shard @ ..] => Some(Mark::DeliveredFrom(u32::from_be_bytes(
            shard.try_into().ok()?,
        ))),
        _ => None,
    }
}

fn flip_i32(value: i32) -> [u8; 4] {
    ((value as u32) ^ (1 << 31)).to_be_bytes()
}

fn unflip_i32(bytes: &[u8]) -> i32 {
    (u32::from_be_bytes(bytes.try_into().unwrap()) ^ (1 << 31)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seconds: i64, nanos: i32, id: &str, timer_id: i32) -> TimerKey {
        TimerKey {
            fire_at: Some(Timestamp { seconds, nanos }),
            instance_id: id.into(),
            timer_id,
        }
    }

    #[test]
    fn timer_keys_sort_by_due_time_and_round_trip() {
        let keys = [
            key(-5, 0, "z", 1),
            key(1, 0, "b", -1),
            key(1, 5, "a", 2),
            key(253_402_300_799, 999_999_999, "a", 3),
        ];
        let encoded: Vec<Vec<u8>> = keys.iter().map(timer).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        for (k, bytes) in keys.iter().zip(&encoded) {
            assert_eq!(&parse_timer(bytes).unwrap(), k);
        }
        assert!(parse_timer(&encoded[0][..10]).is_err());
    }

    #[test]
    fn outbox_and_mark_keys_round_trip_in_order() {
        assert!(outbox(2) < outbox(256));
        assert_eq!(parse_outbox(&outbox(77)), Some(77));
        for m in [
            Mark::OutboxNext,
            Mark::DeliveredFrom(0),
            Mark::DeliveredFrom(7),
        ] {
            assert_eq!(parse_mark(&mark(m)), Some(m));
        }
        assert_eq!(mark(Mark::DeliveredFrom(1)), [1, 0, 0, 0, 1]);
        assert_eq!(parse_mark(&[2]), None);
        assert_eq!(parse_mark(&[1, 0]), None);
    }

    #[test]
    fn one_id_is_never_a_prefix_of_another() {
        let a = sequenced("ab", 1);
        let b = instance("abc");
        assert!(!b.starts_with(&instance("ab")));
        assert!(a.starts_with(&instance("ab")));
        assert!(activity("x", -1) < activity("x", 0));
    }
}
