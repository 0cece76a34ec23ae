//! Reads: an instance, its history, the list of instances. Every read is linearizable:
//! the leader confirms it still leads before reading its replica.

use endure_engine::query;
use endure_engine::records::InstanceRecord;
use endure_proto::{
    GetInstanceHistoryRequest, GetInstanceHistoryResponse, GetInstanceRequest, GetInstanceResponse,
    ListInstanceIDsRequest, ListInstanceIDsResponse,
};

use super::{linearizable, require, Call, Error, Workflows};
use crate::cluster::shards::Shard;

/// Largest page ListInstanceIDs returns.
pub const MAX_PAGE_INSTANCES: usize = 1_000;
const DEFAULT_PAGE_INSTANCES: usize = 100;

impl Workflows {
    pub async fn get(
        &self,
        call: &Call,
        request: GetInstanceRequest,
    ) -> Result<GetInstanceResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.get_instance(request).await
                })
                .await;
        }
        require(&request.instance_id, "instanceId")?;
        Ok(match read_instance(shard, &request.instance_id).await? {
            Some(record) => GetInstanceResponse {
                exists: true,
                orchestration_state: Some(query::state(&record, request.get_inputs_and_outputs)),
            },
            None => GetInstanceResponse {
                exists: false,
                orchestration_state: None,
            },
        })
    }

    pub async fn history(
        &self,
        call: &Call,
        request: GetInstanceHistoryRequest,
    ) -> Result<GetInstanceHistoryResponse, Error> {
        let shard = self.shard(&request.instance_id);
        if let Some(leader) = shard.forward.leader_for(call).await? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.get_instance_history(request).await
                })
                .await;
        }
        let instance_id = request.instance_id;
        require(&instance_id, "instanceId")?;
        if read_instance(shard, &instance_id).await?.is_none() {
            return Err(Error::not_found(format!(
                "workflow instance '{instance_id}' not found"
            )));
        }
        let events = shard
            .node
            .store
            .history(&instance_id)
            .map_err(Error::storage)?;
        Ok(GetInstanceHistoryResponse { events })
    }

    /// A page of instance IDs in ID order, after the continuation token, across every
    /// shard: each shard's leader reads its page after the token, and the pages are merged
    /// in key order. The token is an instance ID, a position in that order, so it stays
    /// right while instances are added anywhere.
    pub async fn list(
        &self,
        call: &Call,
        request: ListInstanceIDsRequest,
    ) -> Result<ListInstanceIDsResponse, Error> {
        let after = request.continuation_token.clone().filter(|t| !t.is_empty());
        if let Some(id) = call.shard {
            // Another node merges the shards; this node answers for one it leads.
            let shard = self
                .shards
                .get(id)
                .ok_or_else(|| Error::invalid_argument(format!("this node has no shard {id}")))?;
            shard.must_lead(call)?;
            let limit = request.page_size.unwrap_or(0) as usize;
            let instance_ids =
                list_shard(shard, after.as_deref(), limit.min(MAX_PAGE_INSTANCES + 1)).await?;
            return Ok(ListInstanceIDsResponse {
                instance_ids,
                continuation_token: None,
            });
        }
        let page = match request.page_size {
            None | Some(0) => DEFAULT_PAGE_INSTANCES,
            Some(size) => (size as usize).min(MAX_PAGE_INSTANCES),
        };
        // One more than a page from each shard tells whether another page follows.
        let mut instance_ids = Vec::new();
        for shard in self.shards.iter() {
            instance_ids.extend(self.list_of(call, shard, after.clone(), page + 1).await?);
        }
        instance_ids.sort_by(|a, b| key_order(a, b));
        let more = instance_ids.len() > page;
        instance_ids.truncate(page);
        let continuation_token = if more {
            instance_ids.last().cloned()
        } else {
            None
        };
        Ok(ListInstanceIDsResponse {
            instance_ids,
            continuation_token,
        })
    }

    /// Up to `limit` IDs of one shard after `after`, read by the shard's leader.
    async fn list_of(
        &self,
        call: &Call,
        shard: &Shard,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let Some(leader) = shard.forward.leader_for(call).await? else {
            return list_shard(shard, after.as_deref(), limit).await;
        };
        let request = ListInstanceIDsRequest {
            page_size: Some(limit as u32),
            continuation_token: after,
        };
        let page = leader
            .forward_to_shard(call, shard.id, request, |mut leader, request| async move {
                leader.taskhub.list_instance_i_ds(request).await
            })
            .await?;
        Ok(page.instance_ids)
    }
}

/// Up to `limit` IDs of one shard this node leads, after `after`, in key order.
async fn list_shard(
    shard: &Shard,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, Error> {
    linearizable(shard).await?;
    let records = shard
        .node
        .store
        .list_instances(after, limit)
        .map_err(Error::storage)?;
    Ok(records.into_iter().map(|r| r.instance_id).collect())
}

/// The tables' key order of instance IDs: shorter first, then bytewise.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes()))
}

async fn read_instance(shard: &Shard, instance_id: &str) -> Result<Option<InstanceRecord>, Error> {
    linearizable(shard).await?;
    shard
        .node
        .store
        .instance(instance_id)
        .map_err(Error::storage)
}
