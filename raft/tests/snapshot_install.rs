//! A snapshot install replaces the tables wholesale: what the rest of the node derives
//! from applied entries must follow it (the largest leader time, which a new leader's
//! clock must not go below; and a signal to recount anything kept from effects).

use std::sync::Arc;

use endure_engine::records::command::Kind;
use endure_engine::records::{Command, StartInstance};
use endure_raft::state_machine::StateMachine;
use endure_raft::types::{Entry, LogId, Request};
use endure_storage::memory::MemoryStore;
use endure_storage::Store;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use prost_types::Timestamp;

fn start_entry(index: u64, instance_id: &str, leader_seconds: i64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request(Command {
            leader_time: Some(Timestamp {
                seconds: leader_seconds,
                nanos: 0,
            }),
            id_seed: format!("seed-{index}"),
            kind: Some(Kind::StartInstance(StartInstance {
                instance_id: instance_id.to_string(),
                name: "wf".to_string(),
                ..StartInstance::default()
            })),
        })),
    }
}

#[tokio::test]
async fn an_installed_snapshot_carries_the_leader_time_and_is_announced() {
    let mut source = StateMachine::open(Arc::new(MemoryStore::default())).unwrap();
    source
        .apply(vec![
            start_entry(1, "a", 1_700_000_000),
            start_entry(2, "b", 1_700_000_500),
        ])
        .await
        .unwrap();
    let mut snapshot = source.build_snapshot().await.unwrap();

    let mut target = StateMachine::open(Arc::new(MemoryStore::default())).unwrap();
    let shared = target.shared();
    let mut installs = shared.snapshot_installs();
    assert_eq!(shared.max_leader_time().seconds, 0);
    assert_eq!(
        source.shared().written_index(),
        2,
        "applied entries are written"
    );
    assert_eq!(shared.written_index(), 0);
    let data = std::mem::replace(
        &mut snapshot.snapshot,
        Box::new(std::io::Cursor::new(Vec::new())),
    );
    target.install_snapshot(&snapshot.meta, data).await.unwrap();

    assert_eq!(
        shared.max_leader_time().seconds,
        1_700_000_500,
        "a new leader on this node would stamp times below the committed ones"
    );
    assert!(
        installs.has_changed().unwrap(),
        "nothing tells the node's gauges that the tables were replaced"
    );
    let _ = installs.borrow_and_update();
    assert_eq!(
        shared.written_index(),
        2,
        "the log store would keep the snapshot's log for ever"
    );
    assert_eq!(target.store().list_instances(None, 10).unwrap().len(), 2);
}

/// The time line a new leader continues: the largest applied leader time plus the time
/// elapsed since it was applied here, on the monotonic clock (chaos seed 3001: a leader
/// whose only peer's clock lagged by 58 s started its term 1.15 s behind the line).
#[tokio::test]
async fn the_applied_time_line_continues_on_the_monotonic_clock() {
    let mut machine = StateMachine::open(Arc::new(MemoryStore::default())).unwrap();
    machine
        .apply(vec![start_entry(1, "a", 1_700_000_000)])
        .await
        .unwrap();
    let shared = machine.shared();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let continued = shared.continued_leader_time();
    let elapsed_ns =
        (continued.seconds - 1_700_000_000) * 1_000_000_000 + i64::from(continued.nanos);
    assert!(
        (300_000_000..5_000_000_000).contains(&elapsed_ns),
        "continued {elapsed_ns} ns past the applied time, 300 ms later"
    );
    assert_eq!(shared.max_leader_time().seconds, 1_700_000_000);
}
