//! The test worker: one per node, connected through that node's client proxy. It opens a
//! `GetWorkItems` stream, answers orchestrator turns with the deterministic runner
//! ([`super::orchestrator::decide`]) and runs activities, writing each execution to the
//! witness log (fsynced) *before* answering, so that no recorded result can lack a real
//! execution (P5). When the stream breaks (node killed, paused, cut off) it reconnects with
//! backoff, like the Dapr SDKs do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::{
    work_item, ActivityRequest, ActivityResponse, GetWorkItemsRequest, OrchestratorRequest,
    OrchestratorResponse, WorkItem,
};
use serde_json::{json, Value};
use tokio::sync::watch;
use tonic::transport::Channel;

use super::orchestrator::decide;
use crate::recorder::{wall_ns, Witness};
use crate::rpc::{self, CALL_DEADLINE};
use crate::state::WitnessEntry;

/// First reconnect delay after a broken stream.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
/// Longest reconnect delay.
const RECONNECT_MAX: Duration = Duration::from_secs(3);

type Api = TaskHubSidecarServiceClient<Channel>;

/// Runs one worker against `addr` until `stop` turns true.
pub async fn run(addr: SocketAddr, witness: Arc<Witness>, mut stop: watch::Receiver<bool>) {
    let mut backoff = RECONNECT_MIN;
    while !*stop.borrow() {
        let session = session(addr, witness.clone());
        let ran_ok = tokio::select! {
            result = session => {
                if let Err(error) = &result {
                    tracing::debug!(%addr, %error, "worker stream ended");
                }
                result.is_ok()
            }
            _ = stop.changed() => return,
        };
        backoff = if ran_ok {
            RECONNECT_MIN
        } else {
            (backoff * 2).min(RECONNECT_MAX)
        };
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One stream: Hello, GetWorkItems, then every work item in its own task.
async fn session(addr: SocketAddr, witness: Arc<Witness>) -> Result<(), tonic::Status> {
    let mut api = Api::new(rpc::channel(addr));
    rpc::call(CALL_DEADLINE, api.hello(rpc::request((), CALL_DEADLINE))).await?;
    let mut stream = api
        .get_work_items(GetWorkItemsRequest::default())
        .await?
        .into_inner();
    while let Some(item) = stream.message().await? {
        tokio::spawn(handle(api.clone(), item, witness.clone()));
    }
    Ok(())
}

async fn handle(api: Api, item: WorkItem, witness: Arc<Witness>) {
    let token = item.completion_token;
    let result = match item.request {
        Some(work_item::Request::OrchestratorRequest(request)) => turn(api, request, token).await,
        Some(work_item::Request::ActivityRequest(request)) => {
            activity(api, request, token, &witness).await
        }
        _ => Ok(()),
    };
    if let Err(error) = result {
        tracing::debug!(%error, "completion not delivered; the server re-dispatches");
    }
}

async fn turn(
    mut api: Api,
    request: OrchestratorRequest,
    token: String,
) -> Result<(), tonic::Status> {
    let events = request.past_events.iter().chain(request.new_events.iter());
    let actions = decide(&request.instance_id, events);
    let response = OrchestratorResponse {
        instance_id: request.instance_id,
        actions,
        completion_token: token,
        ..Default::default()
    };
    rpc::call(
        CALL_DEADLINE,
        api.complete_orchestrator_task(rpc::request(response, CALL_DEADLINE)),
    )
    .await
    .map(|_| ())
}

/// The activity's result: its input and the attempt that produced it.
pub fn activity_output(input: Option<&str>, attempt: &str) -> String {
    let input = input
        .and_then(|i| serde_json::from_str::<Value>(i).ok())
        .unwrap_or(Value::Null);
    json!({ "in": input, "attempt": attempt }).to_string()
}

async fn activity(
    mut api: Api,
    request: ActivityRequest,
    token: String,
    witness: &Witness,
) -> Result<(), tonic::Status> {
    let instance_id = request
        .orchestration_instance
        .as_ref()
        .map(|i| i.instance_id.clone())
        .unwrap_or_default();
    let attempt = if token.is_empty() {
        request.task_execution_id.clone()
    } else {
        token.clone()
    };
    let output = activity_output(request.input.as_deref(), &attempt);
    let entry = WitnessEntry {
        instance_id: instance_id.clone(),
        task_id: request.task_id,
        attempt,
        name: request.name.clone(),
        output: output.clone(),
        wall_ns: wall_ns(),
    };
    if let Err(error) = tokio::task::block_in_place(|| witness.append(&entry)) {
        // Without the witness line the execution must not be reported.
        tracing::error!(%error, "witness log write failed");
        return Ok(());
    }
    let response = ActivityResponse {
        instance_id,
        task_id: request.task_id,
        result: Some(output),
        failure_details: None,
        completion_token: token,
    };
    rpc::call(
        CALL_DEADLINE,
        api.complete_activity_task(rpc::request(response, CALL_DEADLINE)),
    )
    .await
    .map(|_| ())
}
