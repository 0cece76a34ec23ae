//! Reads: an instance, its history, the list of instances. Every read is linearizable:
//! the leader confirms it still leads before reading its replica.

use endure_engine::query;
use endure_engine::records::InstanceRecord;
use endure_proto::{
    GetInstanceHistoryRequest, GetInstanceHistoryResponse, GetInstanceRequest, GetInstanceResponse,
    ListInstanceIDsRequest, ListInstanceIDsResponse,
};

use super::{require, Call, Error, Workflows};

/// Largest page ListInstanceIDs returns.
pub const MAX_PAGE_INSTANCES: usize = 1_000;
const DEFAULT_PAGE_INSTANCES: usize = 100;

impl Workflows {
    pub async fn get(
        &self,
        call: &Call,
        request: GetInstanceRequest,
    ) -> Result<GetInstanceResponse, Error> {
        if let Some(leader) = self.forward.leader_for(call)? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.get_instance(request).await
                })
                .await;
        }
        require(&request.instance_id, "instanceId")?;
        Ok(match self.read_instance(&request.instance_id).await? {
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
        if let Some(leader) = self.forward.leader_for(call)? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.get_instance_history(request).await
                })
                .await;
        }
        let instance_id = request.instance_id;
        require(&instance_id, "instanceId")?;
        if self.read_instance(&instance_id).await?.is_none() {
            return Err(Error::not_found(format!(
                "workflow instance '{instance_id}' not found"
            )));
        }
        let events = self.store.history(&instance_id).map_err(Error::storage)?;
        Ok(GetInstanceHistoryResponse { events })
    }

    /// A page of instance IDs in ID order, after the continuation token.
    pub async fn list(
        &self,
        call: &Call,
        request: ListInstanceIDsRequest,
    ) -> Result<ListInstanceIDsResponse, Error> {
        if let Some(leader) = self.forward.leader_for(call)? {
            return leader
                .forward(call, request, |mut leader, request| async move {
                    leader.taskhub.list_instance_i_ds(request).await
                })
                .await;
        }
        let page = match request.page_size {
            None | Some(0) => DEFAULT_PAGE_INSTANCES,
            Some(size) => (size as usize).min(MAX_PAGE_INSTANCES),
        };
        self.linearizable().await?;
        let after = request.continuation_token.filter(|t| !t.is_empty());
        let records = self
            .store
            .list_instances(after.as_deref(), page + 1)
            .map_err(Error::storage)?;
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
        Ok(ListInstanceIDsResponse {
            instance_ids,
            continuation_token,
        })
    }

    async fn read_instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, Error> {
        self.linearizable().await?;
        self.store.instance(instance_id).map_err(Error::storage)
    }
}
