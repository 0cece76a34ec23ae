//! Bounds fail loudly: a read that would return more than `MAX_SCAN_ROWS` rows, or a page
//! asked for larger, is an error in both stores, never a silently shorter answer; pending
//! activities come in pages that together are the whole table.

use endure_engine::records::{ActivityRecord, InstanceRecord};
use endure_engine::Write;
use endure_proto::HistoryEvent;
use endure_storage::memory::MemoryStore;
use endure_storage::rocks::{open_db, RocksStore};
use endure_storage::{Error, Store, MAX_SCAN_ROWS};

fn inbox_rows(instance_id: &str, seqs: std::ops::Range<u64>) -> Vec<Write> {
    seqs.map(|seq| Write::PutInbox {
        instance_id: instance_id.to_string(),
        seq,
        event: HistoryEvent::default(),
    })
    .collect()
}

/// Runs `check` on a RocksDB store and on a memory store.
fn on_both_stores(mut check: impl FnMut(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    check(&RocksStore::new(open_db(dir.path(), 1, &[]).unwrap(), 0));
    check(&MemoryStore::default());
}

#[test]
fn a_read_over_the_bound_fails_instead_of_truncating() {
    on_both_stores(|store| {
        let max = MAX_SCAN_ROWS as u64;
        store.commit(&inbox_rows("big", 0..max), b"m").unwrap();
        store.commit(&inbox_rows("next", 0..1), b"m").unwrap();
        assert_eq!(
            store.inbox("big").unwrap().len(),
            MAX_SCAN_ROWS,
            "at the bound"
        );
        store
            .commit(&inbox_rows("big", max..max + 1), b"m")
            .unwrap();
        let error = store.inbox("big").unwrap_err().to_string();
        assert!(
            error.contains("instance big has more than 100000 rows in table inbox"),
            "{error}"
        );
        assert_eq!(
            store.inbox("next").unwrap().len(),
            1,
            "other instances read on"
        );
    });
}

#[test]
fn a_page_over_the_bound_is_refused() {
    on_both_stores(|store| {
        let too_large = MAX_SCAN_ROWS + 1;
        assert!(matches!(
            store.list_instances(None, too_large),
            Err(Error::PageTooLarge { requested, .. }) if requested == too_large
        ));
        assert!(matches!(
            store.pending_activities_page(None, too_large),
            Err(Error::PageTooLarge { .. })
        ));
        assert!(store
            .list_instances(None, MAX_SCAN_ROWS)
            .unwrap()
            .is_empty());
    });
}

fn activity(instance_id: &str, task_id: i32) -> Write {
    Write::PutActivity {
        instance_id: instance_id.to_string(),
        task_id,
        record: ActivityRecord {
            name: format!("{instance_id}/{task_id}"),
            ..Default::default()
        },
    }
}

#[test]
fn pending_activities_page_through_the_whole_table_in_key_order() {
    let mut writes = Vec::new();
    for id in ["b", "ab", "a", "abc"] {
        writes.push(Write::PutInstance(InstanceRecord {
            instance_id: id.to_string(),
            ..Default::default()
        }));
        for task_id in [3, -1, 0] {
            writes.push(activity(id, task_id));
        }
    }
    let mut orders = Vec::new();
    on_both_stores(|store| {
        store.commit(&writes, b"m").unwrap();
        let mut paged = Vec::new();
        loop {
            let after = paged
                .last()
                .map(|(id, task_id, _): &(String, i32, ActivityRecord)| (id.as_str(), *task_id));
            let page = store.pending_activities_page(after, 5).unwrap();
            let last_page = page.len() < 5;
            paged.extend(page);
            if last_page {
                break;
            }
        }
        let keys: Vec<(String, i32)> = paged.iter().map(|(id, t, _)| (id.clone(), *t)).collect();
        let all = store.pending_activities().unwrap();
        assert_eq!(all, paged, "the convenience reads the same pages");
        assert!(store.pending_activities_page(None, 0).unwrap().is_empty());
        orders.push(keys);
    });
    let expected: Vec<(String, i32)> = ["a", "b", "ab", "abc"]
        .iter()
        .flat_map(|id| [-1, 0, 3].map(|t| (id.to_string(), t)))
        .collect();
    assert_eq!(
        orders,
        vec![expected.clone(), expected],
        "key order in both stores"
    );
}
