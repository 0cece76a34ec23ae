//! A worker's answers: the result of a turn and of an activity. The dispatcher matches
//! the answer to what it sent (the completion token), the engine applies it under its
//! fences, and an answer that matches nothing is refused with the text the SDKs treat as
//! benign ("unknown instance ID").

use endure_engine::records::command::Kind;
use endure_proto::{ActivityResponse, CompleteTaskResponse, OrchestratorResponse};
use tracing::debug;

use super::error::check;
use super::forward::forward_answer_with_retry;
use super::{Call, Error, Workflows};
use crate::dispatch::Unmatched;
use crate::telemetry::names;

impl Workflows {
    /// Records a worker's answer to a turn.
    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %response.instance_id))]
    pub async fn complete_turn(
        &self,
        call: &Call,
        response: OrchestratorResponse,
    ) -> Result<CompleteTaskResponse, Error> {
        let shard = self.shard(&response.instance_id);
        let forwarded = forward_answer_with_retry(
            &shard.forward,
            call,
            response.clone(),
            |mut leader, request| async move {
                leader.taskhub.complete_orchestrator_task(request).await
            },
        );
        if let Some(answer) = forwarded.await? {
            return Ok(answer);
        }
        self.within_limit(&response)?;
        let instance_id = response.instance_id.clone();
        let token = response.completion_token.clone();
        let dispatcher = shard.dispatcher()?;
        let command = dispatcher
            .resolve_turn(response)
            .await
            .map_err(|unmatched| stale("turn", unmatched))?;
        // In its own task: if the caller goes away mid-proposal, the dispatcher still learns
        // the outcome (otherwise the turn would stay "completing" and never be sent again).
        let proposer = shard.proposer.clone();
        let done_id = instance_id.clone();
        let result = tokio::spawn(async move {
            let result = proposer.propose(Kind::CompleteTurn(command)).await;
            dispatcher.turn_done(done_id, token).await;
            result
        })
        .await
        .map_err(|e| Error::internal(format!("completing the turn failed: {e}")))?;
        check(result)
            .map(|_| CompleteTaskResponse {})
            .inspect_err(|error| {
                count_if_stale(error, "turn");
                debug!(instance_id, %error, "turn completion refused");
            })
    }

    /// Records an activity's result.
    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %response.instance_id, task_id = response.task_id))]
    pub async fn complete_activity(
        &self,
        call: &Call,
        response: ActivityResponse,
    ) -> Result<CompleteTaskResponse, Error> {
        let shard = self.shard(&response.instance_id);
        let forwarded = forward_answer_with_retry(
            &shard.forward,
            call,
            response.clone(),
            |mut leader, request| async move { leader.taskhub.complete_activity_task(request).await },
        );
        if let Some(answer) = forwarded.await? {
            return Ok(answer);
        }
        self.within_limit(&response)?;
        let instance_id = response.instance_id.clone();
        let task_id = response.task_id;
        let dispatcher = shard.dispatcher()?;
        let command = dispatcher
            .resolve_activity(response)
            .await
            .map_err(|unmatched| stale("activity", unmatched))?;
        let result = shard
            .proposer
            .propose(Kind::CompleteActivity(command))
            .await;
        dispatcher.activity_done(instance_id, task_id).await;
        check(result)
            .map(|_| CompleteTaskResponse {})
            .inspect_err(|error| count_if_stale(error, "activity"))
    }
}

/// An answer that matches nothing in flight: counted, and refused as NOT_FOUND.
fn stale(kind: &'static str, unmatched: Unmatched) -> Error {
    metrics::counter!(names::STALE_COMPLETIONS, "kind" => kind).increment(1);
    Error::NotFound(unmatched.0)
}

/// The engine's fence refused the answer (a late answer for an ended run, a replaced task).
fn count_if_stale(error: &Error, kind: &'static str) {
    if matches!(error, Error::NotFound(_)) {
        metrics::counter!(names::STALE_COMPLETIONS, "kind" => kind).increment(1);
    }
}
