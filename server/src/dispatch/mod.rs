//! The dispatcher: sends ready turns and pending activities to connected workers and
//! matches their answers to what was sent. It runs on the leader only.
//!
//! - [`state`]: the bookkeeping as a plain struct (no tokio), unit-tested.
//! - [`token`]: the completion token, the fence a worker's answer carries back.
//! - this module: the task around it (channels, `select!`, and the actions it returns).
//!
//! What is in flight lives only in memory: after a restart or a worker's disconnect,
//! everything pending is read again from the tables and sent again (at-least-once). The
//! engine's fences make a late or duplicate answer harmless.

pub mod budget;
pub mod state;
#[cfg(test)]
mod state_tests;
pub mod token;
mod wait_queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use endure_engine::records::command::Kind;
use endure_engine::records::{CompleteActivity, CompleteTurn};
use endure_engine::Effect;
use endure_proto::{ActivityResponse, OrchestratorResponse, WorkItem};
use endure_storage::Store;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tonic::Status;
use tracing::{info, warn};

use crate::cluster::clock::Clock;
use crate::cluster::proposer::Proposer;
use crate::telemetry::names;
use budget::Caps;
pub use state::Settings;
pub use state::Unmatched;
use state::{Action, DispatchState, Finished, Now, WorkerQueue};

/// Work items buffered per worker stream before the dispatcher tries another worker.
pub const WORKER_QUEUE_ITEMS: usize = 4_096;
/// Messages buffered for the dispatcher task.
pub const DISPATCHER_QUEUE_MESSAGES: usize = 65_536;
/// How often items that found no free worker are offered again.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Where a worker stream's items go.
pub type WorkSender = mpsc::Sender<Result<WorkItem, Status>>;

impl WorkerQueue for WorkSender {
    fn offer(&self, item: WorkItem) -> Result<(), WorkItem> {
        self.try_send(Ok(item))
            .map_err(|error| match error.into_inner() {
                Ok(item) => item,
                Err(_) => unreachable!("the dispatcher only sends items"),
            })
    }
}

enum Message {
    Connect {
        worker_id: u64,
        sender: WorkSender,
        caps: Arc<Caps>,
    },
    Disconnect {
        worker_id: u64,
    },
    ResolveTurn {
        response: OrchestratorResponse,
        reply: oneshot::Sender<Result<CompleteTurn, Unmatched>>,
    },
    TurnDone {
        instance_id: String,
        token: String,
    },
    ResolveActivity {
        response: ActivityResponse,
        reply: oneshot::Sender<Result<CompleteActivity, Unmatched>>,
    },
    ActivityDone {
        instance_id: String,
        task_id: i32,
    },
}

fn stopped() -> Unmatched {
    Unmatched("the dispatcher has stopped".to_string())
}

/// Handle to the dispatcher task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Message>,
}

impl Handle {
    /// Registers a worker stream; items go to `sender`, as many as `caps` allow, until
    /// [`Handle::disconnect`].
    pub async fn connect(&self, worker_id: u64, sender: WorkSender, caps: Arc<Caps>) {
        let message = Message::Connect {
            worker_id,
            sender,
            caps,
        };
        let _ = self.tx.send(message).await;
    }

    /// The worker's stream ended: what it held is sent again elsewhere.
    pub fn disconnect(&self, worker_id: u64) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(Message::Disconnect { worker_id }).await;
        });
    }

    /// The command that records a worker's answer to a turn, if it answers one in flight.
    pub async fn resolve_turn(
        &self,
        response: OrchestratorResponse,
    ) -> Result<CompleteTurn, Unmatched> {
        let (reply, rx) = oneshot::channel();
        let message = Message::ResolveTurn { response, reply };
        self.tx.send(message).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The turn's answer was proposed (applied or refused): the instance may run again.
    pub async fn turn_done(&self, instance_id: String, token: String) {
        let _ = self.tx.send(Message::TurnDone { instance_id, token }).await;
    }

    /// The command that records an activity's result, fenced to the run that scheduled it.
    pub async fn resolve_activity(
        &self,
        response: ActivityResponse,
    ) -> Result<CompleteActivity, Unmatched> {
        let (reply, rx) = oneshot::channel();
        let message = Message::ResolveActivity { response, reply };
        self.tx.send(message).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The activity's answer was proposed (applied or refused).
    pub async fn activity_done(&self, instance_id: String, task_id: i32) {
        let message = Message::ActivityDone {
            instance_id,
            task_id,
        };
        let _ = self.tx.send(message).await;
    }
}

/// What the dispatcher needs.
pub struct Options {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub effects: broadcast::Receiver<Arc<Vec<Effect>>>,
    /// Proposes the payload-size stall of an instance whose turn is too large.
    pub proposer: Proposer,
    pub settings: Settings,
    /// The node's caps on work in flight, shared by every shard's dispatcher on it.
    pub node_caps: Arc<Caps>,
    /// Told when a place under the node's or a worker stream's caps is given back.
    pub freed: Arc<Notify>,
}

/// The dispatcher task.
pub struct Dispatcher {
    rx: mpsc::Receiver<Message>,
    options: Options,
    state: DispatchState<WorkSender>,
}

impl Dispatcher {
    pub fn new(options: Options) -> (Self, Handle) {
        let (tx, rx) = mpsc::channel(DISPATCHER_QUEUE_MESSAGES);
        let state = DispatchState::new(
            token::Minter::random(),
            options.settings.clone(),
            options.node_caps.clone(),
        );
        let dispatcher = Dispatcher { rx, options, state };
        (dispatcher, Handle { tx })
    }

    fn now(&self) -> Now {
        Now {
            instant: Instant::now(),
            leader_time: self.options.clock.now(),
        }
    }

    /// Runs until shutdown. Starts by offering everything pending in the tables.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let actions = self.state.rescan(self.options.store.as_ref(), self.now());
        self.execute(actions);
        let mut retry = tokio::time::interval(RETRY_INTERVAL);
        let freed = self.options.freed.clone();
        loop {
            let store = self.options.store.clone();
            let waiting = self.state.has_waiting();
            let actions = tokio::select! {
                _ = shutdown.changed() => break,
                message = self.rx.recv() => match message {
                    Some(message) => self.handle(message, store.as_ref()),
                    None => break,
                },
                effects = self.options.effects.recv() => match effects {
                    Ok(effects) => self.state.on_effects(&effects, store.as_ref(), self.now()),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        warn!(skipped, "dispatcher fell behind the state machine; rescanning");
                        self.state.rescan(store.as_ref(), self.now())
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = retry.tick() => self.state.tick(store.as_ref(), self.now()),
                _ = freed.notified(), if waiting => {
                    self.state.room_freed(store.as_ref(), self.now())
                }
            };
            self.execute(actions);
            self.publish_gauges();
        }
        info!("dispatcher stopped");
    }

    fn handle(&mut self, message: Message, store: &dyn Store) -> Vec<Action> {
        let now = self.now();
        match message {
            Message::Connect {
                worker_id,
                sender,
                caps,
            } => self.state.connect(worker_id, sender, caps, store, now),
            Message::Disconnect { worker_id } => self.state.disconnect(worker_id, store, now),
            Message::ResolveTurn { response, reply } => {
                let _ = reply.send(self.state.resolve_turn(response));
                Vec::new()
            }
            Message::TurnDone { instance_id, token } => {
                let (finished, actions) = self.state.turn_done(&instance_id, &token, store, now);
                record(finished);
                actions
            }
            Message::ResolveActivity { response, reply } => {
                let _ = reply.send(self.state.resolve_activity(response));
                Vec::new()
            }
            Message::ActivityDone {
                instance_id,
                task_id,
            } => {
                record(self.state.activity_done(&instance_id, task_id, now));
                Vec::new()
            }
        }
    }

    fn execute(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Stall(stall) => {
                    metrics::counter!(names::TURNS_TOO_LARGE).increment(1);
                    let proposer = self.options.proposer.clone();
                    tokio::spawn(async move {
                        if let Err(e) = proposer.propose(Kind::StallForPayload(stall)).await {
                            warn!(error = %e, "could not stall an instance with an oversized turn");
                        }
                    });
                }
            }
        }
    }

    fn publish_gauges(&self) {
        let gauges = self.state.gauges();
        metrics::gauge!(names::WORKERS_CONNECTED).set(gauges.workers as f64);
        metrics::gauge!(names::WORK_ITEMS_QUEUED, "kind" => "turn").set(gauges.queued_turns as f64);
        metrics::gauge!(names::WORK_ITEMS_QUEUED, "kind" => "activity")
            .set(gauges.queued_activities as f64);
        metrics::gauge!(names::WORK_ITEMS_IN_FLIGHT, "kind" => "turn")
            .set(gauges.in_flight_turns as f64);
        metrics::gauge!(names::WORK_ITEMS_IN_FLIGHT, "kind" => "activity")
            .set(gauges.in_flight_activities as f64);
    }
}

fn record(finished: Finished) {
    if let Some(duration) = finished.turn {
        metrics::histogram!(names::TURN_DURATION).record(duration.as_secs_f64());
    }
    if let Some(duration) = finished.activity {
        metrics::histogram!(names::ACTIVITY_DURATION).record(duration.as_secs_f64());
    }
}
