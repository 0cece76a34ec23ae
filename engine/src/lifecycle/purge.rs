//! Purge: deletes a terminal instance and all its rows; `recursive` purges its children,
//! each through the outbox (a child may live on another shard).

use super::is_terminal;
use crate::apply::{Outcome, Rejection, RejectionCode};
use crate::records::outbox_message::Kind;
use crate::records::{InstanceRecord, OutboxMessage, Purge, PurgeRun};
use crate::view::Tx;
use crate::{protocol_text, Error};

pub fn apply(tx: &mut Tx<'_>, purge: &Purge) -> Result<Outcome, Error> {
    let Some(record) = tx.instance(&purge.instance_id)? else {
        return Ok(Outcome::Rejected(Rejection::no_such_instance(
            &purge.instance_id,
        )));
    };
    if !is_terminal(record.status) {
        return Ok(Outcome::Rejected(Rejection::new(
            RejectionCode::InvalidArgument,
            protocol_text::not_yet_completed(&purge.instance_id),
        )));
    }
    let purged = purge_tree(tx, &record, purge.recursive)?;
    Ok(Outcome::Applied { purged })
}

/// Deletes the instance and, when asked, sends each child a [`PurgeRun`]: the child's
/// shard deletes it (and its own children) if it is terminal and still this run's child.
/// Returns how many instances this command deleted: one.
pub(crate) fn purge_tree(
    tx: &mut Tx<'_>,
    record: &InstanceRecord,
    recursive: bool,
) -> Result<u32, Error> {
    tx.delete_instance(record)?;
    if recursive {
        for child_id in &record.children {
            tx.send(OutboxMessage {
                target_instance_id: child_id.clone(),
                kind: Some(Kind::PurgeRun(PurgeRun {
                    parent_instance_id: record.instance_id.clone(),
                    parent_execution_id: record.execution_id.clone(),
                })),
            })?;
        }
    }
    Ok(1)
}
