//! Steering an instance: raise an event, terminate, suspend, resume, purge. Each proposes
//! one command; the engine decides, and its refusal comes back as the error.

use endure_engine::records::command::Kind;
use endure_engine::records::{Purge, RaiseEvent, Resume, Suspend, Terminate};
use endure_proto::{
    purge_instances_request, PurgeInstancesRequest, PurgeInstancesResponse, RaiseEventRequest,
    RaiseEventResponse, ResumeRequest, ResumeResponse, SuspendRequest, SuspendResponse,
    TerminateRequest, TerminateResponse,
};

use super::error::check;
use super::{require, Call, Error, Workflows};

impl Workflows {
    pub async fn raise(
        &self,
        call: &Call,
        request: RaiseEventRequest,
    ) -> Result<RaiseEventResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call)? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.raise_event(request).await
                })
                .await;
        }
        self.within_limit(&request)?;
        require(&request.instance_id, "instanceId")?;
        require(&request.name, "event name")?;
        let raise = RaiseEvent {
            instance_id: request.instance_id,
            name: request.name,
            input: request.input,
        };
        check(shard.proposer.propose(Kind::RaiseEvent(raise)).await)?;
        Ok(RaiseEventResponse {})
    }

    /// Ends the run within the command, so once applied the state shows it.
    pub async fn terminate(
        &self,
        call: &Call,
        request: TerminateRequest,
    ) -> Result<TerminateResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call)? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.terminate_instance(request).await
                })
                .await;
        }
        self.within_limit(&request)?;
        require(&request.instance_id, "instanceId")?;
        let terminate = Terminate {
            instance_id: request.instance_id,
            output: request.output,
            recursive: request.recursive,
        };
        check(shard.proposer.propose(Kind::Terminate(terminate)).await)?;
        Ok(TerminateResponse {})
    }

    pub async fn suspend(
        &self,
        call: &Call,
        request: SuspendRequest,
    ) -> Result<SuspendResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call)? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.suspend_instance(request).await
                })
                .await;
        }
        require(&request.instance_id, "instanceId")?;
        let suspend = Suspend {
            instance_id: request.instance_id,
            reason: request.reason,
        };
        check(shard.proposer.propose(Kind::Suspend(suspend)).await)?;
        Ok(SuspendResponse {})
    }

    pub async fn resume(
        &self,
        call: &Call,
        request: ResumeRequest,
    ) -> Result<ResumeResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call)? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.resume_instance(request).await
                })
                .await;
        }
        require(&request.instance_id, "instanceId")?;
        let resume = Resume {
            instance_id: request.instance_id,
            reason: request.reason,
        };
        check(shard.proposer.propose(Kind::Resume(resume)).await)?;
        Ok(ResumeResponse {})
    }

    /// Deletes a finished instance (and, recursively, its children). Purging by filter
    /// is not implemented.
    pub async fn purge(
        &self,
        call: &Call,
        request: PurgeInstancesRequest,
    ) -> Result<PurgeInstancesResponse, Error> {
        let instance_id = match &request.request {
            Some(purge_instances_request::Request::InstanceId(id)) => id.clone(),
            Some(purge_instances_request::Request::PurgeInstanceFilter(_)) => {
                return Err(Error::unimplemented(
                    "multi-instance purge is not implemented",
                ));
            }
            None => return Err(Error::invalid_argument("instanceId is required")),
        };
        require(&instance_id, "instanceId")?;
        let shard = self.shard(&instance_id);
        if let Some(leader) = shard.forward.leader_for(call)? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.purge_instances(request).await
                })
                .await;
        }
        let purge = Purge {
            instance_id,
            recursive: request.recursive,
        };
        let response = check(shard.proposer.propose(Kind::Purge(purge)).await)?;
        Ok(PurgeInstancesResponse {
            deleted_instance_count: response.purged as i32,
            is_complete: Some(true),
        })
    }
}
