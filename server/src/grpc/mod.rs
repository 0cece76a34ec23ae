//! The SDK-facing gRPC service, `TaskHubSidecarService`, as the Dapr SDKs call it.
//!
//! - [`metrics_layer`]: request counts and latency per method.
//! - [`status`]: mapping errors to gRPC statuses (one place).
//! - [`wait`]: long polls with the client's deadline.
//! - [`worker`]: the `GetWorkItems` stream and the completion RPCs.

pub mod metrics_layer;
pub mod status;
pub mod wait;
pub mod worker;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use endure_engine::query;
use endure_engine::records::command::Kind;
use endure_engine::records::{Purge, RaiseEvent, Rerun, Resume, StartInstance, Suspend, Terminate};
use endure_engine::StateView;
use endure_proto::task_hub_sidecar_service_server::TaskHubSidecarService;
use endure_proto::*;
use endure_raft::state_machine::Shared;
use endure_storage::rocks::RocksStore;
use endure_storage::Store;
use tonic::{Request, Response, Status};

use crate::dispatcher;
use crate::proposer::Proposer;
use status::{check, from_proposer, from_storage};

/// The stream type tonic expects for GetWorkItems.
type WorkItemStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<WorkItem, Status>> + Send + 'static>>;

/// Tries to hand a worker's answer to the leader while leadership moves.
const ANSWER_FORWARD_ATTEMPTS: u32 = 20;
const ANSWER_FORWARD_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

/// Longest instance ID or name accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1_024;
/// Largest page ListInstanceIDs returns.
pub const MAX_PAGE_INSTANCES: usize = 1_000;
const DEFAULT_PAGE_INSTANCES: usize = 100;

/// The service: cheap to clone, shares the node's components.
#[derive(Clone)]
pub struct Sidecar {
    pub proposer: Proposer,
    pub store: Arc<RocksStore>,
    pub shared: Arc<Shared>,
    /// The dispatcher, while this node leads (it runs on the leader only).
    pub dispatcher: Arc<std::sync::RwLock<Option<dispatcher::Handle>>>,
    /// Finds the leader when this node is not it.
    pub forward: crate::forward::Forwarder,
    pub next_worker_id: Arc<AtomicU64>,
    /// Largest request accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Turns true on shutdown: long polls end with UNAVAILABLE so clients retry elsewhere.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

fn require(value: &str, what: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is required")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "{what} is {} bytes long; at most {MAX_ID_BYTES} are allowed",
            value.len()
        )));
    }
    Ok(())
}

/// Whether starting an instance waits for its first turn.
pub enum StartWait {
    /// As Dapr's gRPC API: until the instance leaves PENDING (or the deadline passes).
    UntilRunning(Option<tokio::time::Instant>),
    /// As Dapr's HTTP API: return once the start is committed.
    No,
}

/// Serves the call on the leader: returns the leader's answer when this node is not it.
macro_rules! forward {
    ($self:ident, $method:ident, $request:ident) => {
        if let Some(mut leader) = $self.forward.leader_for(&$request)? {
            let call = leader.taskhub.$method(crate::forward::forwarded($request));
            return $self.forward.while_leading(leader.node_id, call).await;
        }
    };
}

/// As `forward!`, for a worker's answer: the SDKs do not resend an answer that failed, so
/// while leadership moves it is forwarded again to whichever node leads (answers are fenced,
/// so one that arrives twice is applied once).
macro_rules! forward_answer {
    ($self:ident, $method:ident, $request:ident) => {
        if $self.forward.leader_for(&$request)?.is_some() {
            let message = $request.into_inner();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let result = match $self.forward.leader() {
                    Ok(Some(mut leader)) => {
                        let call = leader
                            .taskhub
                            .$method(crate::forward::forwarded(Request::new(message.clone())));
                        $self.forward.while_leading(leader.node_id, call).await
                    }
                    Ok(None) => return $self.$method(Request::new(message)).await,
                    // No leader known yet: an election is under way.
                    Err(status) => Err(status),
                };
                match result {
                    Err(status)
                        if answer_may_be_lost(&status) && attempt < ANSWER_FORWARD_ATTEMPTS =>
                    {
                        tokio::time::sleep(ANSWER_FORWARD_BACKOFF).await;
                    }
                    result => return result,
                }
            }
        }
    };
}

/// Statuses after which a forwarded answer may not have reached a leader: the leader went
/// away (transport errors surface as UNKNOWN or CANCELLED) or none is known.
fn answer_may_be_lost(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

impl Sidecar {
    /// The dispatcher, or UNAVAILABLE while this node is not (yet) a serving leader.
    pub fn dispatcher(&self) -> Result<dispatcher::Handle, Status> {
        self.dispatcher
            .read()
            .expect("lock poisoned")
            .clone()
            .ok_or_else(|| {
                Status::unavailable("this node is not serving as leader right now; retry")
            })
    }

    /// Starts an instance (a generated ID if none is given). With a scheduled start in the
    /// future the call never waits.
    pub async fn start(
        &self,
        request: CreateInstanceRequest,
        wait: StartWait,
    ) -> Result<CreateInstanceResponse, Status> {
        self.within_limit(&request)?;
        if let Some(mut leader) = self.forward.leader()? {
            let leader_id = leader.node_id;
            let call = async move {
                match wait {
                    StartWait::UntilRunning(deadline) => {
                        let mut forwarded = crate::forward::forwarded(Request::new(request));
                        if let Some(deadline) = deadline {
                            forwarded.set_timeout(
                                deadline.saturating_duration_since(tokio::time::Instant::now()),
                            );
                        }
                        leader.taskhub.start_instance(forwarded).await
                    }
                    StartWait::No => {
                        leader
                            .admin
                            .start_instance_no_wait(crate::forward::forwarded(Request::new(
                                request,
                            )))
                            .await
                    }
                }
            };
            return self
                .forward
                .while_leading(leader_id, call)
                .await
                .map(Response::into_inner);
        }
        require(&request.name, "name")?;
        let instance_id = if request.instance_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            request.instance_id.clone()
        };
        require(&instance_id, "instanceId")?;
        let now = self.proposer.next_time().map_err(from_proposer)?;
        let scheduled = request
            .scheduled_start_timestamp
            .filter(|at| endure_engine::time::after(at, &now));
        let start = StartInstance {
            instance_id: instance_id.clone(),
            name: request.name,
            input: request.input,
            version: request.version.filter(|v| !v.is_empty()),
            scheduled_start: scheduled,
            tags: request.tags,
            enforce_unique: request.enforce_unique_instance_id,
            router: request.router,
            parent_trace_context: request.parent_trace_context,
        };
        check(self.proposer.propose(Kind::StartInstance(start)).await)?;
        if let (StartWait::UntilRunning(deadline), None) = (wait, scheduled) {
            wait::until(self, &instance_id, deadline, query::has_started).await?;
        }
        Ok(CreateInstanceResponse { instance_id })
    }

    /// Refuses a request over the configured size (the transport's own cap is higher, so
    /// that this check, with its clear status, is the one clients meet).
    pub fn within_limit(&self, message: &impl prost::Message) -> Result<(), Status> {
        let size = message.encoded_len();
        if size > self.max_message_bytes {
            return Err(Status::resource_exhausted(format!(
                "the request is {size} bytes; at most {} bytes are accepted",
                self.max_message_bytes
            )));
        }
        Ok(())
    }

    async fn read_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<endure_engine::records::InstanceRecord>, Status> {
        self.proposer.linearizable().await.map_err(from_proposer)?;
        self.store.instance(instance_id).map_err(from_storage)
    }

    async fn wait_for(
        &self,
        instance_id: &str,
        deadline: Option<tokio::time::Instant>,
        done: impl Fn(&endure_engine::records::InstanceRecord) -> bool,
    ) -> Result<GetInstanceResponse, Status> {
        require(instance_id, "instanceId")?;
        self.proposer.linearizable().await.map_err(from_proposer)?;
        match wait::until(self, instance_id, deadline, done).await? {
            Some(record) => Ok(GetInstanceResponse {
                exists: true,
                orchestration_state: Some(query::state(&record, true)),
            }),
            None => Err(Status::not_found(format!(
                "no such instance exists: '{instance_id}'"
            ))),
        }
    }
}

#[tonic::async_trait]
impl TaskHubSidecarService for Sidecar {
    async fn hello(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn start_instance(
        &self,
        request: Request<CreateInstanceRequest>,
    ) -> Result<Response<CreateInstanceResponse>, Status> {
        let deadline = wait::deadline(&request);
        let started = self
            .start(request.into_inner(), StartWait::UntilRunning(deadline))
            .await?;
        Ok(Response::new(started))
    }

    async fn get_instance(
        &self,
        request: Request<GetInstanceRequest>,
    ) -> Result<Response<GetInstanceResponse>, Status> {
        forward!(self, get_instance, request);
        let request = request.into_inner();
        require(&request.instance_id, "instanceId")?;
        let response = match self.read_instance(&request.instance_id).await? {
            Some(record) => GetInstanceResponse {
                exists: true,
                orchestration_state: Some(query::state(&record, request.get_inputs_and_outputs)),
            },
            None => GetInstanceResponse {
                exists: false,
                orchestration_state: None,
            },
        };
        Ok(Response::new(response))
    }

    async fn wait_for_instance_start(
        &self,
        request: Request<GetInstanceRequest>,
    ) -> Result<Response<GetInstanceResponse>, Status> {
        forward!(self, wait_for_instance_start, request);
        let deadline = wait::deadline(&request);
        let id = request.into_inner().instance_id;
        Ok(Response::new(
            self.wait_for(&id, deadline, query::has_started).await?,
        ))
    }

    async fn wait_for_instance_completion(
        &self,
        request: Request<GetInstanceRequest>,
    ) -> Result<Response<GetInstanceResponse>, Status> {
        forward!(self, wait_for_instance_completion, request);
        let deadline = wait::deadline(&request);
        let id = request.into_inner().instance_id;
        Ok(Response::new(
            self.wait_for(&id, deadline, query::has_completed).await?,
        ))
    }

    async fn raise_event(
        &self,
        request: Request<RaiseEventRequest>,
    ) -> Result<Response<RaiseEventResponse>, Status> {
        forward!(self, raise_event, request);
        let request = request.into_inner();
        self.within_limit(&request)?;
        require(&request.instance_id, "instanceId")?;
        require(&request.name, "event name")?;
        let raise = RaiseEvent {
            instance_id: request.instance_id,
            name: request.name,
            input: request.input,
        };
        check(self.proposer.propose(Kind::RaiseEvent(raise)).await)?;
        Ok(Response::new(RaiseEventResponse {}))
    }

    async fn terminate_instance(
        &self,
        request: Request<TerminateRequest>,
    ) -> Result<Response<TerminateResponse>, Status> {
        forward!(self, terminate_instance, request);
        let request = request.into_inner();
        self.within_limit(&request)?;
        require(&request.instance_id, "instanceId")?;
        let terminate = Terminate {
            instance_id: request.instance_id,
            output: request.output,
            recursive: request.recursive,
        };
        // The engine ends the run within the command, so once applied the state shows it.
        check(self.proposer.propose(Kind::Terminate(terminate)).await)?;
        Ok(Response::new(TerminateResponse {}))
    }

    async fn suspend_instance(
        &self,
        request: Request<SuspendRequest>,
    ) -> Result<Response<SuspendResponse>, Status> {
        forward!(self, suspend_instance, request);
        let request = request.into_inner();
        require(&request.instance_id, "instanceId")?;
        let suspend = Suspend {
            instance_id: request.instance_id,
            reason: request.reason,
        };
        check(self.proposer.propose(Kind::Suspend(suspend)).await)?;
        Ok(Response::new(SuspendResponse {}))
    }

    async fn resume_instance(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        forward!(self, resume_instance, request);
        let request = request.into_inner();
        require(&request.instance_id, "instanceId")?;
        let resume = Resume {
            instance_id: request.instance_id,
            reason: request.reason,
        };
        check(self.proposer.propose(Kind::Resume(resume)).await)?;
        Ok(Response::new(ResumeResponse {}))
    }

    async fn purge_instances(
        &self,
        request: Request<PurgeInstancesRequest>,
    ) -> Result<Response<PurgeInstancesResponse>, Status> {
        forward!(self, purge_instances, request);
        let request = request.into_inner();
        let instance_id = match request.request {
            Some(purge_instances_request::Request::InstanceId(id)) => id,
            Some(purge_instances_request::Request::PurgeInstanceFilter(_)) => {
                return Err(Status::unimplemented(
                    "multi-instance purge is not implemented",
                ));
            }
            None => return Err(Status::invalid_argument("instanceId is required")),
        };
        require(&instance_id, "instanceId")?;
        let purge = Purge {
            instance_id,
            recursive: request.recursive,
        };
        let response = check(self.proposer.propose(Kind::Purge(purge)).await)?;
        Ok(Response::new(PurgeInstancesResponse {
            deleted_instance_count: response.purged as i32,
            is_complete: Some(true),
        }))
    }

    async fn get_work_items(
        &self,
        request: Request<GetWorkItemsRequest>,
    ) -> Result<Response<WorkItemStream>, Status> {
        if let Some(mut leader) = self.forward.leader_for(&request)? {
            // The worker's stream on this node relays the leader's; when this node sees
            // another leader (or none), the stream ends and the worker reconnects (to this
            // node, then relayed to the new leader).
            let leader_id = leader.node_id;
            let call = leader
                .taskhub
                .get_work_items(crate::forward::forwarded(request));
            let relayed = self.forward.while_leading(leader_id, call).await?;
            return Ok(Response::new(Box::pin(
                self.forward.relay(leader_id, relayed.into_inner()),
            )));
        }
        Ok(Response::new(Box::pin(
            worker::open_stream(self, request.into_inner()).await?,
        )))
    }

    async fn complete_activity_task(
        &self,
        request: Request<ActivityResponse>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        forward_answer!(self, complete_activity_task, request);
        let request = request.into_inner();
        self.within_limit(&request)?;
        worker::complete_activity(self, request).await?;
        Ok(Response::new(CompleteTaskResponse {}))
    }

    async fn complete_orchestrator_task(
        &self,
        request: Request<OrchestratorResponse>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        forward_answer!(self, complete_orchestrator_task, request);
        let request = request.into_inner();
        self.within_limit(&request)?;
        worker::complete_turn(self, request).await?;
        Ok(Response::new(CompleteTaskResponse {}))
    }

    async fn complete_workflow_task(
        &self,
        request: Request<OrchestratorResponse>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        forward_answer!(self, complete_workflow_task, request);
        let request = request.into_inner();
        self.within_limit(&request)?;
        worker::complete_turn(self, request).await?;
        Ok(Response::new(CompleteTaskResponse {}))
    }

    async fn get_instance_history(
        &self,
        request: Request<GetInstanceHistoryRequest>,
    ) -> Result<Response<GetInstanceHistoryResponse>, Status> {
        forward!(self, get_instance_history, request);
        let instance_id = request.into_inner().instance_id;
        require(&instance_id, "instanceId")?;
        if self.read_instance(&instance_id).await?.is_none() {
            return Err(Status::not_found(format!(
                "workflow instance '{instance_id}' not found"
            )));
        }
        let events = self.store.history(&instance_id).map_err(from_storage)?;
        Ok(Response::new(GetInstanceHistoryResponse { events }))
    }

    async fn list_instance_i_ds(
        &self,
        request: Request<ListInstanceIDsRequest>,
    ) -> Result<Response<ListInstanceIDsResponse>, Status> {
        forward!(self, list_instance_i_ds, request);
        let request = request.into_inner();
        let page = match request.page_size {
            None | Some(0) => DEFAULT_PAGE_INSTANCES,
            Some(size) => (size as usize).min(MAX_PAGE_INSTANCES),
        };
        self.proposer.linearizable().await.map_err(from_proposer)?;
        let after = request.continuation_token.filter(|t| !t.is_empty());
        let records = self
            .store
            .list_instances(after.as_deref(), page + 1)
            .map_err(from_storage)?;
        let more = records.len() > page;
        let instance_ids: Vec<String> = records
            .into_iter()
            .take(page)
            .map(|r| r.instance_id)
            .collect();
        let continuation_token = if more {
            instance_ids.last().cloned()
        } else {
            None
        };
        Ok(Response::new(ListInstanceIDsResponse {
            instance_ids,
            continuation_token,
        }))
    }

    async fn rerun_workflow_from_event(
        &self,
        request: Request<RerunWorkflowFromEventRequest>,
    ) -> Result<Response<RerunWorkflowFromEventResponse>, Status> {
        forward!(self, rerun_workflow_from_event, request);
        let deadline = wait::deadline(&request);
        let request = request.into_inner();
        self.within_limit(&request)?;
        require(&request.source_instance_id, "sourceInstanceID")?;
        let new_instance_id = match request.new_instance_id.filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        require(&new_instance_id, "newInstanceID")?;
        let event_id = i32::try_from(request.event_id).map_err(|_| {
            Status::invalid_argument(format!("eventID {} is out of range", request.event_id))
        })?;
        let rerun = Rerun {
            source_instance_id: request.source_instance_id,
            event_id,
            new_instance_id: new_instance_id.clone(),
            overwrite_input: request.overwrite_input,
            input: request.input,
        };
        check(self.proposer.propose(Kind::Rerun(rerun)).await)?;
        // As Dapr: return once the new instance runs.
        wait::until(self, &new_instance_id, deadline, query::has_started).await?;
        Ok(Response::new(RerunWorkflowFromEventResponse {
            new_instance_id,
        }))
    }
}
