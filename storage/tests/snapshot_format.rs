//! The snapshot format does not drift: both stores export a known state as the same bytes an
//! earlier build wrote ([`GOLDEN`], captured before the format moved into `snapshot.rs`), and
//! those bytes still load.

use endure_engine::records::{ActivityRecord, InstanceRecord, TimerKey, TimerRecord};
use endure_engine::Write;
use endure_proto::history_event::EventType;
use endure_proto::{EventRaisedEvent, HistoryEvent};
use endure_storage::memory::MemoryStore;
use endure_storage::rocks::{open_db, RocksStore};
use endure_storage::Store;
use prost_types::Timestamp;

/// The export of [`known_writes`] with applied meta `meta-7`, in hex.
const GOLDEN: &str = concat!(
    "0a1b12080000000477662d311a0f0a0477662d311201571a02653160020a35080112100000000477662d3100",
    "000000000000001a1f08ffffffffffffffffff011204080210038a010b0a02683012050a032278220a350801",
    "12100000000477662d3100000000000000011a1f08ffffffffffffffffff011204080210038a010b0a026831",
    "12050a032278220a35080212100000000477662d3100000000000000001a1f08ffffffffffffffffff011204",
    "080210038a010b0a02693012050a032278220a150803120c0000000477662d317ffffffe1a030a01410a2208",
    "041218800000006553f100800000050000000477662d31800000041a040a0265310a13080512076170706c69",
    "65641a066d6574612d37",
);

fn raised(name: &str) -> HistoryEvent {
    HistoryEvent {
        event_id: -1,
        timestamp: Some(Timestamp {
            seconds: 2,
            nanos: 3,
        }),
        event_type: Some(EventType::EventRaised(EventRaisedEvent {
            name: name.into(),
            input: Some("\"x\"".into()),
        })),
        ..Default::default()
    }
}

fn timer_key() -> TimerKey {
    TimerKey {
        fire_at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        instance_id: "wf-1".into(),
        timer_id: 4,
    }
}

fn known_writes() -> Vec<Write> {
    vec![
        Write::PutInstance(InstanceRecord {
            instance_id: "wf-1".into(),
            name: "W".into(),
            execution_id: "e1".into(),
            history_len: 2,
            ..Default::default()
        }),
        Write::PutHistory {
            instance_id: "wf-1".into(),
            seq: 0,
            event: raised("h0"),
        },
        Write::PutHistory {
            instance_id: "wf-1".into(),
            seq: 1,
            event: raised("h1"),
        },
        Write::PutInbox {
            instance_id: "wf-1".into(),
            seq: 0,
            event: raised("i0"),
        },
        Write::PutActivity {
            instance_id: "wf-1".into(),
            task_id: -2,
            record: ActivityRecord {
                name: "A".into(),
                ..Default::default()
            },
        },
        Write::PutTimer {
            key: timer_key(),
            record: TimerRecord {
                execution_id: "e1".into(),
            },
        },
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn assert_known_state(store: &dyn Store) {
    let record = store.instance("wf-1").unwrap().unwrap();
    assert_eq!(record.execution_id, "e1");
    assert_eq!(
        store.history("wf-1").unwrap(),
        vec![raised("h0"), raised("h1")]
    );
    assert_eq!(store.inbox("wf-1").unwrap(), vec![(0, raised("i0"))]);
    assert_eq!(store.activities("wf-1").unwrap()[0].0, -2);
    assert_eq!(
        store.timer(&timer_key()).unwrap().unwrap().execution_id,
        "e1"
    );
    assert_eq!(
        store.applied_meta().unwrap().as_deref(),
        Some(&b"meta-7"[..])
    );
}

#[test]
fn both_stores_export_the_golden_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksStore::new(open_db(dir.path(), 1, &[]).unwrap(), 0);
    let memory = MemoryStore::default();
    for store in [&rocks as &dyn Store, &memory] {
        store.commit(&known_writes(), b"meta-7").unwrap();
        assert_eq!(hex(&store.export().unwrap()), GOLDEN);
    }
}

#[test]
fn the_golden_bytes_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksStore::new(open_db(dir.path(), 1, &[]).unwrap(), 0);
    let memory = MemoryStore::default();
    for store in [&rocks as &dyn Store, &memory] {
        store.import(&unhex(GOLDEN)).unwrap();
        assert_known_state(store);
    }
}
