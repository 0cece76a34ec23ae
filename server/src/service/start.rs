//! Starting instances: a new one, or a rerun of an existing one from one of its events.

use endure_engine::query;
use endure_engine::records::command::Kind;
use endure_engine::records::{Rerun, StartInstance};
use endure_proto::{
    CreateInstanceRequest, CreateInstanceResponse, RerunWorkflowFromEventRequest,
    RerunWorkflowFromEventResponse,
};

use super::forward::START_NO_WAIT_HEADER;
use super::{new_instance_id, require, Call, Error, Workflows};

/// Whether starting an instance waits for its first turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartWait {
    /// As Dapr's gRPC API: until the instance leaves PENDING (or the deadline passes).
    UntilRunning,
    /// As Dapr's HTTP API: return once the start is committed.
    No,
}

impl Workflows {
    /// Starts an instance (a generated ID if none is given). With a scheduled start in the
    /// future the call never waits.
    pub async fn start(
        &self,
        call: &Call,
        request: CreateInstanceRequest,
        wait: StartWait,
    ) -> Result<CreateInstanceResponse, Error> {
        self.within_limit(&request)?;
        let mut request = request;
        if request.instance_id.is_empty() {
            request.instance_id = new_instance_id();
        }
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, mut request| async move {
                    if wait == StartWait::No {
                        let mark = tonic::metadata::MetadataValue::from_static("1");
                        request.metadata_mut().insert(START_NO_WAIT_HEADER, mark);
                    }
                    leader.taskhub.start_instance(request).await
                })
                .await;
        }
        require(&request.name, "name")?;
        let instance_id = request.instance_id.clone();
        require(&instance_id, "instanceId")?;
        self.payload_within_limit("input", request.input.as_ref())?;
        let now = shard.proposer.next_time()?;
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
        self.propose(shard, Kind::StartInstance(start)).await?;
        if wait == StartWait::UntilRunning && scheduled.is_none() {
            self.until(shard, &instance_id, call.deadline, query::has_started)
                .await?;
        }
        Ok(CreateInstanceResponse { instance_id })
    }

    /// Starts a new instance from the history of another, up to one of its events; answers
    /// once the new instance runs, as Dapr does.
    pub async fn rerun(
        &self,
        call: &Call,
        request: RerunWorkflowFromEventRequest,
    ) -> Result<RerunWorkflowFromEventResponse, Error> {
        self.within_limit(&request)?;
        require(&request.source_instance_id, "sourceInstanceID")?;
        let shard = self.shard(&request.source_instance_id);
        let mut request = request;
        // The rerun is built from the source's history by the source's shard, so the new
        // instance must live there too; a generated ID is drawn until it does.
        let new_instance_id = match request.new_instance_id.clone().filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => loop {
                let id = new_instance_id();
                if self.shard(&id).id == shard.id {
                    break id;
                }
            },
        };
        require(&new_instance_id, "newInstanceID")?;
        if self.shard(&new_instance_id).id != shard.id {
            return Err(Error::invalid_argument(format!(
                "newInstanceID '{new_instance_id}' belongs to shard {} and the source '{}' to \
                 shard {}: a rerun stays in its source's shard; leave newInstanceID empty to \
                 get a fitting one",
                self.shard(&new_instance_id).id,
                request.source_instance_id,
                shard.id
            )));
        }
        request.new_instance_id = Some(new_instance_id.clone());
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.rerun_workflow_from_event(request).await
                })
                .await;
        }
        let event_id = i32::try_from(request.event_id).map_err(|_| {
            Error::invalid_argument(format!("eventID {} is out of range", request.event_id))
        })?;
        self.payload_within_limit("input", request.input.as_ref())?;
        let rerun = Rerun {
            source_instance_id: request.source_instance_id,
            event_id,
            new_instance_id: new_instance_id.clone(),
            overwrite_input: request.overwrite_input,
            input: request.input,
        };
        self.propose(shard, Kind::Rerun(rerun)).await?;
        self.until(shard, &new_instance_id, call.deadline, query::has_started)
            .await?;
        Ok(RerunWorkflowFromEventResponse { new_instance_id })
    }
}
