//! Leadership: the dispatcher and the timer service run on the Raft leader only. This task
//! starts them when the node becomes leader (after it has applied everything committed)
//! and stops them when it loses leadership; worker streams on this node then end and the
//! workers reconnect, to be relayed to the new leader.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use endure_raft::node::Node;
use endure_raft::types::NodeId;
use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::dispatcher::{self, Dispatcher};
use crate::proposer::Proposer;
use crate::timers::TimerService;

/// Pause before trying again when a fresh leader cannot confirm its leadership.
const RETRY_AFTER: Duration = Duration::from_millis(100);

pub struct Leadership {
    pub node: Node,
    pub proposer: Proposer,
    pub clock: Arc<dyn Clock>,
    /// Where the running dispatcher's handle is published for the gRPC service.
    pub slot: Arc<RwLock<Option<dispatcher::Handle>>>,
    /// Largest turn a worker accepts, in bytes.
    pub max_turn_bytes: usize,
}

fn is_leader(metrics: &RaftMetrics<NodeId, BasicNode>, node_id: NodeId) -> bool {
    metrics.state == ServerState::Leader && metrics.current_leader == Some(node_id)
}

impl Leadership {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut metrics = self.node.raft.metrics();
        loop {
            if !wait_until(&mut metrics, &mut shutdown, |m| {
                is_leader(m, self.node.node_id)
            })
            .await
            {
                return;
            }
            if let Err(e) = self.proposer.linearizable().await {
                warn!(error = %e, "new leader could not confirm its leadership");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let tasks = self.start_services(stopped);
            info!(
                node_id = self.node.node_id,
                "leading: dispatching work and firing timers"
            );
            let keep_going = wait_until(&mut metrics, &mut shutdown, |m| {
                !is_leader(m, self.node.node_id)
            })
            .await;
            *self.slot.write().expect("lock poisoned") = None;
            let _ = stop.send(true);
            for task in tasks {
                let _ = task.await;
            }
            info!(
                node_id = self.node.node_id,
                "no longer leader: dispatcher and timers stopped"
            );
            if !keep_going {
                return;
            }
        }
    }

    fn start_services(&self, stopped: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let (dispatcher, handle) = Dispatcher::new(
            self.node.store.clone(),
            self.clock.clone(),
            self.node.shared.subscribe(),
            self.proposer.clone(),
            self.max_turn_bytes,
        );
        *self.slot.write().expect("lock poisoned") = Some(handle);
        let timers = TimerService {
            store: self.node.store.clone(),
            proposer: self.proposer.clone(),
            clock: self.clock.clone(),
            shared: self.node.shared.clone(),
        };
        vec![
            tokio::spawn(dispatcher.run(stopped.clone())),
            tokio::spawn(timers.run(stopped)),
        ]
    }
}

/// Waits until `condition` holds for the metrics; false on shutdown or when Raft stopped.
async fn wait_until(
    metrics: &mut watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    shutdown: &mut watch::Receiver<bool>,
    condition: impl Fn(&RaftMetrics<NodeId, BasicNode>) -> bool,
) -> bool {
    loop {
        if *shutdown.borrow() {
            return false;
        }
        if condition(&metrics.borrow()) {
            return true;
        }
        tokio::select! {
            _ = shutdown.changed() => return false,
            changed = metrics.changed() => if changed.is_err() { return false },
        }
    }
}
