//! Both stores answer the same reads after the same writes, snapshots move state between
//! them, and the RocksDB store keeps its state across a reopen.

use endure_engine::records::{ActivityRecord, InstanceRecord, TimerKey, TimerRecord};
use endure_engine::{StateView, Write};
use endure_proto::history_event::EventType;
use endure_proto::{EventRaisedEvent, HistoryEvent};
use endure_storage::memory::MemoryStore;
use endure_storage::rocks::{open_db, RocksStore};
use endure_storage::Store;
use prost_types::Timestamp;

fn raised(name: &str) -> HistoryEvent {
    HistoryEvent {
        event_id: -1,
        timestamp: Some(Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        event_type: Some(EventType::EventRaised(EventRaisedEvent {
            name: name.into(),
            input: None,
        })),
        ..Default::default()
    }
}

fn timer(seconds: i64, id: &str) -> TimerKey {
    TimerKey {
        fire_at: Some(Timestamp { seconds, nanos: 0 }),
        instance_id: id.into(),
        timer_id: 1,
    }
}

fn sample_writes() -> Vec<Write> {
    let mut writes = Vec::new();
    for id in ["a", "ab", "b"] {
        writes.push(Write::PutInstance(InstanceRecord {
            instance_id: id.into(),
            name: "W".into(),
            ..Default::default()
        }));
        for seq in 0..3 {
            writes.push(Write::PutHistory {
                instance_id: id.into(),
                seq,
                event: raised(&format!("h{seq}")),
            });
            writes.push(Write::PutInbox {
                instance_id: id.into(),
                seq,
                event: raised(&format!("i{seq}")),
            });
        }
        writes.push(Write::PutActivity {
            instance_id: id.into(),
            task_id: 2,
            record: ActivityRecord {
                name: "A".into(),
                ..Default::default()
            },
        });
    }
    writes.push(Write::DeleteHistory {
        instance_id: "a".into(),
    });
    writes.push(Write::DeleteInbox {
        instance_id: "ab".into(),
        seq: 1,
    });
    writes.push(Write::PutTimer {
        key: timer(50, "b"),
        record: TimerRecord {
            execution_id: "e".into(),
        },
    });
    writes.push(Write::PutTimer {
        key: timer(5, "a"),
        record: TimerRecord {
            execution_id: "e".into(),
        },
    });
    writes.push(Write::PutTimer {
        key: timer(253_402_300_799, "a"),
        record: TimerRecord::default(),
    });
    writes
}

fn assert_sample_state(store: &dyn Store) {
    assert!(
        store.history("a").unwrap().is_empty(),
        "history of a was deleted"
    );
    assert_eq!(
        store.history("ab").unwrap().len(),
        3,
        "deleting a's rows must not touch ab's"
    );
    let inbox: Vec<u64> = store
        .inbox("ab")
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(inbox, vec![0, 2]);
    assert_eq!(store.activities("b").unwrap().len(), 1);
    let due = store
        .due_timers(
            &Timestamp {
                seconds: 60,
                nanos: 0,
            },
            10,
        )
        .unwrap();
    assert_eq!(due, vec![timer(5, "a"), timer(50, "b")]);
    assert_eq!(
        store.next_timer().unwrap(),
        Some(Timestamp {
            seconds: 5,
            nanos: 0
        })
    );
    let page: Vec<String> = store
        .list_instances(Some("a"), 10)
        .unwrap()
        .into_iter()
        .map(|r| r.instance_id)
        .collect();
    // Key order: length-prefixed IDs, so "b" sorts before "ab".
    assert_eq!(page, vec!["b".to_string(), "ab".to_string()]);
    assert_eq!(store.pending_activities().unwrap().len(), 3);
    assert_eq!(
        store.applied_meta().unwrap().as_deref(),
        Some(&b"meta-1"[..])
    );
}

#[test]
fn rocks_and_memory_agree_and_snapshots_cross_over() {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksStore::new(open_db(dir.path(), 1, &[]).unwrap(), 0);
    let memory = MemoryStore::default();
    for store in [&rocks as &dyn Store, &memory] {
        store.commit(&sample_writes(), b"meta-1").unwrap();
        assert_sample_state(store);
    }
    let from_rocks = MemoryStore::default();
    from_rocks.import(&rocks.export().unwrap()).unwrap();
    assert_sample_state(&from_rocks);
    let other_dir = tempfile::tempdir().unwrap();
    let from_memory = RocksStore::new(open_db(other_dir.path(), 1, &[]).unwrap(), 0);
    from_memory
        .commit(
            &[Write::PutInstance(InstanceRecord {
                instance_id: "gone".into(),
                ..Default::default()
            })],
            b"x",
        )
        .unwrap();
    from_memory.import(&memory.export().unwrap()).unwrap();
    assert_sample_state(&from_memory);
    assert!(
        from_memory.instance("gone").unwrap().is_none(),
        "import replaces the old state"
    );
}

#[test]
fn rocks_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rocks = RocksStore::new(open_db(dir.path(), 1, &[]).unwrap(), 0);
        rocks.commit(&sample_writes(), b"meta-1").unwrap();
    }
    let reopened = RocksStore::new(open_db(dir.path(), 1, &[]).unwrap(), 0);
    assert_sample_state(&reopened);
}

#[test]
fn a_corrupt_record_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path(), 1, &[]).unwrap();
    let cf = db.cf_handle("instances").unwrap();
    db.put_cf(&cf, endure_storage::keys::instance("x"), [0xff, 0xff, 0xff])
        .unwrap();
    let rocks = RocksStore::new(db, 0);
    let error = rocks.instance("x").unwrap_err();
    assert!(error.to_string().contains("corrupt"), "{error}");
}

#[test]
fn shards_of_one_database_keep_apart_and_the_count_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_db(dir.path(), 3, &[]).unwrap();
        let first = RocksStore::new(db.clone(), 0);
        let last = RocksStore::new(db, 2);
        last.commit(&sample_writes(), b"meta-1").unwrap();
        assert_sample_state(&last);
        assert!(first.applied_meta().unwrap().is_none());
        assert!(first.list_instances(None, 10).unwrap().is_empty());
    }
    let Err(error) = open_db(dir.path(), 8, &[]) else {
        panic!("another shard count is refused");
    };
    let message = error.to_string();
    assert!(
        message.contains("created with 3 shard(s)") && message.contains("--shards 8"),
        "{message}"
    );
    let db = open_db(dir.path(), 3, &[]).unwrap();
    assert_sample_state(&RocksStore::new(db, 2));
}

#[test]
fn a_directory_from_before_shards_is_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        rocksdb::DB::open(&options, dir.path()).unwrap();
    }
    assert!(open_db(dir.path(), 8, &[]).is_err());
    assert!(open_db(dir.path(), 1, &[]).is_ok());
}
