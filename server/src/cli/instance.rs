//! `workflow get` and `workflow list`: instances as field listings, tables and JSON.
//!
//! The protocol has no query call that filters (QueryInstances is 0.17-only and not served),
//! so `list` pages through ListInstanceIDs and reads each instance with GetInstance,
//! filtering here. A filtered page may therefore show fewer rows than `--page-size`.

use clap::Args;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::{
    GetInstanceRequest, ListInstanceIDsRequest, OrchestrationState, OrchestrationStatus,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::output::{
    fields, json_time, parse_status, print_json, status_name, table_time, Format, Table, NONE,
};
use super::{Error, Target};

/// Flags of `workflow list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only instances in these statuses, comma-separated (RUNNING,PENDING,...).
    #[arg(long, value_delimiter = ',', value_parser = parse_status)]
    pub status: Vec<OrchestrationStatus>,
    /// Only instances of this workflow name.
    #[arg(long)]
    pub name: Option<String>,
    /// Instance IDs read per page (the server caps pages at 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    /// Continue after this token, printed by the previous page.
    #[arg(long)]
    pub page_token: Option<String>,
    /// Read every page, not only one.
    #[arg(long)]
    pub all: bool,
}

/// The instance's state, or `None` if it does not exist.
pub async fn state(
    client: &mut TaskHubSidecarServiceClient<Channel>,
    target: &Target,
    instance_id: &str,
    with_payloads: bool,
) -> Result<Option<OrchestrationState>, Error> {
    let request = GetInstanceRequest {
        instance_id: instance_id.to_string(),
        get_inputs_and_outputs: with_payloads,
        ..Default::default()
    };
    let response = client
        .get_instance(target.request(request))
        .await
        .map_err(|status| target.error(status, Some(instance_id)))?
        .into_inner();
    Ok(response.orchestration_state.filter(|_| response.exists))
}

/// `workflow get`: every field of one instance.
pub async fn get(instance_id: &str, target: &Target, format: Format) -> Result<(), Error> {
    let mut client = target.workflows().await?;
    let state = state(&mut client, target, instance_id, true)
        .await?
        .ok_or_else(|| Error::NotFound(instance_id.to_string()))?;
    match format {
        Format::Table => print!("{}", fields(&state_fields(&state))),
        Format::Json => print_json(&state_json(&state)),
    }
    Ok(())
}

/// The rows of `workflow get`; optional ones only when set, so the usual case stays short.
fn state_fields(state: &OrchestrationState) -> Vec<(&'static str, String)> {
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| NONE.to_string());
    let mut rows = vec![
        ("Instance ID", state.instance_id.clone()),
        ("Name", state.name.clone()),
        ("Status", status_name(state.orchestration_status)),
        ("Created", table_time(state.created_timestamp.as_ref())),
        ("Updated", table_time(state.last_updated_timestamp.as_ref())),
    ];
    if let Some(at) = &state.scheduled_start_timestamp {
        rows.push(("Scheduled start", table_time(Some(at))));
    }
    if let Some(at) = &state.completed_timestamp {
        rows.push(("Completed", table_time(Some(at))));
    }
    if let Some(version) = &state.version {
        rows.push(("Version", version.clone()));
    }
    if let Some(parent) = &state.parent_instance_id {
        rows.push(("Parent", parent.clone()));
    }
    rows.push(("Input", text(&state.input)));
    rows.push(("Output", text(&state.output)));
    rows.push(("Custom status", text(&state.custom_status)));
    let failure = state
        .failure_details
        .as_ref()
        .map(|f| format!("{}: {}", f.error_type, f.error_message));
    rows.push(("Failure", text(&failure)));
    rows
}

/// `workflow get --output json`: the state with proto JSON names; payloads as the strings
/// they are stored as (they are usually, but not always, JSON).
fn state_json(state: &OrchestrationState) -> Value {
    json!({
        "instanceId": state.instance_id,
        "name": state.name,
        "version": state.version,
        "executionId": state.execution_id,
        "status": status_name(state.orchestration_status),
        "createdAt": json_time(state.created_timestamp.as_ref()),
        "lastUpdatedAt": json_time(state.last_updated_timestamp.as_ref()),
        "scheduledStartAt": json_time(state.scheduled_start_timestamp.as_ref()),
        "completedAt": json_time(state.completed_timestamp.as_ref()),
        "parentInstanceId": state.parent_instance_id,
        "input": state.input,
        "output": state.output,
        "customStatus": state.custom_status,
        "failureDetails": state.failure_details.as_ref().map(|f| json!({
            "errorType": f.error_type,
            "errorMessage": f.error_message,
            "stackTrace": f.stack_trace,
        })),
        "tags": state.tags,
    })
}

/// `workflow list`: one page (or all with `--all`) of instances that pass the filters.
pub async fn list(args: &ListArgs, target: &Target, format: Format) -> Result<(), Error> {
    let mut client = target.workflows().await?;
    let mut token = args.page_token.clone().filter(|t| !t.is_empty());
    let mut shown = Vec::new();
    loop {
        let request = ListInstanceIDsRequest {
            continuation_token: token.clone(),
            page_size: Some(args.page_size),
        };
        let page = client
            .list_instance_i_ds(target.request(request))
            .await
            .map_err(|s| target.error(s, None))?;
        let page = page.into_inner();
        for instance_id in &page.instance_ids {
            // An instance purged since the page was read is simply not shown.
            let Some(state) = state(&mut client, target, instance_id, false).await? else {
                continue;
            };
            if passes(args, &state) {
                shown.push(state);
            }
        }
        token = page.continuation_token.filter(|t| !t.is_empty());
        if !args.all || token.is_none() {
            break;
        }
    }
    match format {
        Format::Table => print!("{}", list_table(&shown, token.as_deref())),
        Format::Json => print_json(&list_json(&shown, token.as_deref())),
    }
    Ok(())
}

fn passes(args: &ListArgs, state: &OrchestrationState) -> bool {
    let status_ok = args.status.is_empty()
        || args
            .status
            .iter()
            .any(|s| *s as i32 == state.orchestration_status);
    let name_ok = args.name.as_ref().is_none_or(|name| *name == state.name);
    status_ok && name_ok
}

/// The list as a table, then the token for the next page if there is one.
fn list_table(states: &[OrchestrationState], next_page_token: Option<&str>) -> String {
    let mut table = Table::new(&["INSTANCE ID", "NAME", "STATUS", "CREATED"]);
    for state in states {
        table.row(vec![
            state.instance_id.clone(),
            state.name.clone(),
            status_name(state.orchestration_status),
            table_time(state.created_timestamp.as_ref()),
        ]);
    }
    let mut text = table.render();
    if let Some(token) = next_page_token {
        text.push_str(&format!("\nnext page token: {token}\n"));
    }
    text
}

fn list_json(states: &[OrchestrationState], next_page_token: Option<&str>) -> Value {
    let instances: Vec<Value> = states
        .iter()
        .map(|state| {
            json!({
                "instanceId": state.instance_id,
                "name": state.name,
                "status": status_name(state.orchestration_status),
                "createdAt": json_time(state.created_timestamp.as_ref()),
                "lastUpdatedAt": json_time(state.last_updated_timestamp.as_ref()),
            })
        })
        .collect();
    json!({ "instances": instances, "nextPageToken": next_page_token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use endure_proto::prost_types::Timestamp;
    use endure_proto::TaskFailureDetails;

    fn failed() -> OrchestrationState {
        OrchestrationState {
            instance_id: "wf-1".into(),
            name: "Greeter".into(),
            orchestration_status: OrchestrationStatus::Failed as i32,
            created_timestamp: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000_000,
            }),
            input: Some("{\"who\":\"ann\"}".into()),
            failure_details: Some(TaskFailureDetails {
                error_type: "ValueError".into(),
                error_message: "no".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn get_lists_every_field_with_dashes_for_missing_ones() {
        let text = fields(&state_fields(&failed()));
        assert!(text.contains("Status:         FAILED\n"), "{text}");
        assert!(
            text.contains("Created:        2023-11-14T22:13:20.005Z\n"),
            "{text}"
        );
        assert!(text.contains("Updated:        -\n"), "{text}");
        assert!(
            text.contains("Input:          {\"who\":\"ann\"}\n"),
            "{text}"
        );
        assert!(text.contains("Failure:        ValueError: no\n"), "{text}");
        assert!(!text.contains("Scheduled start"), "{text}");
    }

    #[test]
    fn json_uses_status_names_and_rfc3339() {
        let value = state_json(&failed());
        assert_eq!(value["status"], "FAILED");
        assert_eq!(value["createdAt"], "2023-11-14T22:13:20.005Z");
        assert_eq!(value["output"], Value::Null);
        assert_eq!(value["failureDetails"]["errorType"], "ValueError");
    }

    #[test]
    fn filters_combine_status_and_name() {
        let args = |status: Vec<OrchestrationStatus>, name: Option<&str>| ListArgs {
            status,
            name: name.map(String::from),
            page_size: 10,
            page_token: None,
            all: false,
        };
        assert!(passes(&args(vec![], None), &failed()));
        assert!(passes(
            &args(
                vec![OrchestrationStatus::Running, OrchestrationStatus::Failed],
                Some("Greeter")
            ),
            &failed()
        ));
        assert!(!passes(
            &args(vec![OrchestrationStatus::Running], None),
            &failed()
        ));
        assert!(!passes(&args(vec![], Some("Other")), &failed()));
    }

    #[test]
    fn the_list_ends_with_the_next_page_token() {
        let text = list_table(&[failed()], Some("wf-1"));
        assert!(
            text.starts_with(
                "INSTANCE ID  NAME     STATUS  CREATED\nwf-1         Greeter  FAILED  2023-"
            ),
            "{text}"
        );
        assert!(text.ends_with("\nnext page token: wf-1\n"), "{text}");
        assert!(!list_table(&[], None).contains("next page"));
    }
}
