//! `TaskHubSidecarService`, as the Dapr SDKs call it: each method maps the request to a
//! [`Call`](crate::service::Call) and its message to the service operation, and the
//! service's error to a status ([`super::status`]).

use endure_proto::task_hub_sidecar_service_server::TaskHubSidecarService;
use endure_proto::*;
use tonic::{Request, Response, Status};

use super::status::call;
use super::work_items::{self, WorkItemStream};
use crate::service::forward::START_NO_WAIT_HEADER;
use crate::service::start::StartWait;
use crate::service::wait::Awaited;
use crate::service::Workflows;

/// The gRPC face of [`Workflows`].
#[derive(Clone)]
pub struct TaskHub {
    pub workflows: Workflows,
}

fn answer<T>(result: Result<T, crate::service::Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl TaskHubSidecarService for TaskHub {
    async fn hello(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn start_instance(
        &self,
        request: Request<CreateInstanceRequest>,
    ) -> Result<Response<CreateInstanceResponse>, Status> {
        let call = call(&request);
        // Set only by a node forwarding an HTTP start (which answers once committed).
        let wait = match request.metadata().contains_key(START_NO_WAIT_HEADER) {
            true => StartWait::No,
            false => StartWait::UntilRunning,
        };
        answer(
            self.workflows
                .start(&call, request.into_inner(), wait)
                .await,
        )
    }

    async fn get_instance(
        &self,
        request: Request<GetInstanceRequest>,
    ) -> Result<Response<GetInstanceResponse>, Status> {
        answer(
            self.workflows
                .get(&call(&request), request.into_inner())
                .await,
        )
    }

    async fn wait_for_instance_start(
        &self,
        request: Request<GetInstanceRequest>,
    ) -> Result<Response<GetInstanceResponse>, Status> {
        let call = call(&request);
        answer(
            self.workflows
                .wait(&call, request.into_inner(), Awaited::Start)
                .await,
        )
    }

    async fn wait_for_instance_completion(
        &self,
        request: Request<GetInstanceRequest>,
    ) -> Result<Response<GetInstanceResponse>, Status> {
        let call = call(&request);
        answer(
            self.workflows
                .wait(&call, request.into_inner(), Awaited::Completion)
                .await,
        )
    }

    async fn raise_event(
        &self,
        request: Request<RaiseEventRequest>,
    ) -> Result<Response<RaiseEventResponse>, Status> {
        answer(
            self.workflows
                .raise(&call(&request), request.into_inner())
                .await,
        )
    }

    async fn terminate_instance(
        &self,
        request: Request<TerminateRequest>,
    ) -> Result<Response<TerminateResponse>, Status> {
        answer(
            self.workflows
                .terminate(&call(&request), request.into_inner())
                .await,
        )
    }

    async fn suspend_instance(
        &self,
        request: Request<SuspendRequest>,
    ) -> Result<Response<SuspendResponse>, Status> {
        answer(
            self.workflows
                .suspend(&call(&request), request.into_inner())
                .await,
        )
    }

    async fn resume_instance(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        answer(
            self.workflows
                .resume(&call(&request), request.into_inner())
                .await,
        )
    }

    async fn purge_instances(
        &self,
        request: Request<PurgeInstancesRequest>,
    ) -> Result<Response<PurgeInstancesResponse>, Status> {
        answer(
            self.workflows
                .purge(&call(&request), request.into_inner())
                .await,
        )
    }

    async fn get_work_items(
        &self,
        request: Request<GetWorkItemsRequest>,
    ) -> Result<Response<WorkItemStream>, Status> {
        let call = call(&request);
        answer(work_items::open(&self.workflows, &call, request.into_inner()).await)
    }

    async fn complete_activity_task(
        &self,
        request: Request<ActivityResponse>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        let call = call(&request);
        answer(
            self.workflows
                .complete_activity(&call, request.into_inner())
                .await,
        )
    }

    async fn complete_orchestrator_task(
        &self,
        request: Request<OrchestratorResponse>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        let call = call(&request);
        answer(
            self.workflows
                .complete_turn(&call, request.into_inner())
                .await,
        )
    }

    /// The 1.18+ name of `CompleteOrchestratorTask`.
    async fn complete_workflow_task(
        &self,
        request: Request<OrchestratorResponse>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        let call = call(&request);
        answer(
            self.workflows
                .complete_turn(&call, request.into_inner())
                .await,
        )
    }

    async fn get_instance_history(
        &self,
        request: Request<GetInstanceHistoryRequest>,
    ) -> Result<Response<GetInstanceHistoryResponse>, Status> {
        answer(
            self.workflows
                .history(&call(&request), request.into_inner())
                .await,
        )
    }

    async fn list_instance_i_ds(
        &self,
        request: Request<ListInstanceIDsRequest>,
    ) -> Result<Response<ListInstanceIDsResponse>, Status> {
        answer(
            self.workflows
                .list(&call(&request), request.into_inner())
                .await,
        )
    }

    async fn rerun_workflow_from_event(
        &self,
        request: Request<RerunWorkflowFromEventRequest>,
    ) -> Result<Response<RerunWorkflowFromEventResponse>, Status> {
        answer(
            self.workflows
                .rerun(&call(&request), request.into_inner())
                .await,
        )
    }
}
