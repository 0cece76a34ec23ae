//! The timer service: proposes `FireTimers` for durable timers that are due by the
//! leader's clock, in batches. A timer never fires early: only due timers are proposed, the
//! proposal is stamped with a time no earlier than the clock reading, and the engine checks
//! the due time against that stamp again.

use std::sync::Arc;
use std::time::Duration;

use endure_engine::records::command::Kind;
use endure_engine::records::FireTimers;
use endure_engine::{time, Effect};
use endure_raft::state_machine::Shared;
use endure_storage::Store;
use prost_types::Timestamp;
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

use crate::cluster::clock::Clock;
use crate::cluster::proposer::Proposer;
use crate::telemetry::names;

/// Timers fired by one proposal.
pub const FIRE_BATCH_TIMERS: usize = 1_000;
/// Longest sleep between two looks at the timers table.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Pause after a failed proposal.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(200);

/// What the timer service needs.
pub struct Options {
    pub store: Arc<dyn Store>,
    pub proposer: Proposer,
    pub clock: Arc<dyn Clock>,
    /// Where applied effects are announced (a newly armed timer may be due sooner).
    pub shared: Arc<Shared>,
}

/// The timer service task (leader only).
pub struct TimerService {
    store: Arc<dyn Store>,
    proposer: Proposer,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
}

impl TimerService {
    pub fn new(options: Options) -> TimerService {
        TimerService {
            store: options.store,
            proposer: options.proposer,
            clock: options.clock,
            shared: options.shared,
        }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut effects = self.shared.subscribe();
        loop {
            let sleep = self.fire_due().await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(sleep) => {}
                _ = wait_for_timer_armed(&mut effects) => {}
            }
        }
    }

    /// Fires what is due; returns how long to sleep before looking again.
    async fn fire_due(&self) -> Duration {
        let now = self.clock.now();
        let committed = self.shared.max_leader_time();
        if !time::after(&now, &committed) {
            // An earlier leader's clock was ahead of ours: wait until ours passes it.
            return until(&now, &committed).min(MAX_SLEEP);
        }
        let due = match self.store.due_timers(&now, FIRE_BATCH_TIMERS) {
            Ok(due) => due,
            Err(e) => panic!("cannot read the timers table: {e}"),
        };
        if !due.is_empty() {
            debug!(count = due.len(), "firing timers");
            for timer in &due {
                let late = until(&timer.fire_at.unwrap_or_default(), &now);
                metrics::histogram!(names::TIMER_LATENESS).record(late.as_secs_f64());
            }
            let fire = Kind::FireTimers(FireTimers { timers: due });
            return match self.proposer.propose(fire).await {
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    warn!(error = %e, "could not fire timers");
                    RETRY_AFTER_ERROR
                }
            };
        }
        match self.store.next_timer() {
            Ok(Some(next)) => until(&now, &next).min(MAX_SLEEP),
            Ok(None) => MAX_SLEEP,
            Err(e) => panic!("cannot read the timers table: {e}"),
        }
    }
}

/// Time from `now` until `then` (zero if `then` has passed).
fn until(now: &Timestamp, then: &Timestamp) -> Duration {
    let nanos = (i128::from(then.seconds) - i128::from(now.seconds)) * 1_000_000_000
        + i128::from(then.nanos - now.nanos);
    Duration::from_nanos(nanos.clamp(0, u64::MAX as i128) as u64)
}

/// Returns when a newly armed timer may be due sooner than the current sleep.
async fn wait_for_timer_armed(effects: &mut broadcast::Receiver<Arc<Vec<Effect>>>) {
    loop {
        match effects.recv().await {
            Ok(batch) if batch.iter().any(|e| matches!(e, Effect::TimerArmed { .. })) => return,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
