//! The outbox relay (leader only): delivers the messages this shard's applied commands put
//! in its outbox (a child to start, a parent to tell, an event sent, a terminate) to the
//! shard of each target instance, as `DeliverMessages`, then deletes them (`AckOutbox`).
//!
//! At least once, applied once: a delivery whose answer is lost, or one repeated by the
//! next leader (which starts again from the oldest row not yet deleted), is recognised by
//! the target from the (source shard, sequence) it records in the same batch (see the
//! engine's `outbox` module). Messages go in sequence order, so each target applies the
//! messages from one source in the order they were sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use endure_engine::records::command::Kind;
use endure_engine::records::{AckOutbox, DeliverMessages, OutboxEntry};
use endure_engine::Effect;
use endure_proto::endure::internal::DeliverRequest;
use endure_raft::state_machine::Shared;
use endure_storage::Store;
use tokio::sync::{broadcast, watch};
use tracing::warn;

use crate::cluster::proposer::Proposer;
use crate::cluster::shards::{Shard, Shards};
use crate::service::{Call, Error};
use crate::telemetry::names;

/// Messages delivered by one proposal.
pub const DELIVERY_BATCH_MESSAGES: usize = 256;
/// Longest sleep between two looks at the outbox (a missed effect costs at most this).
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Pause after a failed proposal.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(200);

/// What the relay needs.
pub struct Options {
    pub store: Arc<dyn Store>,
    pub proposer: Proposer,
    /// Where applied effects are announced (new outbox rows).
    pub shared: Arc<Shared>,
    /// This shard's number: the source the targets deduplicate by.
    pub source_shard: u32,
    /// Every shard of this node: the targets, each reached through its leader.
    pub shards: Shards,
}

/// The relay task of one shard leader.
pub struct OutboxRelay {
    options: Options,
}

impl OutboxRelay {
    pub fn new(options: Options) -> OutboxRelay {
        OutboxRelay { options }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut effects = self.options.shared.subscribe();
        let (acked, to_ack) = watch::channel(0u64);
        let acker = tokio::spawn(acknowledge(
            self.options.proposer.clone(),
            to_ack,
            shutdown.clone(),
        ));
        // Highest sequence delivered in this term; the term starts from the oldest row.
        let mut delivered = 0;
        loop {
            let pause = match self.deliver_next(delivered).await {
                Ok(Some(upto)) => {
                    delivered = upto;
                    acked.send_replace(upto);
                    Duration::ZERO
                }
                Ok(None) => MAX_SLEEP,
                Err(error) => {
                    warn!(%error, "could not deliver outbox messages; retrying");
                    metrics::counter!(names::OUTBOX_DELIVERY_FAILURES).increment(1);
                    RETRY_AFTER_ERROR
                }
            };
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(pause) => {}
                _ = wait_for_outbox(&mut effects) => {}
            }
        }
        let _ = acker.await;
    }

    /// Delivers the next batch after `delivered`; the last sequence delivered, or `None`
    /// when the outbox holds nothing after it.
    async fn deliver_next(&self, delivered: u64) -> anyhow::Result<Option<u64>> {
        let rows = self
            .options
            .store
            .outbox_page(delivered, DELIVERY_BATCH_MESSAGES)
            .unwrap_or_else(|e| panic!("cannot read the outbox: {e}"));
        let Some(upto) = rows.last().map(|(seq, _)| *seq) else {
            return Ok(None);
        };
        let count = rows.len() as u64;
        // Each target shard gets its messages in sequence order, all in one proposal; a
        // shard that fails fails the batch, which is delivered again (the shards that took
        // it recognise the repeat).
        let mut by_shard: BTreeMap<u32, Vec<OutboxEntry>> = BTreeMap::new();
        for (seq, message) in rows {
            let target = self.options.shards.of(&message.target_instance_id).id;
            by_shard.entry(target).or_default().push(OutboxEntry {
                seq,
                message: Some(message),
            });
        }
        for (target, entries) in by_shard {
            let messages = DeliverMessages {
                source_shard: self.options.source_shard,
                entries,
            };
            deliver(&self.options.shards, target, messages).await?;
        }
        metrics::counter!(names::OUTBOX_DELIVERED).increment(count);
        Ok(Some(upto))
    }
}

/// Hands messages to the leader of shard `target` (this node's own proposer when it leads
/// it) and returns once they are applied there.
async fn deliver(shards: &Shards, target: u32, messages: DeliverMessages) -> anyhow::Result<()> {
    let shard = shards
        .get(target)
        .ok_or_else(|| anyhow::anyhow!("there is no shard {target}"))?;
    match shard.forward.leader()? {
        None => apply_delivery(shard, messages).await?,
        Some(leader) => {
            let request = DeliverRequest {
                shard: target,
                messages: Some(messages),
            };
            let request = leader.request(&Call::default(), request);
            let mut admin = leader.admin.clone();
            let delivered = leader.while_leading(admin.deliver(request));
            delivered
                .await
                .map_err(|e| anyhow::anyhow!("shard {target}: {e}"))?;
        }
    }
    Ok(())
}

/// Proposes a delivery on a shard this node leads; an error if it was refused or may not
/// have been applied.
pub async fn apply_delivery(shard: &Shard, messages: DeliverMessages) -> Result<(), Error> {
    let response = shard
        .proposer
        .propose(Kind::DeliverMessages(messages))
        .await?;
    if let Some(rejection) = response.rejection {
        return Err(Error::internal(format!(
            "the delivery was refused: {}",
            rejection.message
        )));
    }
    Ok(())
}

/// Deletes delivered rows, the latest acknowledgement at a time (acks coalesce under load
/// and never hold up a delivery).
async fn acknowledge(
    proposer: Proposer,
    mut to_ack: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut done = 0;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = to_ack.changed() => if changed.is_err() { return },
        }
        let upto = *to_ack.borrow_and_update();
        if upto <= done {
            continue;
        }
        let ack = Kind::AckOutbox(AckOutbox { upto_seq: upto });
        match proposer.propose(ack).await {
            Ok(response) if response.rejection.is_none() => done = upto,
            Ok(response) => warn!(?response.rejection, "outbox acknowledgement refused"),
            Err(error) => {
                warn!(%error, "could not acknowledge outbox messages; retrying");
                tokio::time::sleep(RETRY_AFTER_ERROR).await;
                to_ack.mark_changed();
            }
        }
    }
}

/// Returns when an applied command added outbox rows (or effects were missed).
async fn wait_for_outbox(effects: &mut broadcast::Receiver<Arc<Vec<Effect>>>) {
    loop {
        match effects.recv().await {
            Ok(batch) if batch.contains(&Effect::OutboxAppended) => return,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
