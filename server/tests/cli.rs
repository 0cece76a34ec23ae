//! The client CLI (`endure workflow ...`, `endure cluster ...`) run as a subprocess against
//! the real server binary: output in both formats, filters and paging, steering commands,
//! and the exit codes scripts rely on (0 ok, 1 server error, 2 usage, 3 not found,
//! 4 unreachable).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// A start time far enough ahead that scheduled instances stay PENDING with no worker.
const FAR_FUTURE: &str = "2099-01-01T00:00:00Z";

/// What one CLI run printed and returned.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// The lines of a table below its header.
    fn rows(&self) -> Vec<&str> {
        self.ok()
            .lines()
            .skip(1)
            .take_while(|line| !line.is_empty())
            .collect()
    }
}

/// Runs `endure <args> --endpoint <endpoint>` with no `ENDURE_ENDPOINT` inherited.
fn endure(endpoint: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_endure"))
        .args(args)
        .arg("--endpoint")
        .arg(endpoint)
        .env_remove("ENDURE_ENDPOINT")
        .output()
        .expect("the endure binary runs");
    Run {
        code: output
            .status
            .code()
            .expect("the CLI exits, not killed by a signal"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// The value of `Field:  value` in `workflow get`'s table.
fn field<'a>(table: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}:");
    let line = table
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {table}"));
    line[prefix.len()..].trim()
}

fn status(endpoint: &str, instance_id: &str) -> String {
    endure(endpoint, &["workflow", "get", instance_id, "-o", "json"]).json()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn scheduled_workflows_are_shown_listed_steered_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let ep = &server.endpoint();
    let started = endure(
        ep,
        &[
            "workflow",
            "start",
            "Greeter",
            "--id",
            "wf-a",
            "--input",
            "{\"n\":1}",
            "--start-at",
            FAR_FUTURE,
        ],
    );
    assert_eq!(started.ok(), "wf-a\n");
    endure(
        ep,
        &[
            "workflow",
            "start",
            "Other",
            "--id",
            "wf-b",
            "--start-at",
            FAR_FUTURE,
        ],
    )
    .ok();

    let table = endure(ep, &["workflow", "get", "wf-a"]);
    let table = table.ok();
    assert_eq!(field(table, "Instance ID"), "wf-a");
    assert_eq!(field(table, "Name"), "Greeter");
    assert_eq!(field(table, "Status"), "PENDING");
    assert_eq!(field(table, "Scheduled start"), FAR_FUTURE);
    assert_eq!(field(table, "Input"), "{\"n\":1}");
    assert_eq!(field(table, "Output"), "-");
    let json = endure(ep, &["workflow", "get", "wf-a", "--output", "json"]).json();
    assert_eq!(json["instanceId"], "wf-a");
    assert_eq!(json["name"], "Greeter");
    assert_eq!(json["status"], "PENDING");
    assert_eq!(json["input"], "{\"n\":1}");
    assert_eq!(json["scheduledStartAt"], FAR_FUTURE);
    let created = json["createdAt"].as_str().unwrap();
    assert!(
        created.starts_with("20") && created.ends_with('Z') && created.contains('T'),
        "{created}"
    );

    list_filters_and_pages(ep);
    steer_then_purge(ep);
}

fn list_filters_and_pages(ep: &str) {
    let all = endure(ep, &["workflow", "list"]);
    let rows = all.rows();
    assert_eq!(rows.len(), 2, "{}", all.stdout);
    assert!(
        rows[0].starts_with("wf-a") && rows[0].contains("Greeter") && rows[0].contains("PENDING"),
        "{rows:?}"
    );
    assert!(
        rows[1].starts_with("wf-b") && rows[1].contains("Other"),
        "{rows:?}"
    );
    assert!(!all.stdout.contains("next page"), "{}", all.stdout);

    assert!(
        endure(ep, &["workflow", "list", "--status", "RUNNING,COMPLETED"])
            .rows()
            .is_empty()
    );
    let filtered = endure(
        ep,
        &[
            "workflow", "list", "--status", "pending", "--name", "Other", "-o", "json",
        ],
    )
    .json();
    let ids: Vec<&str> = filtered["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["wf-b"]);
    assert_eq!(filtered["instances"][0]["status"], "PENDING");

    let first = endure(ep, &["workflow", "list", "--page-size", "1"]);
    assert_eq!(first.rows().len(), 1);
    let token = first
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("next page token: "))
        .expect("a next page token");
    let second = endure(
        ep,
        &[
            "workflow",
            "list",
            "--page-size",
            "1",
            "--page-token",
            token,
            "-o",
            "json",
        ],
    )
    .json();
    assert_eq!(second["instances"][0]["instanceId"], "wf-b");
    assert_eq!(second["nextPageToken"], Value::Null);
    let every = endure(
        ep,
        &[
            "workflow",
            "list",
            "--page-size",
            "1",
            "--all",
            "-o",
            "json",
        ],
    )
    .json();
    assert_eq!(every["instances"].as_array().unwrap().len(), 2);
}

fn steer_then_purge(ep: &str) {
    let raised = endure(
        ep,
        &["workflow", "raise", "wf-a", "Approve", "--data", "yes"],
    );
    assert_eq!(raised.ok(), "raised event 'Approve' on wf-a\n");
    assert_eq!(
        endure(
            ep,
            &["workflow", "suspend", "wf-a", "--reason", "maintenance"]
        )
        .ok(),
        "suspended wf-a\n"
    );
    assert_eq!(status(ep, "wf-a"), "SUSPENDED");
    assert_eq!(
        endure(ep, &["workflow", "resume", "wf-a"]).ok(),
        "resumed wf-a\n"
    );
    assert_eq!(status(ep, "wf-a"), "PENDING");
    let terminated = endure(
        ep,
        &[
            "workflow",
            "terminate",
            "wf-a",
            "--result",
            "stopped",
            "-o",
            "json",
        ],
    )
    .json();
    assert_eq!(
        (terminated["ok"].clone(), terminated["action"].clone()),
        (Value::Bool(true), "terminate".into())
    );
    let state = endure(ep, &["workflow", "get", "wf-a", "-o", "json"]).json();
    assert_eq!(state["status"], "TERMINATED");
    assert_eq!(state["output"], "\"stopped\"");
    let history = endure(ep, &["workflow", "history", "wf-a"]);
    assert!(
        history
            .rows()
            .iter()
            .any(|row| row.contains("ExecutionTerminated") && row.contains("\"stopped\"")),
        "{}",
        history.stdout
    );

    let refused = endure(ep, &["workflow", "purge", "wf-b"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("must be terminal to be purged"),
        "{}",
        refused.stderr
    );
    assert!(endure(ep, &["workflow", "purge", "wf-a"])
        .ok()
        .starts_with("purged wf-a"));
    let gone = endure(ep, &["workflow", "get", "wf-a"]);
    assert_eq!(gone.code, 3);
    assert_eq!(gone.stderr, "error: no such instance: wf-a\n");
    assert_eq!(gone.stdout, "");
}

#[test]
fn every_command_on_an_unknown_instance_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let commands: [&[&str]; 7] = [
        &["workflow", "get", "nope"],
        &["workflow", "history", "nope"],
        &["workflow", "raise", "nope", "Approve"],
        &["workflow", "suspend", "nope"],
        &["workflow", "resume", "nope"],
        &["workflow", "terminate", "nope"],
        &["workflow", "purge", "nope"],
    ];
    for args in commands {
        let run = endure(&server.endpoint(), args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("no such instance: nope"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_workflow_run_by_a_worker_shows_a_readable_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let ep = &server.endpoint();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let worker = runtime.block_on(common::shout_worker(&server));
    assert_eq!(
        endure(
            ep,
            &["workflow", "start", "Shouter", "--id", "wf-run", "--input", "hi"]
        )
        .ok(),
        "wf-run\n"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(ep, "wf-run") != "COMPLETED" {
        assert!(
            Instant::now() < deadline,
            "wf-run did not complete: {}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = endure(ep, &["workflow", "get", "wf-run", "-o", "json"]).json();
    assert_eq!(
        (state["input"].clone(), state["output"].clone()),
        ("\"hi\"".into(), "\"HI\"".into())
    );

    let table = endure(ep, &["workflow", "history", "wf-run"]);
    let rows = table.rows();
    let types: Vec<&str> = rows
        .iter()
        .map(|row| row.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "OrchestratorStarted",
            "ExecutionStarted",
            "TaskScheduled",
            "OrchestratorStarted",
            "TaskCompleted",
            "ExecutionCompleted"
        ],
        "{}",
        table.stdout
    );
    let completed: Vec<&str> = rows[4].split_whitespace().collect();
    assert_eq!(
        &completed[1..],
        ["TaskCompleted", completed[2], "Shout", "\"HI\""],
        "named after the task it answers"
    );
    assert!(
        completed[2].ends_with('Z') && completed[2].len() >= 20,
        "RFC 3339 time: {}",
        completed[2]
    );

    let events = endure(ep, &["workflow", "history", "wf-run", "-o", "json"]).json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 6);
    let scheduled = &events[2];
    assert_eq!(
        (scheduled["type"].as_str(), scheduled["eventId"].as_i64()),
        (Some("TaskScheduled"), Some(0))
    );
    assert_eq!(
        (scheduled["name"].as_str(), scheduled["input"].as_str()),
        (Some("Shout"), Some("\"hi\""))
    );
    assert_eq!(events[4]["taskScheduledId"], 0);
    assert_eq!(events[4]["result"], "\"HI\"");
    assert_eq!(events[5]["orchestrationStatus"], "COMPLETED");
    assert!(events
        .iter()
        .all(|e| e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z'))));

    let done = endure(
        ep,
        &["workflow", "list", "--status", "COMPLETED", "-o", "json"],
    )
    .json();
    assert_eq!(done["instances"][0]["instanceId"], "wf-run");
    worker.abort();
}

#[test]
fn without_a_worker_start_waits_only_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let ep = &server.endpoint();
    let begun = Instant::now();
    let id = endure(ep, &["workflow", "start", "Lonely", "--no-wait"])
        .ok()
        .trim()
        .to_string();
    assert!(
        begun.elapsed() < Duration::from_secs(10),
        "--no-wait returned after {:?}",
        begun.elapsed()
    );
    assert_eq!(id.len(), 32, "a generated ID: {id}");
    assert_eq!(status(ep, &id), "PENDING");

    let waited = endure(
        ep,
        &[
            "workflow",
            "start",
            "Lonely",
            "--id",
            "wf-wait",
            "--timeout",
            "1",
        ],
    );
    assert_eq!(waited.code, 1, "{}", waited.stderr);
    assert!(
        waited
            .stderr
            .contains("workflow wf-wait was started, but no worker began running it within 1 s"),
        "{}",
        waited.stderr
    );
    assert_eq!(
        status(ep, "wf-wait"),
        "PENDING",
        "the start is recorded all the same"
    );
}

#[test]
fn cluster_status_shows_this_node_leading() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let ep = &server.endpoint();
    let table = endure(ep, &["cluster", "status"]);
    let text = table.ok();
    assert_eq!(field(text, "Node ID"), "1");
    assert_eq!(field(text, "State"), "Leader");
    assert_eq!(field(text, "Leader"), "1");
    let member = text
        .lines()
        .find(|line| line.starts_with("1 "))
        .expect("a members row");
    // The address is the node's Raft address, which need not be its gRPC one.
    assert!(
        member.contains("127.0.0.1:") && member.contains("voter") && member.ends_with('*'),
        "{text}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_endure"))
        .args(["cluster", "status", "--output", "json"])
        .env("ENDURE_ENDPOINT", ep)
        .output()
        .unwrap();
    assert!(output.status.success(), "ENDURE_ENDPOINT is used");
    let nodes: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(nodes[0]["nodeId"], 1);
    assert_eq!(nodes[0]["leaderId"], 1);
    assert_eq!(nodes[0]["state"], "Leader");
    assert_eq!(nodes[0]["members"][0]["role"], "voter");
    assert!(nodes[0]["appliedIndex"].as_u64().unwrap() >= 1);
}

#[test]
fn an_unreachable_node_exits_4_with_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    for args in [
        &["workflow", "get", "x"][..],
        &["workflow", "list"],
        &["workflow", "start", "W"],
        &["cluster", "status"],
    ] {
        let run = endure(&closed, args);
        assert_eq!(run.code, 4, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with(&format!("error: cannot reach endure at {closed}: ")),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "");
    }

    // One node down of two: the other is still shown, and the exit code tells.
    let output = Command::new(env!("CARGO_BIN_EXE_endure"))
        .args([
            "cluster",
            "status",
            "--endpoint",
            &server.endpoint(),
            "--endpoint",
            &closed,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&output.stdout).contains("State:            Leader"));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains(&format!("cannot reach endure at {closed}")));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let ep = "http://127.0.0.1:1";
    for args in [
        &["workflow", "start", "W", "--start-at", "tomorrow"][..],
        &["workflow", "list", "--status", "DONE"],
        &["workflow", "get"],
        &["workflow", "list", "--output", "yaml"],
    ] {
        let run = endure(ep, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
}
