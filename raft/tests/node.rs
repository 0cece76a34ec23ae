//! A node started on a data directory answers who leads and who the members are, and a
//! first start asks its peers (through the probe it is given) whether a cluster exists.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use endure_raft::network::Routes;
use endure_raft::node::{self, NodeOptions, StartError};
use endure_raft::probe::{NoPeers, PeerAnswer, PeerProbe};
use endure_raft::status::Role;
use endure_raft::NodeId;

fn options(peers: BTreeMap<NodeId, String>) -> NodeOptions {
    NodeOptions {
        node_id: 1,
        raft_addr: "127.0.0.1:1".to_string(),
        peers,
        join: false,
        snapshot_every_logs: node::SNAPSHOT_EVERY_LOG_ENTRIES,
        logs_kept_after_snapshot: node::LOGS_KEPT_AFTER_SNAPSHOT,
        routes: Routes::default(),
        shards: 1,
        shards_explicit: true,
        channels: Default::default(),
    }
}

/// Every peer answers the same.
struct Answer(PeerAnswer);

impl PeerProbe for Answer {
    async fn ask(&self, _: NodeId, _: NodeId, _: &str) -> Option<PeerAnswer> {
        Some(self.0)
    }
}

fn two_peers() -> BTreeMap<NodeId, String> {
    BTreeMap::from([
        (1, "127.0.0.1:1".to_string()),
        (2, "127.0.0.1:2".to_string()),
    ])
}

#[tokio::test]
async fn a_single_node_leads_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let node = node::start(dir.path(), options(BTreeMap::new()), &NoPeers)
        .await
        .unwrap()
        .remove(0);
    let mut watch = node.watch();
    let led = tokio::time::timeout(Duration::from_secs(10), watch.wait_until(|w| w.is_leader()));
    assert!(led.await.unwrap(), "a single voter elects itself");
    assert!(node.is_leader());
    assert_eq!(node.leader(), Some(1));
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(node.leader_address(), Some((1, "127.0.0.1:1".to_string())));
    assert_eq!(node.voters(), BTreeSet::from([1]));
    assert_eq!(
        node.members(),
        BTreeMap::from([(1, "127.0.0.1:1".to_string())])
    );
    assert!(node.peer_voters().is_empty());
    let status = node.status();
    assert_eq!(
        (status.node_id, status.role, status.leader),
        (1, Role::Leader, Some(1))
    );
    assert!(status.applied_index >= 1, "the membership entry is applied");
    assert_eq!(node.applied_index(), status.applied_index);

    node.raft.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), watch.stopped())
        .await
        .unwrap();
    assert_eq!(watch.fatal_error(), None);
}

#[tokio::test]
async fn a_first_start_waits_for_an_existing_leader() {
    let dir = tempfile::tempdir().unwrap();
    let leader_exists = Answer(PeerAnswer {
        leads: true,
        matched_index: None,
    });
    let node = node::start(dir.path(), options(two_peers()), &leader_exists)
        .await
        .unwrap()
        .remove(0);
    assert!(
        !node.raft.is_initialized().await.unwrap(),
        "it must not initialize a membership of its own"
    );
    assert!(node.voters().is_empty());
    node.raft.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_whose_data_was_lost_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let replicated_before = Answer(PeerAnswer {
        leads: true,
        matched_index: Some(12),
    });
    let error = node::start(dir.path(), options(two_peers()), &replicated_before)
        .await
        .err()
        .expect("the start is refused");
    assert!(
        matches!(&error, StartError::Raft(reason) if reason.contains("its data was lost")),
        "{error}"
    );
}

#[tokio::test]
async fn every_shard_is_its_own_group_and_the_count_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sharded = NodeOptions {
        shards: 4,
        ..options(BTreeMap::new())
    };
    let nodes = node::start(dir.path(), sharded.clone(), &NoPeers)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 4);
    for (shard, node) in nodes.iter().enumerate() {
        assert_eq!(node.shard as usize, shard);
        let mut watch = node.watch();
        let led =
            tokio::time::timeout(Duration::from_secs(10), watch.wait_until(|w| w.is_leader()));
        assert!(led.await.unwrap(), "shard {shard} elects its single voter");
    }
    for node in &nodes {
        node.raft.shutdown().await.unwrap();
    }
    drop(nodes);
    let other = NodeOptions {
        shards: 2,
        ..options(BTreeMap::new())
    };
    let error = node::start(dir.path(), other, &NoPeers)
        .await
        .err()
        .expect("another shard count is refused");
    assert!(error.to_string().contains("--shards 4"), "{error}");
    let again = node::start(dir.path(), sharded, &NoPeers).await.unwrap();
    assert_eq!(again.len(), 4);
    for node in &again {
        node.raft.shutdown().await.unwrap();
    }
    drop(again);
    // A count that was not chosen gives way to the directory's own.
    let defaulted = NodeOptions {
        shards: 8,
        shards_explicit: false,
        ..options(BTreeMap::new())
    };
    let again = node::start(dir.path(), defaulted, &NoPeers).await.unwrap();
    assert_eq!(again.len(), 4);
    for node in &again {
        node.raft.shutdown().await.unwrap();
    }
}
