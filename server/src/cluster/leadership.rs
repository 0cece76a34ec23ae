//! Leadership: the dispatcher, the timer service and the outbox relay of a shard run on
//! the shard's Raft leader only. This task (one per shard) starts them when the node
//! becomes the shard's leader (after it has applied everything committed) and stops them
//! when it loses leadership; worker streams then end and the workers reconnect, to be
//! relayed to the new leader.
//!
//! Before serving, a new leader fixes the start of its time line from a majority's clocks
//! ([`crate::cluster::clock::term_base`]); the term's time then advances monotonically.

use std::sync::Arc;
use std::time::Duration;

use endure_raft::node::Node;
use endure_raft::status::RaftWatch;
use tokio::sync::watch;
use tracing::{info, warn};

use super::clock::{self, ClockSample, LeaderClock, WallReference};
use super::proposer::Proposer;
use super::shards::Shards;
use crate::dispatch::{self, Dispatcher};
use crate::outbox::OutboxRelay;
use crate::service::LeaderServices;
use crate::timers::TimerService;

/// Pause before trying again when a fresh leader cannot confirm its leadership.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// How long a new leader waits for a peer's clock reading; a peer that does not answer
/// in time is left out of the median.
const CLOCK_SAMPLE_TIMEOUT: Duration = Duration::from_millis(500);

/// What the leadership task needs.
pub struct Options {
    pub node: Node,
    pub proposer: Proposer,
    pub clock: Arc<LeaderClock>,
    /// The dispatcher's settings (turn size, history cap, redelivery).
    pub dispatch: dispatch::Settings,
    /// The node's caps on work in flight, shared by every shard's dispatcher.
    pub node_caps: Arc<dispatch::budget::Caps>,
    /// Told when room under a cap is freed.
    pub freed: Arc<tokio::sync::Notify>,
    /// Connections to peers (cluster secret, TLS), to read their clocks.
    pub channels: endure_raft::network::Channels,
}

/// The leadership task: see the module documentation.
pub struct Leadership {
    options: Options,
    /// Publishes the leader-only services while this node leads.
    leading: watch::Sender<Option<LeaderServices>>,
}

impl Leadership {
    /// The task, and where the services it starts are published (`None` while this node
    /// does not lead).
    pub fn new(options: Options) -> (Leadership, watch::Receiver<Option<LeaderServices>>) {
        let (leading, published) = watch::channel(None);
        (Leadership { options, leading }, published)
    }

    /// Runs until shutdown or until Raft stops; `shards` is every shard of this node, the
    /// targets of this shard's outbox.
    pub async fn run(self, shards: Shards, mut shutdown: watch::Receiver<bool>) {
        let node = &self.options.node;
        let mut raft = node.watch();
        loop {
            if !wait_until(&mut raft, &mut shutdown, |raft| raft.is_leader()).await {
                return;
            }
            if let Err(e) = self.options.proposer.linearizable().await {
                warn!(error = %e, "new leader could not confirm its leadership");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
            let clock = &self.options.clock;
            let reference = clock.wall_reference();
            let samples = sample_peer_clocks(node, &self.options.channels, reference).await;
            let floor = node.shared.continued_leader_time();
            let base = clock::term_base(reference.now(), &samples, floor);
            clock.start_term(base);
            info!(
                shard = node.shard,
                peers_sampled = samples.len(),
                "leader time line starts at {}.{:09}",
                base.seconds,
                base.nanos
            );
            let (stop, stopped) = watch::channel(false);
            let tasks = self.start_services(&shards, stopped);
            info!(
                node_id = node.node_id,
                shard = node.shard,
                "leading: dispatching work and firing timers"
            );
            let keep_going = wait_until(&mut raft, &mut shutdown, |raft| !raft.is_leader()).await;
            self.leading.send_replace(None);
            let _ = stop.send(true);
            for task in tasks {
                let _ = task.await;
            }
            clock.end_term();
            info!(
                node_id = node.node_id,
                shard = node.shard,
                "no longer leader: dispatcher and timers stopped"
            );
            if !keep_going {
                return;
            }
        }
    }

    fn start_services(
        &self,
        shards: &Shards,
        stopped: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let options = &self.options;
        let store: Arc<dyn endure_storage::Store> = options.node.store.clone();
        let (dispatcher, handle) = Dispatcher::new(dispatch::Options {
            store: store.clone(),
            clock: options.clock.clone(),
            effects: options.node.shared.subscribe(),
            proposer: options.proposer.clone(),
            settings: options.dispatch.clone(),
            node_caps: options.node_caps.clone(),
            freed: options.freed.clone(),
        });
        self.leading
            .send_replace(Some(LeaderServices { dispatcher: handle }));
        let timers = TimerService::new(crate::timers::Options {
            store: store.clone(),
            proposer: options.proposer.clone(),
            clock: options.clock.clone(),
            shared: options.node.shared.clone(),
        });
        let relay = OutboxRelay::new(crate::outbox::Options {
            store,
            proposer: options.proposer.clone(),
            shared: options.node.shared.clone(),
            source_shard: options.node.shard,
            shards: shards.clone(),
        });
        vec![
            tokio::spawn(dispatcher.run(stopped.clone())),
            tokio::spawn(timers.run(stopped.clone())),
            tokio::spawn(relay.run(stopped)),
        ]
    }
}

/// Reads the wall clock of every other voter, concurrently, each bounded by
/// [`CLOCK_SAMPLE_TIMEOUT`]; each is compared with `reference`, never with a fresh reading.
async fn sample_peer_clocks(
    node: &Node,
    channels: &endure_raft::network::Channels,
    reference: WallReference,
) -> Vec<ClockSample> {
    use endure_proto::endure::internal::admin_client::AdminClient;
    use endure_proto::endure::internal::ClusterStatusRequest;
    let peers = node.peer_voters();
    let mut reads = tokio::task::JoinSet::new();
    for (id, address) in peers {
        let channels = channels.clone();
        reads.spawn(async move {
            let channel = channels.get(&address).ok()?;
            let sent = std::time::Instant::now();
            let mut request = tonic::Request::new(ClusterStatusRequest {});
            request.set_timeout(CLOCK_SAMPLE_TIMEOUT);
            let mut admin = AdminClient::new(channel);
            let answer =
                tokio::time::timeout(CLOCK_SAMPLE_TIMEOUT, admin.cluster_status(request)).await;
            let status = match answer {
                Ok(Ok(status)) => status.into_inner(),
                _ => {
                    warn!(peer = id, "no clock reading from peer");
                    return None;
                }
            };
            Some(ClockSample {
                remote: status.wall_time?,
                local_at_receipt: reference.now(),
                round_trip: sent.elapsed(),
            })
        });
    }
    reads.join_all().await.into_iter().flatten().collect()
}

/// Waits until `condition` holds for Raft's view; false on shutdown or when Raft stopped.
async fn wait_until(
    raft: &mut RaftWatch,
    shutdown: &mut watch::Receiver<bool>,
    condition: impl Fn(&RaftWatch) -> bool,
) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = shutdown.changed() => false,
        held = raft.wait_until(condition) => held,
    }
}
