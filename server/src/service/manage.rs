//! Steering an instance: raise an event, terminate, suspend, resume, purge. Each proposes
//! one command; the engine decides, and its refusal comes back as the error.

use endure_engine::records::command::Kind;
use endure_engine::records::{Purge, RaiseEvent, Resume, Suspend, Terminate};
use std::time::Duration;

use endure_proto::history_event::EventType;
use endure_proto::{
    purge_instances_request, GetInstanceHistoryRequest, GetInstanceRequest, PurgeInstancesRequest,
    PurgeInstancesResponse, RaiseEventRequest, RaiseEventResponse, ResumeRequest, ResumeResponse,
    SuspendRequest, SuspendResponse, TerminateRequest, TerminateResponse,
};

use tokio::time::Instant;

use super::{require, Call, Error, Workflows};

impl Workflows {
    pub async fn raise(
        &self,
        call: &Call,
        request: RaiseEventRequest,
    ) -> Result<RaiseEventResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.raise_event(request).await
                })
                .await;
        }
        self.within_limit(&request)?;
        require(&request.instance_id, "instanceId")?;
        require(&request.name, "event name")?;
        self.payload_within_limit("event data", request.input.as_ref())?;
        let raise = RaiseEvent {
            instance_id: request.instance_id,
            name: request.name,
            input: request.input,
            inbox_limit: self.limits.inbox_events,
        };
        self.propose(shard, Kind::RaiseEvent(raise)).await?;
        Ok(RaiseEventResponse {})
    }

    /// Ends the run within the command, so once applied the state shows it.
    pub async fn terminate(
        &self,
        call: &Call,
        request: TerminateRequest,
    ) -> Result<TerminateResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.terminate_instance(request).await
                })
                .await;
        }
        self.within_limit(&request)?;
        require(&request.instance_id, "instanceId")?;
        self.payload_within_limit("output", request.output.as_ref())?;
        let terminate = Terminate {
            instance_id: request.instance_id,
            output: request.output,
            recursive: request.recursive,
        };
        self.propose(shard, Kind::Terminate(terminate)).await?;
        Ok(TerminateResponse {})
    }

    pub async fn suspend(
        &self,
        call: &Call,
        request: SuspendRequest,
    ) -> Result<SuspendResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.suspend_instance(request).await
                })
                .await;
        }
        require(&request.instance_id, "instanceId")?;
        self.payload_within_limit("reason", request.reason.as_ref())?;
        let suspend = Suspend {
            instance_id: request.instance_id,
            reason: request.reason,
        };
        self.propose(shard, Kind::Suspend(suspend)).await?;
        Ok(SuspendResponse {})
    }

    pub async fn resume(
        &self,
        call: &Call,
        request: ResumeRequest,
    ) -> Result<ResumeResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.resume_instance(request).await
                })
                .await;
        }
        require(&request.instance_id, "instanceId")?;
        self.payload_within_limit("reason", request.reason.as_ref())?;
        let resume = Resume {
            instance_id: request.instance_id,
            reason: request.reason,
        };
        self.propose(shard, Kind::Resume(resume)).await?;
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
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.purge_instances(request).await
                })
                .await;
        }
        // Children are purged through the outbox, each by its own shard; the call reads
        // the tree first, and answers once those purges are done (or its time is up).
        let tree = match request.recursive {
            true => self.terminal_descendants(call, &instance_id).await?,
            false => Vec::new(),
        };
        let purge = Purge {
            instance_id,
            recursive: request.recursive,
        };
        let response = self.propose(shard, Kind::Purge(purge)).await?;
        let purged_children = self.until_gone(call, &tree).await?;
        Ok(PurgeInstancesResponse {
            deleted_instance_count: (response.purged as usize + purged_children) as i32,
            is_complete: Some(purged_children == tree.len()),
        })
    }

    /// The terminal children of `instance_id`, theirs, and so on: what a recursive purge
    /// deletes. Children are read from the history (each `SubOrchestrationInstanceCreated`).
    async fn terminal_descendants(
        &self,
        call: &Call,
        instance_id: &str,
    ) -> Result<Vec<String>, Error> {
        let read = Call {
            deadline: call.deadline,
            ..Call::default()
        };
        let mut found = Vec::new();
        let mut parents = vec![instance_id.to_string()];
        while let Some(parent) = parents.pop() {
            let history = GetInstanceHistoryRequest {
                instance_id: parent.clone(),
            };
            let events = self.history(&read, history).await?.events;
            for event in events {
                let Some(EventType::SubOrchestrationInstanceCreated(created)) = event.event_type
                else {
                    continue;
                };
                let child = self
                    .get(
                        &read,
                        GetInstanceRequest {
                            instance_id: created.instance_id.clone(),
                            get_inputs_and_outputs: false,
                            ..Default::default()
                        },
                    )
                    .await?;
                let Some(state) = child.orchestration_state else {
                    continue;
                };
                let ours = state.parent_instance_id.as_deref() == Some(parent.as_str());
                if ours
                    && is_terminal(state.orchestration_status)
                    && !found.contains(&created.instance_id)
                {
                    found.push(created.instance_id.clone());
                    parents.push(created.instance_id);
                }
            }
        }
        Ok(found)
    }

    /// Waits until the instances are gone, at most [`PURGE_CASCADE_WAIT`] (or the call's
    /// deadline); how many are.
    async fn until_gone(&self, call: &Call, ids: &[String]) -> Result<usize, Error> {
        let read = Call {
            deadline: call.deadline,
            ..Call::default()
        };
        let give_up = Instant::now() + PURGE_CASCADE_WAIT;
        let give_up = call
            .deadline
            .map_or(give_up, |deadline| deadline.min(give_up));
        let mut gone = 0;
        for id in ids {
            loop {
                let request = GetInstanceRequest {
                    instance_id: id.clone(),
                    get_inputs_and_outputs: false,
                    ..Default::default()
                };
                if !self.get(&read, request).await?.exists {
                    gone += 1;
                    break;
                }
                if Instant::now() >= give_up {
                    break;
                }
                tokio::time::sleep(PURGE_POLL).await;
            }
        }
        Ok(gone)
    }
}

/// Longest a recursive purge waits for its children's shards to delete them.
const PURGE_CASCADE_WAIT: Duration = Duration::from_secs(10);
const PURGE_POLL: Duration = Duration::from_millis(10);

fn is_terminal(status: i32) -> bool {
    endure_engine::lifecycle::is_terminal(status)
}
