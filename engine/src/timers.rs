//! Due timers (`FireTimers`, proposed by the leader's timer service). A timer fires at most
//! once (its row is deleted), never before its due time by the entry's clock, and only into
//! the run that armed it.

use endure_proto::history_event::EventType;
use endure_proto::TimerFiredEvent;

use crate::apply::{Ctx, Outcome};
use crate::lifecycle::{event, is_terminal};
use crate::records::{FireTimers, TimerKey};
use crate::view::Tx;
use crate::{time, Error};

/// Timer id used for the timer of a scheduled start.
pub const SCHEDULED_START_TIMER_ID: i32 = -1;

pub fn apply(tx: &mut Tx<'_>, ctx: &Ctx, fire: &FireTimers) -> Result<Outcome, Error> {
    for key in &fire.timers {
        fire_one(tx, ctx, key)?;
    }
    Ok(Outcome::OK)
}

fn fire_one(tx: &mut Tx<'_>, ctx: &Ctx, key: &TimerKey) -> Result<(), Error> {
    let fire_at = key.fire_at.unwrap_or_default();
    if time::after(&fire_at, &ctx.now) {
        return Ok(()); // not due by the entry's clock: stays armed
    }
    let Some(timer) = tx.timer(key)? else {
        return Ok(()); // already fired or removed with its run
    };
    tx.delete_timer(key);
    let Some(mut record) = tx.instance(&key.instance_id)? else {
        return Ok(());
    };
    record.timers.retain(|armed| armed != key);
    if timer.execution_id == record.execution_id && !is_terminal(record.status) {
        if key.timer_id == SCHEDULED_START_TIMER_ID {
            record.scheduled_start = None;
        } else {
            let fired = TimerFiredEvent {
                fire_at: Some(fire_at),
                timer_id: key.timer_id,
            };
            tx.push_inbox(&mut record, event(ctx.now, EventType::TimerFired(fired)));
        }
    }
    tx.put_instance(&record);
    Ok(())
}
