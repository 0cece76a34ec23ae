//! Reading this node's own replica of the instances, without forwarding and without a
//! read-index: the chaos suite's checkers compare what every node holds at the end of a
//! run (histories identical on all replicas). Not for clients: it may be stale.

use super::shards::Shards;
use crate::service::query::key_order;
use endure_proto::endure::internal::{LocalInstance, LocalStateReply, LocalStateRequest};
use prost::Message as _;
use tonic::Status;

/// Instances per page when the request asks for none in particular.
const DEFAULT_PAGE_INSTANCES: usize = 100;
/// Largest page.
pub const MAX_PAGE_INSTANCES: usize = 1_000;

/// One page of this replica's instances (every shard's), in key order after
/// `after_instance_id`. `applied_index` is the sum of the shards' applied indexes: equal on
/// two replicas that applied the same.
pub fn local_state(
    shards: &Shards,
    request: &LocalStateRequest,
) -> Result<LocalStateReply, Status> {
    let limit = match request.limit as usize {
        0 => DEFAULT_PAGE_INSTANCES,
        n if n > MAX_PAGE_INSTANCES => {
            return Err(Status::invalid_argument(format!(
                "limit {n} is over the largest page, {MAX_PAGE_INSTANCES}"
            )))
        }
        n => n,
    };
    let applied_index = shards.iter().map(|shard| shard.node.applied_index()).sum();
    let after = Some(request.after_instance_id.as_str()).filter(|a| !a.is_empty());
    // One more than asked for tells whether another page follows.
    let mut records = Vec::new();
    for shard in shards.iter() {
        let page = shard
            .node
            .store
            .list_instances(after, limit + 1)
            .map_err(storage_error)?;
        records.extend(page.into_iter().map(|record| (record, &shard.node)));
    }
    records.sort_by(|(a, _), (b, _)| key_order(&a.instance_id, &b.instance_id));
    let more = records.len() > limit;
    records.truncate(limit);
    let mut instances = Vec::with_capacity(records.len());
    for (record, node) in records {
        let id = record.instance_id.clone();
        let history = if request.with_history {
            let events = node.store.history(&id).map_err(engine_error)?;
            events.iter().map(|event| event.encode_to_vec()).collect()
        } else {
            Vec::new()
        };
        let inbox_len = node.store.inbox(&id).map_err(engine_error)?.len() as u64;
        let pending_activities = node.store.activities(&id).map_err(engine_error)?.len() as u64;
        instances.push(LocalInstance {
            instance_id: id,
            name: record.name,
            status: record.status,
            execution_id: record.execution_id,
            output: record.output,
            history,
            inbox_len,
            pending_activities,
        });
    }
    Ok(LocalStateReply {
        instances,
        applied_index,
        more,
    })
}

fn storage_error(error: endure_storage::Error) -> Status {
    Status::internal(format!("cannot read this node's replica: {error}"))
}

fn engine_error(error: endure_engine::Error) -> Status {
    Status::internal(format!("cannot read this node's replica: {error}"))
}
