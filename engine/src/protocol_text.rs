//! Texts that clients match on: the Dapr and Durable Task SDKs, the Dapr HTTP API and
//! Endure's own server look for these words in refusals and failure details, so they are
//! kept here, together, and changed only on purpose.

/// The refusal every client RPC gives for an unknown instance. The Python SDK and the
/// server's HTTP mapping (404 `ERR_INSTANCE_ID_NOT_FOUND`) match "no such instance exists".
pub fn no_such_instance(instance_id: &str) -> String {
    format!("no such instance exists: '{instance_id}'")
}

/// Starting an ID an active instance holds. The SDKs match "already exists"; the bracket is
/// Durable Task's wording, which older clients look for.
pub fn already_exists(instance_id: &str) -> String {
    format!(
        "an active workflow with ID '{instance_id}' already exists \
         (orchestration instance already exists)"
    )
}

/// A rerun whose source instance does not exist: Dapr's wording for this call, which the
/// server's API tests match.
pub fn no_such_workflow(instance_id: &str) -> String {
    format!("workflow instance does not exist with ID '{instance_id}'")
}

/// A rerun whose new instance ID is taken (clients match "already exists").
pub fn id_taken(instance_id: &str) -> String {
    format!("an instance with ID '{instance_id}' already exists")
}

/// Purging an instance that has not ended. Dapr's purge error ends with "orchestration has
/// not yet completed", which the SDK tests and the HTTP mapping match.
pub fn not_yet_completed(instance_id: &str) -> String {
    format!("orchestration has not yet completed: '{instance_id}' must be terminal to be purged")
}

/// Raising an event to a STALLED instance (the HTTP mapping matches "workflow is stalled").
pub fn workflow_is_stalled(instance_id: &str) -> String {
    format!("workflow is stalled: '{instance_id}'")
}

/// A turn's answer for an instance that does not exist: Dapr's text, which workers treat
/// as benign (the answer came too late).
pub fn unknown_instance(instance_id: &str) -> String {
    format!("unknown instance ID: {instance_id}")
}

/// An activity result that matches no pending activity of the current run: Dapr's text,
/// which workers treat as benign (a duplicate or stale result).
pub fn unknown_task(instance_id: &str, task_id: i32) -> String {
    format!("unknown instance ID/task ID combo: {instance_id}/{task_id}")
}

/// `errorType` of the child task's failure when the child could not be created (its ID is
/// held by an active instance).
pub const CHILD_CREATION_FAILED: &str = "ChildWorkflowCreationFailed";

/// `errorType` a parent sees for a child that ended without completing and gave no failure
/// details of its own (terminated, canceled).
pub const CHILD_FAILED: &str = "ChildWorkflowFailed";
