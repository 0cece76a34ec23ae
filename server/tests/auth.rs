//! Who may call: the API token on the client ports, the metrics token on `/metrics`, the
//! cluster secret on the internal port (tests/cluster_auth.rs). A refused call changes
//! nothing.

mod common;
mod http_support;

use common::Server;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::{CreateInstanceRequest, GetInstanceRequest};
use http_support::request;
use tonic::Code;

const TOKEN: &str = "t0ken-for-tests";

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("dapr-api-token", token.parse().unwrap());
    }
    request
}

/// Runs the `endure` CLI against `endpoint`, with ENDURE_API_TOKEN set to `token` or unset.
fn cli(endpoint: &str, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_endure"));
    command.args(args).args(["--endpoint", endpoint]);
    command.env_remove("ENDURE_API_TOKEN");
    if let Some(token) = token {
        command.env("ENDURE_API_TOKEN", token);
    }
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_token_guards_grpc_and_http_but_not_health() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let metrics_file = dir.path().join("metrics-token");
    std::fs::write(&metrics_file, "scrape-me").unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--api-token-file",
            token_file.to_str().unwrap(),
            "--metrics-token-file",
            metrics_file.to_str().unwrap(),
        ],
    );
    let mut client = TaskHubSidecarServiceClient::connect(server.endpoint())
        .await
        .unwrap();
    let start = CreateInstanceRequest {
        instance_id: "guarded".into(),
        name: "chain".into(),
        ..Default::default()
    };
    for presented in [None, Some("wrong"), Some("t0ken-for-test")] {
        let refused = client
            .start_instance(with_token(start.clone(), presented))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains("dapr-api-token"), "{refused:?}");
        if let Some(value) = presented {
            assert!(
                !refused.message().contains(value),
                "the refusal repeats the value"
            );
        }
    }
    // Nothing was created; with the token the same calls work.
    let state = client
        .get_instance(with_token(
            GetInstanceRequest {
                instance_id: "guarded".into(),
                ..Default::default()
            },
            Some(TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!state.exists, "a refused start created the instance");
    // The CLI sends the token from ENDURE_API_TOKEN (or --api-token); without it, refused.
    let endpoint = server.endpoint();
    let start = ["workflow", "start", "chain", "--id", "guarded", "--no-wait"];
    let refused = cli(&endpoint, &start, None);
    assert!(
        !refused.status.success(),
        "the CLI got in without the token"
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("dapr-api-token"), "{said}");
    let started = cli(&endpoint, &start, Some(TOKEN));
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );

    let port = server.http_port;
    let path = "/v1.0/workflows/dapr/guarded";
    let refused = request(port, "GET", path, None, &[]).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused.text().contains("dapr-api-token"),
        "{}",
        refused.text()
    );
    let wrong = request(port, "GET", path, None, &[("dapr-api-token", "nope")]).await;
    assert_eq!(wrong.status, 401);
    let allowed = request(port, "GET", path, None, &[("dapr-api-token", TOKEN)]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.json()["instanceID"], "guarded");
    for open in ["/healthz", "/readyz", "/v1.0/healthz"] {
        let answer = request(port, "GET", open, None, &[]).await;
        assert!(answer.status < 300, "{open}: {}", answer.status);
    }
    // /metrics takes its own token, as a bearer token, and not the API token.
    let metrics = request(port, "GET", "/metrics", None, &[("dapr-api-token", TOKEN)]).await;
    assert_eq!(metrics.status, 401);
    let metrics = request(
        port,
        "GET",
        "/metrics",
        None,
        &[("authorization", "Bearer scrape-me")],
    )
    .await;
    assert_eq!(metrics.status, 200);
    assert!(
        !metrics.text().contains(TOKEN) && !metrics.text().contains("scrape-me"),
        "a token in the metrics"
    );
    let status = request(
        port,
        "GET",
        "/cluster/status",
        None,
        &[("dapr-api-token", TOKEN)],
    )
    .await;
    assert_eq!(status.status, 200);
    assert!(
        !status.text().contains(TOKEN),
        "the token in /cluster/status"
    );
}

#[test]
fn a_token_given_twice_or_empty_is_refused_at_start() {
    use clap::Parser;
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        serve: endure::config::ServeArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap();
    let twice = ["serve", "--api-token", "a", "--api-token-file", empty];
    let error = endure::config::Settings::resolve(Flags::parse_from(twice).serve).unwrap_err();
    assert!(error.to_string().contains("not both"), "{error}");
    let error = endure::config::Settings::resolve(
        Flags::parse_from(["serve", "--cluster-secret-file", empty]).serve,
    )
    .unwrap_err();
    assert!(error.to_string().contains("is empty"), "{error}");
    let settings = endure::config::Settings::resolve(
        Flags::parse_from(["serve", "--api-token", "visible-nowhere"]).serve,
    )
    .unwrap();
    assert!(
        !format!("{settings:?}").contains("visible-nowhere"),
        "the settings' Debug shows the token"
    );
}

/// Runs `endure cluster leave --node-id 99` with the given tokens in the environment.
fn leave_99(endpoint: &str, api: &str, admin: Option<&str>) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_endure"));
    command
        .args([
            "cluster",
            "leave",
            "--node-id",
            "99",
            "--endpoint",
            endpoint,
        ])
        .env("ENDURE_API_TOKEN", api)
        .env_remove("ENDURE_ADMIN_TOKEN");
    if let Some(admin) = admin {
        command.env("ENDURE_ADMIN_TOKEN", admin);
    }
    let output = command.output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_on_the_client_port_need_the_admin_token_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--api-token", TOKEN, "--admin-token", "adm1n-token"],
    );
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = endure_proto::endure::internal::admin_client::AdminClient::new(channel);
    // Status needs only the API token.
    let status = with_token(
        endure_proto::endure::internal::ClusterStatusRequest {},
        Some(TOKEN),
    );
    admin.cluster_status(status).await.unwrap();
    // A membership change with the API token alone, or a wrong admin token: refused.
    for presented in [None, Some("guessed")] {
        let mut request = with_token(
            endure_proto::endure::internal::LeaveNodeRequest {
                node_id: 1,
                shard: None,
            },
            Some(TOKEN),
        );
        if let Some(value) = presented {
            request
                .metadata_mut()
                .insert("endure-admin-token", value.parse().unwrap());
        }
        let refused = admin.leave_node(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(
            refused.message().contains("endure-admin-token"),
            "{refused:?}"
        );
    }
    // Node 1 is still the voter it was.
    let status = with_token(
        endure_proto::endure::internal::ClusterStatusRequest {},
        Some(TOKEN),
    );
    let members = admin
        .cluster_status(status)
        .await
        .unwrap()
        .into_inner()
        .members;
    assert!(
        members.iter().any(|m| m.node_id == 1 && m.role == "voter"),
        "{members:?}"
    );

    // The CLI: without ENDURE_ADMIN_TOKEN refused; with it the call gets through to the
    // membership check (node 99 is no voter).
    let (ok, said) = leave_99(&server.endpoint(), TOKEN, None);
    assert!(!ok && said.contains("endure-admin-token"), "{said}");
    let (ok, said) = leave_99(&server.endpoint(), TOKEN, Some("adm1n-token"));
    assert!(!ok && said.contains("node 99 is not a voter"), "{said}");
}
