//! The cluster secret: nodes started with it form a cluster and run workflows; calls to
//! their internal port without it (Raft, admin) are refused with UNAUTHENTICATED. Mutual
//! TLS between nodes: they run workflows, and a peer without a cluster certificate is
//! refused.

mod cluster_support;
mod tls_support;

use std::time::Duration;

use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::endure::internal::raft_service_client::RaftServiceClient;
use endure_proto::endure::internal::{ClusterStatusRequest, RaftMessage};
use endure_tls::testing::Authority;
use endure_tls::Connector;
use tls_support::{channel, trusting};
use tonic::transport::Channel;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_port_refuses_calls_without_the_cluster_secret() {
    let cluster = cluster_support::Cluster::with_args(&["--cluster-secret", "shared-by-nodes"]);
    // The nodes reach each other with the secret: a leader is elected and serves.
    let leader = cluster.leader(&[0, 1, 2]).await;
    let _worker = cluster_support::chain_worker(cluster.endpoint((leader + 1) % 3));
    let mut client = cluster.client((leader + 2) % 3).await;
    cluster_support::start_chain(&mut client, "with-secret", 1).await;
    let done = cluster_support::wait_completed(&mut client, "with-secret").await;
    assert_eq!(done.output.as_deref(), Some("4"), "{done:?}");

    let internal = format!("http://127.0.0.1:{}", cluster.nodes[0].raft_port);
    let channel = tonic::transport::Endpoint::from_shared(internal)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    for presented in [None, Some("guessed")] {
        let mut status_request = tonic::Request::new(ClusterStatusRequest {});
        let mut raft_request = tonic::Request::new(RaftMessage::default());
        if let Some(value) = presented {
            for metadata in [status_request.metadata_mut(), raft_request.metadata_mut()] {
                metadata.insert("endure-cluster-secret", value.parse().unwrap());
            }
        }
        let refused = AdminClient::new(channel.clone())
            .cluster_status(status_request)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        let refused = RaftServiceClient::new(channel.clone())
            .vote(raft_request)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let mut allowed = tonic::Request::new(ClusterStatusRequest {});
    allowed
        .metadata_mut()
        .insert("endure-cluster-secret", "shared-by-nodes".parse().unwrap());
    AdminClient::new(channel)
        .cluster_status(allowed)
        .await
        .unwrap();
    // The client port does not ask for the secret (no API token was set).
    let status = cluster.status(0).await.unwrap();
    assert!(status.leader_id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_speak_mutual_tls_and_refuse_a_peer_without_a_cluster_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let cluster_ca = Authority::create(certs.path(), "cluster-ca").unwrap();
    let node = cluster_ca
        .issue(certs.path(), "node", &["127.0.0.1"])
        .unwrap();
    let args = [
        "--cluster-tls-ca".to_string(),
        cluster_ca.cert.display().to_string(),
        "--cluster-tls-cert".to_string(),
        node.cert.display().to_string(),
        "--cluster-tls-key".to_string(),
        node.key.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = cluster_support::Cluster::with_args(&args);
    // Raft, forwarding and the worker relay all cross the internal port: a workflow
    // started on one node and run by a worker on another completes.
    let leader = cluster.leader(&[0, 1, 2]).await;
    let _worker = cluster_support::chain_worker(cluster.endpoint((leader + 1) % 3));
    let mut client = cluster.client((leader + 2) % 3).await;
    cluster_support::start_chain(&mut client, "across-mtls", 2).await;
    let done = cluster_support::wait_completed(&mut client, "across-mtls").await;
    assert_eq!(done.output.as_deref(), Some("5"), "{done:?}");

    let raft_port = cluster.nodes[0].raft_port;
    let status = |channel: Channel| async move {
        let mut request = tonic::Request::new(ClusterStatusRequest {});
        request.set_timeout(Duration::from_secs(5));
        AdminClient::new(channel).cluster_status(request).await
    };
    // A member's certificate is let in.
    let member = channel(raft_port, &trusting(&cluster_ca.cert, Some(node.clone())))
        .await
        .unwrap();
    assert!(status(member).await.is_ok());
    // No certificate, a certificate of another CA, or cleartext: refused.
    let other_ca = Authority::create(certs.path(), "other-ca").unwrap();
    let stranger = other_ca
        .issue(certs.path(), "stranger", &["127.0.0.1"])
        .unwrap();
    for connector in [
        trusting(&cluster_ca.cert, None),
        trusting(&cluster_ca.cert, Some(stranger)),
        Connector::plain(),
    ] {
        let refused = match channel(raft_port, &connector).await {
            Ok(channel) => status(channel).await.is_err(),
            Err(_) => true,
        };
        assert!(refused, "the internal port answered {connector:?}");
    }
}
