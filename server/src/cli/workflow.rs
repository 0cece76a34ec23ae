//! `endure workflow ...`: start workflows, read their state and history, and steer them.
//!
//! Every command is one or a few calls of the client half of `TaskHubSidecarService`, the
//! same calls the Dapr SDKs make, so the CLI sees exactly what an application sees.

use std::time::Duration;

use clap::{Args, Subcommand};
use endure_proto::prost_types::Timestamp;
use endure_proto::*;
use serde_json::{json, Value};

use super::instance::{self, ListArgs};
use super::output::{print_json, Format};
use super::time::parse_rfc3339;
use super::{history, is_timeout, Error, Target};

/// How long `start --no-wait` gives the server: enough to record the start (one Raft
/// commit), after which the call stops waiting for a worker.
const NO_WAIT_DEADLINE: Duration = Duration::from_secs(1);

/// The `workflow` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a workflow and print its instance ID.
    ///
    /// As in the Dapr gRPC API, the start waits until a worker has begun running the
    /// workflow: with no worker connected it waits --timeout seconds (30 by default) and
    /// fails, although the instance is recorded and runs once a worker connects. Use
    /// --no-wait to return as soon as the start is recorded, or --start-at to schedule it.
    Start(StartArgs),
    /// Show an instance's status, input, output and failure.
    Get {
        /// The instance ID.
        instance_id: String,
    },
    /// List instances (a page at a time), optionally only some statuses or one workflow name.
    List(ListArgs),
    /// Show an instance's history events.
    History {
        /// The instance ID.
        instance_id: String,
    },
    /// Send an external event to an instance.
    Raise {
        /// The instance ID.
        instance_id: String,
        /// The event name the workflow waits for.
        event_name: String,
        /// Event data: JSON as is, any other text as a JSON string.
        #[arg(long)]
        data: Option<String>,
    },
    /// Suspend an instance: it runs no more turns until resumed; events still queue up.
    Suspend {
        /// The instance ID.
        instance_id: String,
        /// Why, as plain text; the workflow sees it in its history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended instance.
    Resume {
        /// The instance ID.
        instance_id: String,
        /// Why, as plain text; the workflow sees it in its history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Terminate an instance (and the child workflows it started) without asking its worker.
    Terminate {
        /// The instance ID.
        instance_id: String,
        /// Output to record: JSON as is, any other text as a JSON string. (Not `--output`,
        /// which chooses table or JSON.)
        #[arg(long)]
        result: Option<String>,
        /// Leave the child workflows running.
        #[arg(long)]
        non_recursive: bool,
    },
    /// Delete a finished instance, its history and (unless --non-recursive) its children.
    Purge {
        /// The instance ID.
        instance_id: String,
        /// Keep the child workflows.
        #[arg(long)]
        non_recursive: bool,
    },
}

/// Flags of `workflow start`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// The workflow name, as the worker registered it.
    pub name: String,
    /// Instance ID; a random one is generated when left out.
    #[arg(long)]
    pub id: Option<String>,
    /// Input: JSON as is, any other text as a JSON string.
    #[arg(long)]
    pub input: Option<String>,
    /// Start at this time (RFC 3339, e.g. 2030-01-31T09:30:00Z); the command returns at
    /// once and the instance stays PENDING until then.
    #[arg(long, value_parser = parse_rfc3339)]
    pub start_at: Option<Timestamp>,
    /// Return once the start is recorded, without waiting for a worker to pick it up.
    #[arg(long)]
    pub no_wait: bool,
}

/// Runs one `workflow` subcommand against `target`.
pub async fn run(command: Command, target: &Target, format: Format) -> Result<(), Error> {
    match command {
        Command::Start(args) => start(args, target, format).await,
        Command::Get { instance_id } => instance::get(&instance_id, target, format).await,
        Command::List(args) => instance::list(&args, target, format).await,
        Command::History { instance_id } => show_history(&instance_id, target, format).await,
        Command::Raise {
            instance_id,
            event_name,
            data,
        } => raise(&instance_id, &event_name, data.as_deref(), target, format).await,
        Command::Suspend {
            instance_id,
            reason,
        } => suspend(&instance_id, reason, target, format).await,
        Command::Resume {
            instance_id,
            reason,
        } => resume(&instance_id, reason, target, format).await,
        Command::Terminate {
            instance_id,
            result,
            non_recursive,
        } => {
            terminate(
                &instance_id,
                result.as_deref(),
                !non_recursive,
                target,
                format,
            )
            .await
        }
        Command::Purge {
            instance_id,
            non_recursive,
        } => purge(&instance_id, !non_recursive, target, format).await,
    }
}

/// Sends a payload the way the SDKs do, JSON-encoded: valid JSON goes as typed (`42`,
/// `{"a":1}`), anything else becomes a JSON string, so `--input hello` works too.
pub fn json_payload(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(_) => text.to_string(),
        Err(_) => Value::String(text.to_string()).to_string(),
    }
}

async fn start(args: StartArgs, target: &Target, format: Format) -> Result<(), Error> {
    // The ID is chosen here, not by the server, so that after a timeout the CLI can still
    // look the instance up and tell recorded from lost.
    let instance_id = args
        .id
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let mut client = target.workflows().await?;
    let mut request = target.request(CreateInstanceRequest {
        instance_id: instance_id.clone(),
        name: args.name,
        input: args.input.as_deref().map(json_payload),
        scheduled_start_timestamp: args.start_at,
        ..Default::default()
    });
    request.set_timeout(if args.no_wait {
        NO_WAIT_DEADLINE
    } else {
        target.timeout
    });
    match client.start_instance(request).await {
        Ok(_) => {}
        Err(status) if is_timeout(&status) => {
            let recorded = instance::state(&mut client, target, &instance_id, false)
                .await?
                .is_some();
            match (recorded, args.no_wait) {
                (true, true) => {}
                (true, false) => {
                    return Err(Error::Server(format!(
                        "workflow {instance_id} was started, but no worker began running it within {} s; \
                         it runs once a worker connects (use --no-wait not to wait)",
                        target.timeout.as_secs()
                    )))
                }
                (false, _) => {
                    return Err(Error::Server(format!(
                        "the start of {instance_id} was not confirmed in time; check with `endure workflow get {instance_id}`"
                    )))
                }
            }
        }
        Err(status) => return Err(target.error(status, None)),
    }
    match format {
        Format::Table => println!("{instance_id}"),
        Format::Json => print_json(&json!({ "ok": true, "instanceId": instance_id })),
    }
    Ok(())
}

async fn show_history(instance_id: &str, target: &Target, format: Format) -> Result<(), Error> {
    let mut client = target.workflows().await?;
    let request = target.request(GetInstanceHistoryRequest {
        instance_id: instance_id.to_string(),
    });
    let events = client
        .get_instance_history(request)
        .await
        .map_err(|status| target.error(status, Some(instance_id)))?
        .into_inner()
        .events;
    match format {
        Format::Table => print!("{}", history::table(&events)),
        Format::Json => print_json(&history::json(&events)),
    }
    Ok(())
}

async fn raise(
    instance_id: &str,
    event_name: &str,
    data: Option<&str>,
    target: &Target,
    format: Format,
) -> Result<(), Error> {
    let request = RaiseEventRequest {
        instance_id: instance_id.to_string(),
        name: event_name.to_string(),
        input: data.map(json_payload),
        ..Default::default()
    };
    let result = target
        .workflows()
        .await?
        .raise_event(target.request(request))
        .await;
    result.map_err(|status| target.error(status, Some(instance_id)))?;
    let message = format!("raised event '{event_name}' on {instance_id}");
    confirm(
        format,
        &message,
        "raise",
        instance_id,
        json!({ "event": event_name }),
    );
    Ok(())
}

async fn suspend(
    instance_id: &str,
    reason: Option<String>,
    target: &Target,
    format: Format,
) -> Result<(), Error> {
    let request = SuspendRequest {
        instance_id: instance_id.to_string(),
        reason,
        ..Default::default()
    };
    let result = target
        .workflows()
        .await?
        .suspend_instance(target.request(request))
        .await;
    result.map_err(|status| target.error(status, Some(instance_id)))?;
    confirm(
        format,
        &format!("suspended {instance_id}"),
        "suspend",
        instance_id,
        json!({}),
    );
    Ok(())
}

async fn resume(
    instance_id: &str,
    reason: Option<String>,
    target: &Target,
    format: Format,
) -> Result<(), Error> {
    let request = ResumeRequest {
        instance_id: instance_id.to_string(),
        reason,
        ..Default::default()
    };
    let result = target
        .workflows()
        .await?
        .resume_instance(target.request(request))
        .await;
    result.map_err(|status| target.error(status, Some(instance_id)))?;
    confirm(
        format,
        &format!("resumed {instance_id}"),
        "resume",
        instance_id,
        json!({}),
    );
    Ok(())
}

async fn terminate(
    instance_id: &str,
    output: Option<&str>,
    recursive: bool,
    target: &Target,
    format: Format,
) -> Result<(), Error> {
    let request = TerminateRequest {
        instance_id: instance_id.to_string(),
        output: output.map(json_payload),
        recursive,
        ..Default::default()
    };
    let result = target
        .workflows()
        .await?
        .terminate_instance(target.request(request))
        .await;
    result.map_err(|status| target.error(status, Some(instance_id)))?;
    confirm(
        format,
        &format!("terminated {instance_id}"),
        "terminate",
        instance_id,
        json!({ "recursive": recursive }),
    );
    Ok(())
}

async fn purge(
    instance_id: &str,
    recursive: bool,
    target: &Target,
    format: Format,
) -> Result<(), Error> {
    let mut client = target.workflows().await?;
    let request = PurgeInstancesRequest {
        request: Some(purge_instances_request::Request::InstanceId(
            instance_id.to_string(),
        )),
        recursive,
        ..Default::default()
    };
    let deleted = client
        .purge_instances(target.request(request))
        .await
        .map_err(|status| target.error(status, Some(instance_id)))?
        .into_inner()
        .deleted_instance_count;
    let message = format!("purged {instance_id} ({deleted} instance(s) deleted)");
    confirm(
        format,
        &message,
        "purge",
        instance_id,
        json!({ "deletedInstanceCount": deleted, "recursive": recursive }),
    );
    Ok(())
}

/// Prints the confirmation line, or `{"ok":true,"action":...,"instanceId":...}` plus `extra`.
fn confirm(format: Format, message: &str, action: &str, instance_id: &str, extra: Value) {
    match format {
        Format::Table => println!("{message}"),
        Format::Json => {
            let mut object = json!({ "ok": true, "action": action, "instanceId": instance_id });
            if let (Some(object), Value::Object(extra)) = (object.as_object_mut(), extra) {
                object.extend(extra);
            }
            print_json(&object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_as_typed_or_json_strings() {
        assert_eq!(json_payload("{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(json_payload("42"), "42");
        assert_eq!(json_payload("\"quoted\""), "\"quoted\"");
        assert_eq!(json_payload("hello world"), "\"hello world\"");
        assert_eq!(json_payload("say \"hi\""), "\"say \\\"hi\\\"\"");
    }
}
