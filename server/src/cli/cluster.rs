//! `endure cluster status`: each node's own view of the cluster (Admin.ClusterStatus).
//!
//! Every node answers for itself, so asking several (`--endpoint` repeated) shows whether
//! they agree on the leader and term and how far each has applied the log. A node that
//! cannot be reached is reported on stderr and the others are still shown.

use clap::Subcommand;
use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::endure::internal::{
    ClusterStatus, ClusterStatusRequest, JoinNodeRequest, LeaveNodeRequest,
};
use serde_json::{json, Value};

use super::output::{fields, print_json, Format, Table};
use super::{report, Error, Target};

/// The `cluster` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show each node's Raft state, the leader, the term, the log indexes and the members.
    Status,
    /// Add a node (started with `endure serve --join`): a learner first, a voter once it
    /// has caught up. Membership changes are serialized on the leader.
    Join {
        /// The new node's ID (never one a departed node had).
        #[arg(long)]
        node_id: u64,
        /// The new node's internal address (its --raft-addr), as peers reach it.
        #[arg(long)]
        address: String,
    },
    /// Remove a node from the voters; its ID is retired for good.
    Leave {
        #[arg(long)]
        node_id: u64,
    },
}

/// Runs one `cluster` subcommand against every target; returns the exit code, the highest
/// of the nodes' (so "unreachable" wins over "ok" when one node is down).
pub async fn run(command: Command, targets: Vec<Target>, format: Format) -> i32 {
    match command {
        Command::Status => show_status(targets, format).await,
        change => match targets.first() {
            Some(target) => change_membership(change, target, format).await,
            None => report(Err(Error::Usage("an --endpoint is required".to_string()))),
        },
    }
}

/// Sends a join or leave to one node (it goes on to the leader) and prints the result.
async fn change_membership(command: Command, target: &Target, format: Format) -> i32 {
    let result = async {
        let mut client = AdminClient::new(target.connect().await?);
        let response = match command {
            Command::Join { node_id, address } => {
                client
                    .join_node(target.request(JoinNodeRequest {
                        node_id,
                        address,
                        shard: None,
                    }))
                    .await
            }
            Command::Leave { node_id } => {
                client
                    .leave_node(target.request(LeaveNodeRequest {
                        node_id,
                        shard: None,
                    }))
                    .await
            }
            Command::Status => unreachable!("status is not a membership change"),
        };
        Ok::<_, Error>(
            response
                .map_err(|status| target.error(status, None))?
                .into_inner(),
        )
    }
    .await;
    match result {
        Ok(status) => {
            match format {
                Format::Table => print!("{}", status_text(&target.endpoint, &status)),
                Format::Json => print_json(&status_json(&target.endpoint, &status)),
            }
            0
        }
        Err(error) => report(Err(error)),
    }
}

async fn show_status(targets: Vec<Target>, format: Format) -> i32 {
    let mut exit_code = 0;
    let mut sections = Vec::new();
    let mut documents = Vec::new();
    for target in &targets {
        match status(target).await {
            Ok(status) => {
                sections.push(status_text(&target.endpoint, &status));
                documents.push(status_json(&target.endpoint, &status));
            }
            Err(error) => {
                documents.push(json!({ "endpoint": target.endpoint, "error": error.to_string() }));
                exit_code = exit_code.max(report(Err(error)));
            }
        }
    }
    match format {
        Format::Table => print!("{}", sections.join("\n")),
        // One element per endpoint asked, in order, so the shape never depends on how many.
        Format::Json => print_json(&Value::Array(documents)),
    }
    exit_code
}

async fn status(target: &Target) -> Result<ClusterStatus, Error> {
    let mut client = AdminClient::new(target.connect().await?);
    let response = client
        .cluster_status(target.request(ClusterStatusRequest {}))
        .await;
    Ok(response
        .map_err(|status| target.error(status, None))?
        .into_inner())
}

/// One node's section: its own state, then the members as it knows them.
fn status_text(endpoint: &str, status: &ClusterStatus) -> String {
    let leader = status
        .leader_id
        .map(|id| id.to_string())
        .unwrap_or_else(|| "none".to_string());
    let mut text = fields(&[
        ("Endpoint", endpoint.to_string()),
        ("Node ID", status.node_id.to_string()),
        ("State", status.state.clone()),
        ("Leader", leader),
        ("Term", status.term.to_string()),
        ("Last log index", status.last_log_index.to_string()),
        ("Committed index", status.committed_index.to_string()),
        ("Applied index", status.applied_index.to_string()),
    ]);
    let mut members = Table::new(&["NODE", "ADDRESS", "ROLE", "LEADER"]);
    for member in &status.members {
        let is_leader = status.leader_id == Some(member.node_id);
        members.row(vec![
            member.node_id.to_string(),
            member.address.clone(),
            member.role.clone(),
            if is_leader {
                "*".to_string()
            } else {
                String::new()
            },
        ]);
    }
    text.push('\n');
    text.push_str(&members.render());
    if status.shards.len() > 1 {
        let mut shards = Table::new(&[
            "SHARD",
            "STATE",
            "LEADER",
            "PREFERRED",
            "TERM",
            "COMMITTED",
            "APPLIED",
        ]);
        for shard in &status.shards {
            let leader = shard.leader_id.map(|id| id.to_string());
            shards.row(vec![
                shard.shard.to_string(),
                shard.state.clone(),
                leader.unwrap_or_else(|| "none".to_string()),
                shard.preferred_leader.to_string(),
                shard.term.to_string(),
                shard.committed_index.to_string(),
                shard.applied_index.to_string(),
            ]);
        }
        text.push('\n');
        text.push_str(&shards.render());
    }
    text
}

fn status_json(endpoint: &str, status: &ClusterStatus) -> Value {
    let members: Vec<Value> = status
        .members
        .iter()
        .map(|m| json!({ "nodeId": m.node_id, "address": m.address, "role": m.role, "matchedIndex": m.matched_index }))
        .collect();
    json!({
        "endpoint": endpoint,
        "nodeId": status.node_id,
        "state": status.state,
        "leaderId": status.leader_id,
        "term": status.term,
        "lastLogIndex": status.last_log_index,
        "committedIndex": status.committed_index,
        "appliedIndex": status.applied_index,
        "snapshotIndex": status.snapshot_index,
        "purgedIndex": status.purged_index,
        "members": members,
        "shards": status.shards.iter().map(|s| json!({
            "shard": s.shard,
            "state": s.state,
            "leaderId": s.leader_id,
            "preferredLeader": s.preferred_leader,
            "term": s.term,
            "lastLogIndex": s.last_log_index,
            "committedIndex": s.committed_index,
            "appliedIndex": s.applied_index,
            "snapshotIndex": s.snapshot_index,
            "purgedIndex": s.purged_index,
        })).collect::<Vec<Value>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use endure_proto::endure::internal::ClusterMember;

    fn three_nodes() -> ClusterStatus {
        let member = |node_id: u64| ClusterMember {
            node_id,
            address: format!("10.0.0.{node_id}:50001"),
            role: if node_id == 3 { "learner" } else { "voter" }.into(),
            matched_index: None,
        };
        ClusterStatus {
            node_id: 2,
            leader_id: Some(1),
            term: 4,
            members: vec![member(1), member(2), member(3)],
            last_log_index: 12,
            committed_index: 11,
            applied_index: 10,
            state: "Follower".into(),
            snapshot_index: 0,
            purged_index: 0,
            wall_time: None,
            shards: Vec::new(),
        }
    }

    #[test]
    fn a_section_shows_the_node_and_marks_the_leader_among_members() {
        let text = status_text("http://10.0.0.2:50001", &three_nodes());
        assert!(text.contains("Node ID:          2\n"), "{text}");
        assert!(text.contains("Leader:           1\n"), "{text}");
        assert!(text.contains("Committed index:  11\n"), "{text}");
        assert!(
            text.contains(
                "\nNODE  ADDRESS         ROLE     LEADER\n1     10.0.0.1:50001  voter    *\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n3     10.0.0.3:50001  learner\n"), "{text}");
    }

    #[test]
    fn no_leader_reads_none() {
        let status = ClusterStatus {
            leader_id: None,
            ..three_nodes()
        };
        assert!(status_text("x", &status).contains("Leader:           none\n"));
        assert_eq!(status_json("x", &status)["leaderId"], Value::Null);
    }
}
