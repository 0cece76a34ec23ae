//! The dispatcher: sends ready turns and pending activities to connected workers and
//! matches their answers to what was sent.
//!
//! What is in flight lives only in memory: after a restart or a worker's disconnect,
//! everything pending is read again from the tables and sent again (at-least-once). The
//! engine's fences make a late or duplicate answer harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use endure_engine::records::command::Kind;
use endure_engine::records::{CompleteActivity, CompleteTurn, StallForPayload};
use endure_engine::work_items::{self as dispatch, Turn};
use endure_engine::{Effect, StateView};
use endure_proto::{work_item, ActivityResponse, OrchestratorResponse, WorkItem};
use endure_storage::rocks::RocksStore;
use endure_storage::Store;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::Status;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::proposer::Proposer;

/// Work items buffered per worker stream before the dispatcher tries another worker.
pub const WORKER_QUEUE_ITEMS: usize = 4_096;
/// Messages buffered for the dispatcher task.
pub const DISPATCHER_QUEUE_MESSAGES: usize = 65_536;
/// A turn unanswered this long is sent again (turns take milliseconds in the SDKs).
pub const TURN_REDELIVERY_AFTER: Duration = Duration::from_secs(30);
/// An activity unanswered this long is sent again (activities may legitimately run long;
/// this is the backstop for an answer lost on its way, not a timeout).
pub const ACTIVITY_REDELIVERY_AFTER: Duration = Duration::from_secs(600);
/// How often items that found no free worker are offered again.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Instances read per page when rescanning the tables.
const RESCAN_PAGE_INSTANCES: usize = 1_000;

pub type WorkSender = mpsc::Sender<Result<WorkItem, Status>>;

enum Message {
    Connect {
        worker_id: u64,
        sender: WorkSender,
    },
    Disconnect {
        worker_id: u64,
    },
    ResolveTurn {
        response: OrchestratorResponse,
        reply: oneshot::Sender<Result<CompleteTurn, String>>,
    },
    TurnDone {
        instance_id: String,
        token: String,
    },
    ResolveActivity {
        response: ActivityResponse,
        reply: oneshot::Sender<Result<CompleteActivity, String>>,
    },
    ActivityDone {
        instance_id: String,
        task_id: i32,
    },
}

/// Handle to the dispatcher task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Message>,
}

impl Handle {
    /// Registers a worker stream; items go to `sender` until [`Handle::disconnect`].
    pub async fn connect(&self, worker_id: u64, sender: WorkSender) {
        let _ = self.tx.send(Message::Connect { worker_id, sender }).await;
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
    ) -> Result<CompleteTurn, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::ResolveTurn { response, reply })
            .await
            .map_err(|_| "the dispatcher has stopped".to_string())?;
        rx.await
            .map_err(|_| "the dispatcher has stopped".to_string())?
    }

    /// The turn's answer was proposed (applied or refused): the instance may run again.
    pub async fn turn_done(&self, instance_id: String, token: String) {
        let _ = self.tx.send(Message::TurnDone { instance_id, token }).await;
    }

    pub async fn resolve_activity(
        &self,
        response: ActivityResponse,
    ) -> Result<CompleteActivity, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::ResolveActivity { response, reply })
            .await
            .map_err(|_| "the dispatcher has stopped".to_string())?;
        rx.await
            .map_err(|_| "the dispatcher has stopped".to_string())?
    }

    /// The activity's answer was proposed (applied or refused).
    pub async fn activity_done(&self, instance_id: String, task_id: i32) {
        let _ = self
            .tx
            .send(Message::ActivityDone {
                instance_id,
                task_id,
            })
            .await;
    }
}

struct InFlightTurn {
    token: String,
    sent_at: Instant,
    turn: Turn,
    worker_id: u64,
    /// The answer is being proposed; the turn is not sent again meanwhile.
    completing: bool,
}

struct InFlightActivity {
    sent_at: Instant,
    instance_id: String,
    task_id: i32,
    execution_id: String,
    worker_id: u64,
}

/// The dispatcher task's state.
pub struct Dispatcher {
    rx: mpsc::Receiver<Message>,
    effects: broadcast::Receiver<Arc<Vec<Effect>>>,
    store: Arc<RocksStore>,
    clock: Arc<dyn Clock>,
    workers: BTreeMap<u64, WorkSender>,
    cursor: u64,
    turns: HashMap<String, InFlightTurn>,
    activities: HashMap<String, InFlightActivity>,
    activity_tokens: HashMap<(String, i32), String>,
    waiting_turns: BTreeSet<String>,
    waiting_activities: VecDeque<(String, i32)>,
    next_token: u64,
    /// Random per dispatcher, part of every token it issues.
    epoch: String,
    /// Proposes the payload-size stall of an instance whose turn is too large.
    proposer: Proposer,
    /// Largest turn a worker accepts (the SDKs' receive limit), in bytes.
    max_turn_bytes: usize,
    /// While redelivering an overdue item: the worker that held it, tried last (its
    /// stream may be open but dead).
    held_by: Option<u64>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<RocksStore>,
        clock: Arc<dyn Clock>,
        effects: broadcast::Receiver<Arc<Vec<Effect>>>,
        proposer: Proposer,
        max_turn_bytes: usize,
    ) -> (Self, Handle) {
        let (tx, rx) = mpsc::channel(DISPATCHER_QUEUE_MESSAGES);
        let dispatcher = Dispatcher {
            rx,
            effects,
            store,
            clock,
            workers: BTreeMap::new(),
            cursor: 0,
            turns: HashMap::new(),
            activities: HashMap::new(),
            activity_tokens: HashMap::new(),
            waiting_turns: BTreeSet::new(),
            waiting_activities: VecDeque::new(),
            next_token: 0,
            epoch: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            proposer,
            max_turn_bytes,
            held_by: None,
        };
        (dispatcher, Handle { tx })
    }

    /// Runs until shutdown. Starts by offering everything pending in the tables.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        self.rescan();
        let mut retry = tokio::time::interval(RETRY_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                message = self.rx.recv() => match message {
                    Some(message) => self.handle(message),
                    None => break,
                },
                effects = self.effects.recv() => match effects {
                    Ok(effects) => self.on_effects(&effects),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        warn!(skipped, "dispatcher fell behind the state machine; rescanning");
                        self.rescan();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = retry.tick() => self.retry_waiting(),
            }
            self.publish_gauges();
        }
        info!("dispatcher stopped");
    }

    fn publish_gauges(&self) {
        metrics::gauge!("endure_workers_connected").set(self.workers.len() as f64);
        metrics::gauge!("endure_work_items_queued", "kind" => "turn")
            .set(self.waiting_turns.len() as f64);
        metrics::gauge!("endure_work_items_queued", "kind" => "activity")
            .set(self.waiting_activities.len() as f64);
        metrics::gauge!("endure_work_items_in_flight", "kind" => "turn")
            .set(self.turns.len() as f64);
        metrics::gauge!("endure_work_items_in_flight", "kind" => "activity")
            .set(self.activities.len() as f64);
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Connect { worker_id, sender } => {
                info!(worker_id, "worker connected");
                self.workers.insert(worker_id, sender);
                self.retry_waiting();
            }
            Message::Disconnect { worker_id } => self.disconnect(worker_id),
            Message::ResolveTurn { response, reply } => {
                let _ = reply.send(self.resolve_turn(response));
            }
            Message::TurnDone { instance_id, token } => {
                if self
                    .turns
                    .get(&instance_id)
                    .is_some_and(|t| t.completing && (token.is_empty() || t.token == token))
                {
                    if let Some(done) = self.turns.remove(&instance_id) {
                        metrics::histogram!("endure_turn_duration_seconds")
                            .record(done.sent_at.elapsed().as_secs_f64());
                    }
                }
                self.consider_turn(&instance_id);
            }
            Message::ResolveActivity { response, reply } => {
                let _ = reply.send(self.resolve_activity(response));
            }
            Message::ActivityDone {
                instance_id,
                task_id,
            } => {
                if let Some(token) = self.activity_tokens.remove(&(instance_id, task_id)) {
                    if let Some(done) = self.activities.remove(&token) {
                        metrics::histogram!("endure_activity_duration_seconds")
                            .record(done.sent_at.elapsed().as_secs_f64());
                    }
                }
            }
        }
    }

    fn on_effects(&mut self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::InstanceChanged { instance_id } => self.consider_turn(instance_id),
                Effect::ActivityScheduled {
                    instance_id,
                    task_id,
                } => self.send_activity(instance_id, *task_id),
                Effect::TimerArmed { .. } | Effect::StatusChanged { .. } => {}
            }
        }
    }

    /// Offers every ready turn and pending activity in the tables.
    fn rescan(&mut self) {
        let mut after: Option<String> = None;
        loop {
            let page = match self
                .store
                .list_instances(after.as_deref(), RESCAN_PAGE_INSTANCES)
            {
                Ok(page) => page,
                Err(e) => panic!("cannot read instances while rescanning: {e}"),
            };
            for record in &page {
                if dispatch::is_ready(record) {
                    self.consider_turn(&record.instance_id);
                }
            }
            match page.last() {
                Some(last) if page.len() == RESCAN_PAGE_INSTANCES => {
                    after = Some(last.instance_id.clone())
                }
                _ => break,
            }
        }
        let pending = self
            .store
            .pending_activities()
            .unwrap_or_else(|e| panic!("cannot read activities while rescanning: {e}"));
        for (instance_id, task_id, _) in pending {
            self.send_activity(&instance_id, task_id);
        }
    }

    /// A completion token no other dispatcher (an earlier leader's, or this node's after a
    /// restart) has issued: a late answer to an old dispatch never matches a new one.
    fn token(&mut self, prefix: &str) -> String {
        self.next_token += 1;
        format!("{prefix}{}.{}", self.epoch, self.next_token)
    }

    /// Sends the instance's next turn if it has one and none is in flight.
    fn consider_turn(&mut self, instance_id: &str) {
        if self.turns.contains_key(instance_id) {
            return;
        }
        let _span = tracing::debug_span!("turn", instance_id).entered();
        self.waiting_turns.remove(instance_id);
        let record = match self.store.instance(instance_id) {
            Ok(Some(record)) if dispatch::is_ready(&record) => record,
            Ok(_) => return,
            Err(e) => panic!("cannot read instance {instance_id}: {e}"),
        };
        let history = self
            .store
            .history(instance_id)
            .unwrap_or_else(|e| panic!("{e}"));
        let inbox = self
            .store
            .inbox(instance_id)
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(turn) = dispatch::build_turn(&record, history, inbox, self.clock.now()) else {
            return;
        };
        let size = turn.request.encoded_len();
        if size > self.max_turn_bytes {
            self.stall(&turn, size);
            return;
        }
        let token = self.token("t");
        let item = WorkItem {
            request: Some(work_item::Request::OrchestratorRequest(
                turn.request.clone(),
            )),
            completion_token: token.clone(),
        };
        match self.send(item) {
            Some(worker_id) => {
                debug!(
                    instance_id,
                    worker_id,
                    events = turn.request.new_events.len(),
                    "turn dispatched"
                );
                let in_flight = InFlightTurn {
                    token,
                    sent_at: Instant::now(),
                    turn,
                    worker_id,
                    completing: false,
                };
                self.turns.insert(instance_id.to_string(), in_flight);
            }
            None => {
                self.waiting_turns.insert(instance_id.to_string());
            }
        }
    }

    /// A turn no worker would accept (it would break the worker's stream, again and
    /// again): the instance is stalled instead, as Dapr does.
    fn stall(&self, turn: &Turn, size: usize) {
        let description = format!(
            "the next turn is {size} bytes, over the {} bytes a worker accepts",
            self.max_turn_bytes
        );
        warn!(
            instance_id = turn.request.instance_id,
            size, "turn too large: stalling the instance"
        );
        metrics::counter!("endure_turns_too_large_total").increment(1);
        let stall = StallForPayload {
            instance_id: turn.request.instance_id.clone(),
            execution_id: turn.execution_id.clone(),
            history_len: turn.history_len,
            description,
        };
        let proposer = self.proposer.clone();
        tokio::spawn(async move {
            if let Err(e) = proposer.propose(Kind::StallForPayload(stall)).await {
                warn!(error = %e, "could not stall an instance with an oversized turn");
            }
        });
    }

    /// Sends a pending activity unless it is already in flight.
    fn send_activity(&mut self, instance_id: &str, task_id: i32) {
        let _span = tracing::debug_span!("activity", instance_id, task_id).entered();
        let key = (instance_id.to_string(), task_id);
        if self.activity_tokens.contains_key(&key) {
            return;
        }
        let activities = self
            .store
            .activities(instance_id)
            .unwrap_or_else(|e| panic!("{e}"));
        let Some((_, activity)) = activities.into_iter().find(|(id, _)| *id == task_id) else {
            return;
        };
        // The token carries the execution ID, so an answer that arrives after a restart
        // (when this map is empty) is still fenced to the run that scheduled it.
        let token = format!("{}:{}", self.token("a"), activity.execution_id);
        let request = dispatch::activity_request(instance_id, task_id, &activity);
        let item = WorkItem {
            request: Some(work_item::Request::ActivityRequest(request)),
            completion_token: token.clone(),
        };
        match self.send(item) {
            Some(worker_id) => {
                debug!(worker_id, "activity dispatched");
                let in_flight = InFlightActivity {
                    sent_at: Instant::now(),
                    instance_id: instance_id.to_string(),
                    task_id,
                    execution_id: activity.execution_id,
                    worker_id,
                };
                self.activities.insert(token.clone(), in_flight);
                self.activity_tokens.insert(key, token);
            }
            None => self.waiting_activities.push_back(key),
        }
    }

    /// Offers the item to the workers in turn; `None` when no worker can take it now.
    fn send(&mut self, item: WorkItem) -> Option<u64> {
        let mut ids: Vec<u64> = self
            .workers
            .range(self.cursor + 1..)
            .chain(self.workers.range(..=self.cursor))
            .map(|(id, _)| *id)
            .collect();
        if let Some(held_by) = self.held_by {
            // Everyone else first; the earlier holder only when no one else can take it.
            ids.sort_by_key(|id| *id == held_by);
        }
        let mut item = item;
        for worker_id in ids {
            let sender = &self.workers[&worker_id];
            match sender.try_send(Ok(item)) {
                Ok(()) => {
                    self.cursor = worker_id;
                    return Some(worker_id);
                }
                Err(mpsc::error::TrySendError::Full(Ok(back)))
                | Err(mpsc::error::TrySendError::Closed(Ok(back))) => item = back,
                Err(_) => unreachable!("only Ok items are sent"),
            }
        }
        None
    }

    /// Sends again what was sent long ago and never answered: an answer the worker sent
    /// may have been lost on its way (the SDKs do not resend), and a worker whose stream
    /// stays open would otherwise hold the item for ever. Answers are fenced, so a late
    /// answer to the first dispatch is refused.
    fn redeliver_overdue(&mut self) {
        let overdue_turns: Vec<(String, u64)> = self
            .turns
            .iter()
            .filter(|(_, t)| !t.completing && t.sent_at.elapsed() > TURN_REDELIVERY_AFTER)
            .map(|(id, t)| (id.clone(), t.worker_id))
            .collect();
        for (instance_id, worker_id) in overdue_turns {
            warn!(
                instance_id,
                "turn unanswered for {TURN_REDELIVERY_AFTER:?}; sending it again"
            );
            self.turns.remove(&instance_id);
            self.held_by = Some(worker_id);
            self.consider_turn(&instance_id);
            self.held_by = None;
        }
        let overdue_activities: Vec<String> = self
            .activities
            .iter()
            .filter(|(_, a)| a.sent_at.elapsed() > ACTIVITY_REDELIVERY_AFTER)
            .map(|(token, _)| token.clone())
            .collect();
        for token in overdue_activities {
            if let Some(activity) = self.activities.remove(&token) {
                warn!(
                    instance_id = activity.instance_id,
                    task_id = activity.task_id,
                    "activity unanswered; sending it again"
                );
                self.activity_tokens
                    .remove(&(activity.instance_id.clone(), activity.task_id));
                self.held_by = Some(activity.worker_id);
                self.send_activity(&activity.instance_id, activity.task_id);
                self.held_by = None;
            }
        }
    }

    fn retry_waiting(&mut self) {
        self.redeliver_overdue();
        if self.workers.is_empty() {
            return;
        }
        for instance_id in std::mem::take(&mut self.waiting_turns) {
            self.consider_turn(&instance_id);
        }
        for (instance_id, task_id) in std::mem::take(&mut self.waiting_activities) {
            self.send_activity(&instance_id, task_id);
        }
    }

    fn disconnect(&mut self, worker_id: u64) {
        info!(
            worker_id,
            "worker disconnected; re-dispatching what it held"
        );
        self.workers.remove(&worker_id);
        let turns: Vec<String> = self
            .turns
            .iter()
            .filter(|(_, t)| t.worker_id == worker_id && !t.completing)
            .map(|(id, _)| id.clone())
            .collect();
        for instance_id in turns {
            self.turns.remove(&instance_id);
            self.consider_turn(&instance_id);
        }
        let tokens: Vec<String> = self
            .activities
            .iter()
            .filter(|(_, a)| a.worker_id == worker_id)
            .map(|(token, _)| token.clone())
            .collect();
        for token in tokens {
            if let Some(activity) = self.activities.remove(&token) {
                self.activity_tokens
                    .remove(&(activity.instance_id.clone(), activity.task_id));
                self.send_activity(&activity.instance_id, activity.task_id);
            }
        }
    }

    fn resolve_turn(&mut self, response: OrchestratorResponse) -> Result<CompleteTurn, String> {
        let unknown = || format!("unknown instance ID: {}", response.instance_id);
        let Some(in_flight) = self.turns.get_mut(&response.instance_id) else {
            return Err(unknown());
        };
        // An empty token (JS SDK) matches the outstanding turn of the instance.
        let token_matches =
            response.completion_token.is_empty() || response.completion_token == in_flight.token;
        if !token_matches || in_flight.completing {
            return Err(unknown());
        }
        in_flight.completing = true;
        let mut command = dispatch::complete_turn(&in_flight.turn, response);
        command.instance_id = in_flight.turn.request.instance_id.clone();
        Ok(command)
    }

    fn resolve_activity(&mut self, response: ActivityResponse) -> Result<CompleteActivity, String> {
        let unknown = || {
            format!(
                "unknown instance ID/task ID combo: {}/{}",
                response.instance_id, response.task_id
            )
        };
        let key = (response.instance_id.clone(), response.task_id);
        let execution_id = if response.completion_token.is_empty() {
            let token = self.activity_tokens.get(&key).ok_or_else(unknown)?;
            self.activities[token].execution_id.clone()
        } else {
            match self.activities.get(&response.completion_token) {
                Some(in_flight) if in_flight.instance_id == key.0 && in_flight.task_id == key.1 => {
                    in_flight.execution_id.clone()
                }
                Some(_) => return Err(unknown()),
                None => match response.completion_token.split_once(':') {
                    Some((_, execution_id)) => execution_id.to_string(),
                    None => return Err(unknown()),
                },
            }
        };
        Ok(CompleteActivity {
            instance_id: response.instance_id,
            execution_id,
            task_id: response.task_id,
            result: response.result,
            failure_details: response.failure_details,
        })
    }
}
