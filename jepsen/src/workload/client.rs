//! One logical client (a Jepsen "process"): connected to one node through its client
//! proxy, it issues one operation at a time at its share of the rate and records each as
//! an invoke and a completion. Starts use unique generated IDs; reads pick any instance any
//! client started, so that reads cross nodes.

use std::sync::Arc;
use std::time::Duration;

use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::{
    purge_instances_request, CreateInstanceRequest, GetInstanceHistoryRequest, GetInstanceRequest,
    PurgeInstancesRequest, RaiseEventRequest, ResumeRequest, SuspendRequest, TerminateRequest,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::watch;
use tonic::transport::Channel;

use super::control::{Controlled, Sender};
use super::{Known, Phase};
use crate::cluster::Cluster;
use crate::decode::{self, status_name};
use crate::history::OpType;
use crate::recorder::{wall_ns, Recorder};
use crate::rpc::{self, CALL_DEADLINE};

/// Share of delayed starts among `timers` instances.
const DELAYED_START_SHARE: f64 = 0.3;
/// Largest `scheduledStartTimestamp` delay, ms.
const DELAYED_START_MAX_MS: u64 = 5_000;

/// Everything a client needs from the run.
#[derive(Clone)]
pub struct Env {
    pub recorder: Arc<Recorder>,
    pub cluster: Arc<Cluster>,
    pub known: Arc<Known>,
    /// Where the clients reach each slot (its client proxy, or the node itself).
    pub client_addrs: Vec<std::net::SocketAddr>,
}

pub struct Client {
    pub process: u64,
    pub slot: usize,
    api: TaskHubSidecarServiceClient<Channel>,
    pub rng: ChaCha8Rng,
    pub env: Env,
    counter: u64,
    pub senders: Vec<Sender>,
    pub controls: Vec<Controlled>,
}

impl Client {
    pub fn new(process: u64, slot: usize, seed: u64, env: Env) -> Client {
        let api = TaskHubSidecarServiceClient::new(rpc::channel(env.client_addrs[slot]));
        Client {
            process,
            slot,
            api,
            rng: ChaCha8Rng::seed_from_u64(seed ^ (process.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            env,
            counter: 0,
            senders: Vec::new(),
            controls: Vec::new(),
        }
    }

    fn node(&self) -> Option<u64> {
        Some(self.env.cluster.node_id(self.slot))
    }

    fn begin(&self, f: &str, value: &Value) {
        self.env
            .recorder
            .invoke(self.process, f, value.clone(), self.node());
    }

    /// Records the completion of a call; returns its type.
    fn end<T>(&self, f: &str, value: Value, result: &Result<T, tonic::Status>) -> OpType {
        let (kind, error) = match result {
            Ok(_) => (OpType::Ok, None),
            Err(status) => (rpc::classify(status), Some(rpc::describe(status))),
        };
        self.env
            .recorder
            .record(self.process, kind, f, value, self.node(), error);
        kind
    }

    /// The client's main loop: one operation per tick while the phase is `Run`.
    pub async fn run(mut self, interval: Duration, mut phase: watch::Receiver<Phase>) -> Client {
        while *phase.borrow() == Phase::Run {
            let jitter = self.rng.random_range(0.5..1.5);
            tokio::select! {
                _ = tokio::time::sleep(interval.mul_f64(jitter)) => {}
                _ = phase.changed() => continue,
            }
            self.one_op().await;
        }
        while *phase.borrow() != Phase::Finish {
            if phase.changed().await.is_err() {
                return self;
            }
        }
        self.finish().await;
        self
    }

    async fn one_op(&mut self) {
        let roll = self.rng.random_range(0..100);
        let done = match roll {
            0..30 => {
                self.start_random().await;
                true
            }
            30..55 => self.step_raise().await,
            55..65 => self.step_control().await,
            _ => false,
        };
        if done {
            return;
        }
        let pick = self.rng.random_range(0..usize::MAX);
        let Some(id) = self.env.known.pick(pick) else {
            self.start_random().await;
            return;
        };
        if self.rng.random_bool(0.7) {
            self.status(&id).await;
        } else {
            self.history(&id).await;
        }
    }

    async fn start_random(&mut self) {
        let name = match self.rng.random_range(0..100) {
            0..30 => "chain",
            30..40 => "fanout",
            40..65 => "timers",
            65..85 => "events",
            _ => "control",
        };
        let input = match name {
            "chain" => json!({ "n": self.rng.random_range(2..=5) }),
            "timers" => json!({ "delay_ms": self.rng.random_range(500..=30_000) }),
            "events" => json!({ "m": self.rng.random_range(3..=6), "sender": self.process }),
            "control" => json!({ "ticks": self.rng.random_range(10..=30) }),
            _ => json!({}),
        };
        let delayed = name == "timers" && self.rng.random_bool(DELAYED_START_SHARE);
        let start_at_ns = delayed.then(|| {
            wall_ns() + self.rng.random_range(1_000..=DELAYED_START_MAX_MS) as i128 * 1_000_000
        });
        self.counter += 1;
        let id = format!("{name}-{}-{}", self.process, self.counter);
        let kind = self.start(&id, name, input.clone(), start_at_ns).await;
        if kind != OpType::Fail {
            match name {
                "events" => self
                    .senders
                    .push(Sender::new(&id, input["m"].as_u64().unwrap_or(0))),
                "control" => self.controls.push(Controlled::new(&id)),
                _ => {}
            }
        }
    }

    /// StartInstance; `info` and `ok` make the ID known (an ambiguous start may exist).
    pub async fn start(&mut self, id: &str, name: &str, input: Value, at: Option<i128>) -> OpType {
        let mut value = json!({ "instance_id": id, "workload": name, "name": name,
            "input": input.to_string() });
        if let Some(at) = at {
            value["start_at_ns"] = json!(at as i64);
        }
        self.begin("start", &value);
        let request = CreateInstanceRequest {
            instance_id: id.to_owned(),
            name: name.to_owned(),
            input: Some(input.to_string()),
            scheduled_start_timestamp: at.map(decode::timestamp),
            ..Default::default()
        };
        let result = rpc::call(
            CALL_DEADLINE,
            self.api
                .start_instance(rpc::request(request, CALL_DEADLINE)),
        )
        .await;
        let kind = self.end("start", value, &result);
        if kind != OpType::Fail {
            self.env.known.add(id);
        }
        kind
    }

    /// RaiseEvent `e` with `{"seq":K,"sender":S}`.
    pub async fn raise(&mut self, id: &str, seq: u64) -> OpType {
        let payload = json!({ "seq": seq, "sender": self.process }).to_string();
        let value = json!({ "instance_id": id, "event_name": "e", "payload": payload, "seq": seq });
        self.begin("raise", &value);
        let request = RaiseEventRequest {
            instance_id: id.to_owned(),
            name: "e".into(),
            input: Some(payload),
            router: None,
        };
        let result = rpc::call(
            CALL_DEADLINE,
            self.api.raise_event(rpc::request(request, CALL_DEADLINE)),
        )
        .await;
        self.end("raise", value, &result)
    }

    /// GetInstance; the status name when the read succeeded.
    pub async fn status(&mut self, id: &str) -> Option<String> {
        let value = json!({ "instance_id": id });
        self.begin("status", &value);
        let request = GetInstanceRequest {
            instance_id: id.to_owned(),
            get_inputs_and_outputs: true,
            router: None,
        };
        let result = rpc::call(
            CALL_DEADLINE,
            self.api.get_instance(rpc::request(request, CALL_DEADLINE)),
        )
        .await;
        let (value, status) = match &result {
            Ok(reply) => {
                let (status, value) = status_value(id, reply);
                (value, Some(status))
            }
            Err(_) => (value, None),
        };
        self.end("status", value, &result);
        status
    }

    async fn history(&mut self, id: &str) {
        let value = json!({ "instance_id": id });
        self.begin("history", &value);
        let request = GetInstanceHistoryRequest {
            instance_id: id.to_owned(),
        };
        let result = rpc::call(
            CALL_DEADLINE,
            self.api
                .get_instance_history(rpc::request(request, CALL_DEADLINE)),
        )
        .await;
        let value = match &result {
            Ok(reply) => {
                let events: Vec<_> = reply.events.iter().map(decode::event).collect();
                json!({ "instance_id": id, "events": events })
            }
            Err(_) => value,
        };
        self.end("history", value, &result);
    }

    /// Terminate, suspend, resume or purge `id`.
    pub async fn control(&mut self, f: &str, id: &str) -> OpType {
        let value = json!({ "instance_id": id });
        self.begin(f, &value);
        let deadline = CALL_DEADLINE;
        let api = &mut self.api;
        let iid = id.to_owned();
        let result: Result<Value, tonic::Status> = match f {
            "terminate" => {
                let r = TerminateRequest {
                    instance_id: iid,
                    output: None,
                    recursive: true,
                    router: None,
                };
                rpc::call(deadline, api.terminate_instance(rpc::request(r, deadline)))
                    .await
                    .map(|_| value.clone())
            }
            "suspend" => {
                let r = SuspendRequest {
                    instance_id: iid,
                    reason: None,
                    router: None,
                };
                rpc::call(deadline, api.suspend_instance(rpc::request(r, deadline)))
                    .await
                    .map(|_| value.clone())
            }
            "resume" => {
                let r = ResumeRequest {
                    instance_id: iid,
                    reason: None,
                    router: None,
                };
                rpc::call(deadline, api.resume_instance(rpc::request(r, deadline)))
                    .await
                    .map(|_| value.clone())
            }
            _ => {
                let r = PurgeInstancesRequest {
                    recursive: true,
                    request: Some(purge_instances_request::Request::InstanceId(iid)),
                    ..Default::default()
                };
                rpc::call(deadline, api.purge_instances(rpc::request(r, deadline))).await.map(|reply| {
                    json!({ "instance_id": id, "deleted": reply.deleted_instance_count })
                })
            }
        };
        let recorded = result.as_ref().cloned().unwrap_or(value);
        self.end(f, recorded, &result)
    }
}

/// The `status` ok value and the status name of a GetInstance reply.
pub fn status_value(id: &str, reply: &endure_proto::GetInstanceResponse) -> (String, Value) {
    match (&reply.exists, &reply.orchestration_state) {
        (true, Some(state)) => {
            let status = status_name(state.orchestration_status);
            let mut value = json!({ "instance_id": id, "status": status,
                "execution_id": state.execution_id.clone().unwrap_or_default() });
            if let Some(output) = &state.output {
                value["output"] = json!(output);
            }
            (status, value)
        }
        _ => (
            "NOT_FOUND".into(),
            json!({ "instance_id": id, "status": "NOT_FOUND", "execution_id": "" }),
        ),
    }
}

/// Whether a status name is terminal (or the instance is gone).
pub fn is_final(status: &str) -> bool {
    matches!(
        status,
        "COMPLETED" | "FAILED" | "TERMINATED" | "CANCELED" | "NOT_FOUND"
    )
}
