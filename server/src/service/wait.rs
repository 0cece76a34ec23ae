//! Long polls: wait until an instance's record satisfies a condition, honouring the
//! caller's deadline. A caller that goes away drops the future.

use std::sync::Arc;

use endure_engine::query;
use endure_engine::records::InstanceRecord;
use endure_engine::Effect;
use endure_proto::{GetInstanceRequest, GetInstanceResponse};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::{linearizable, require, Call, Error, Workflows};
use crate::cluster::shards::Shard;

/// What a long poll waits for.
#[derive(Clone, Copy, Debug)]
pub enum Awaited {
    /// The instance left PENDING.
    Start,
    /// The instance reached a final status.
    Completion,
}

impl Workflows {
    /// Waits until the instance starts or completes; NOT_FOUND if it does not exist.
    pub async fn wait(
        &self,
        call: &Call,
        request: GetInstanceRequest,
        awaited: Awaited,
    ) -> Result<GetInstanceResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    match awaited {
                        Awaited::Start => leader.taskhub.wait_for_instance_start(request).await,
                        Awaited::Completion => {
                            leader.taskhub.wait_for_instance_completion(request).await
                        }
                    }
                })
                .await;
        }
        let instance_id = request.instance_id;
        require(&instance_id, "instanceId")?;
        linearizable(shard).await?;
        let done = match awaited {
            Awaited::Start => query::has_started,
            Awaited::Completion => query::has_completed,
        };
        match self.until(shard, &instance_id, call.deadline, done).await? {
            Some(record) => Ok(GetInstanceResponse {
                exists: true,
                orchestration_state: Some(query::state(&record, true)),
            }),
            None => Err(Error::not_found(format!(
                "no such instance exists: '{instance_id}'"
            ))),
        }
    }

    /// Waits until `done(record)` holds. `Ok(None)` if the instance does not exist.
    pub(crate) async fn until(
        &self,
        shard: &Shard,
        instance_id: &str,
        deadline: Option<Instant>,
        done: impl Fn(&InstanceRecord) -> bool,
    ) -> Result<Option<InstanceRecord>, Error> {
        let _slot = self.gates.poll()?;
        // Subscribe before the first read, so no change between the read and the wait is missed.
        let mut changes = shard.node.shared.subscribe();
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return Err(Error::unavailable("the node is shutting down; retry"));
            }
            let record = shard
                .node
                .store
                .instance(instance_id)
                .map_err(Error::storage)?;
            match &record {
                None => return Ok(None),
                Some(record) if done(record) => return Ok(Some(record.clone())),
                Some(_) => {}
            }
            let sleep = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => return Err(Error::deadline_exceeded(
                    "the instance did not reach the awaited state before the deadline",
                )),
                _ = changed(&mut changes, instance_id) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

async fn changed(
    changes: &mut tokio::sync::broadcast::Receiver<Arc<Vec<Effect>>>,
    instance_id: &str,
) {
    loop {
        match changes.recv().await {
            Ok(effects) => {
                let touched = effects.iter().any(|effect| {
                    matches!(effect, Effect::InstanceChanged { instance_id: id } if id == instance_id)
                });
                if touched {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
