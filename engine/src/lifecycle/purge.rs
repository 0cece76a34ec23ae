//! Purge: deletes a terminal instance and all its rows; `recursive` purges its children.

use super::is_terminal;
use super::terminate::is_child_of;
use crate::apply::{Outcome, Rejection, RejectionCode};
use crate::records::{InstanceRecord, Purge};
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

/// Deletes the instance and, when asked, its terminal children; returns how many.
fn purge_tree(tx: &mut Tx<'_>, record: &InstanceRecord, recursive: bool) -> Result<u32, Error> {
    tx.delete_instance(record)?;
    let mut purged = 1;
    if recursive {
        for child_id in &record.children {
            let Some(child) = tx.instance(child_id)? else {
                continue;
            };
            if is_terminal(child.status) && is_child_of(&child, record) {
                purged += purge_tree(tx, &child, true)?;
            }
        }
    }
    Ok(purged)
}
