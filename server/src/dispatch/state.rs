//! The dispatcher's bookkeeping, without tokio: which turns and activities are in flight
//! and with which worker, what waits for a free worker, and when something is sent again.
//!
//! Every method takes the time and the store it reads rows from, so tests drive it with a
//! manual clock over the in-memory store. Whether a worker can take an item is only known
//! by offering it ([`WorkerQueue::offer`], a non-blocking push); what needs IO beyond that
//! (proposing a stall) comes back as an [`Action`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use endure_engine::records::{CompleteActivity, CompleteTurn, StallForPayload};
use endure_engine::work_items::{self, Turn};
use endure_engine::Effect;
use endure_proto::{work_item, ActivityResponse, OrchestratorResponse, WorkItem};
use endure_storage::Store;
use prost::Message as _;
use prost_types::Timestamp;
use tracing::{debug, info, warn};

use super::budget::{Caps, Kind, Permit};
use super::token::{CompletionToken, Minter};
use super::wait_queue::WaitQueue;

/// A turn unanswered this long is sent again (turns take milliseconds in the SDKs).
pub const TURN_REDELIVERY_AFTER: Duration = Duration::from_secs(30);
/// An activity unanswered this long is sent again (activities may legitimately run long;
/// this is the backstop for an answer lost on its way, not a timeout).
pub const ACTIVITY_REDELIVERY_AFTER: Duration = Duration::from_secs(600);
/// Events an instance's history may hold before it stalls instead of running another turn.
pub const MAX_HISTORY_EVENTS: u64 = 50_000;
/// Instances read per page when rescanning the tables.
const RESCAN_PAGE_INSTANCES: usize = 1_000;

/// A worker's queue of work items, as the dispatcher sees it.
pub trait WorkerQueue {
    /// Hands `item` to the worker without waiting; gives it back when the worker's queue is
    /// full or its stream has ended (so it can be offered to the next worker, not copied).
    #[allow(clippy::result_large_err)]
    fn offer(&self, item: WorkItem) -> Result<(), WorkItem>;
}

/// What the dispatcher task must do after a call into the state.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Propose that the instance stalls: its next turn is larger than a worker accepts.
    Stall(StallForPayload),
}

/// The time of a call: the monotonic clock for redelivery, and the leader's time for the
/// turns built now.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub leader_time: Timestamp,
}

/// An answer that matches nothing in flight, with the text the SDKs treat as benign.
#[derive(Debug, PartialEq, Eq)]
pub struct Unmatched(pub String);

/// A storage read the dispatcher cannot do without: the node stops (DESIGN §7; a restart
/// reads everything again).
fn fatal_storage(context: &str, error: impl std::fmt::Display) -> ! {
    panic!("dispatcher: cannot read {context}: {error}")
}

struct InFlightTurn {
    token: CompletionToken,
    sent_at: Instant,
    turn: Turn,
    worker_id: u64,
    /// The answer is being proposed; the turn is not sent again meanwhile.
    completing: bool,
    /// Its place under the caps, given back when this is removed.
    _permit: Permit,
}

struct InFlightActivity {
    token: CompletionToken,
    sent_at: Instant,
    worker_id: u64,
    _permit: Permit,
}

/// A connected worker stream.
struct Worker<Q> {
    queue: Q,
    /// Its caps, shared with the other shards' dispatchers on this node.
    caps: Arc<Caps>,
}

/// What became of an item offered to the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Sent, or nothing to send (not ready, already in flight, stalled).
    Done,
    /// No worker had room: it waits.
    NoRoom,
}

/// The dispatcher's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Largest turn a worker accepts (the SDKs' receive limit), in bytes.
    pub max_turn_bytes: usize,
    /// Events a history may hold before the instance stalls.
    pub max_history_events: u64,
    /// A turn unanswered this long is sent again, to another worker where there is one.
    pub turn_redelivery: Duration,
    /// An activity unanswered this long is sent again.
    pub activity_redelivery: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_turn_bytes: 4 * 1024 * 1024,
            max_history_events: MAX_HISTORY_EVENTS,
            turn_redelivery: TURN_REDELIVERY_AFTER,
            activity_redelivery: ACTIVITY_REDELIVERY_AFTER,
        }
    }
}

/// Durations of finished work, for the latency histograms.
#[derive(Debug, Default, PartialEq)]
pub struct Finished {
    pub turn: Option<Duration>,
    pub activity: Option<Duration>,
}

/// Counts for the gauges.
#[derive(Debug, PartialEq, Eq)]
pub struct Gauges {
    pub workers: usize,
    pub queued_turns: usize,
    pub queued_activities: usize,
    pub in_flight_turns: usize,
    pub in_flight_activities: usize,
}

/// In-flight work and connected workers.
pub struct DispatchState<Q> {
    workers: BTreeMap<u64, Worker<Q>>,
    /// The worker that took the last item: round robin starts after it.
    cursor: u64,
    turns: HashMap<String, InFlightTurn>,
    activities: HashMap<(String, i32), InFlightActivity>,
    /// Instances whose turn found no room, and activities that found none, oldest first.
    waiting_turns: WaitQueue<String>,
    waiting_activities: WaitQueue<(String, i32)>,
    minter: Minter,
    settings: Settings,
    /// The node's caps, shared by every shard's dispatcher on it.
    node_caps: Arc<Caps>,
    /// While redelivering an overdue item: the worker that held it, offered it last (its
    /// stream may be open but dead).
    held_by: Option<u64>,
    /// Workers that let a turn go unanswered past the timeout (stuck, or reading nothing),
    /// until when: while another worker is connected they get nothing new, so a stuck
    /// worker cannot keep taking turns only to lose them a timeout later. An answer that
    /// matches clears the suspicion early.
    suspects: HashMap<u64, Instant>,
    actions: Vec<Action>,
}

impl<Q: WorkerQueue> DispatchState<Q> {
    pub fn new(minter: Minter, settings: Settings, node_caps: Arc<Caps>) -> Self {
        DispatchState {
            workers: BTreeMap::new(),
            cursor: 0,
            turns: HashMap::new(),
            activities: HashMap::new(),
            waiting_turns: WaitQueue::default(),
            waiting_activities: WaitQueue::default(),
            minter,
            settings,
            node_caps,
            held_by: None,
            suspects: HashMap::new(),
            actions: Vec::new(),
        }
    }

    /// A worker's stream opened, with its caps: what waits is offered at once.
    pub fn connect(
        &mut self,
        worker_id: u64,
        queue: Q,
        caps: Arc<Caps>,
        store: &dyn Store,
        now: Now,
    ) -> Vec<Action> {
        info!(
            worker_id,
            max_turns = caps.limit(Kind::Turn),
            max_activities = caps.limit(Kind::Activity),
            "worker connected"
        );
        self.workers.insert(worker_id, Worker { queue, caps });
        self.offer_waiting(store, now);
        self.take_actions()
    }

    /// A worker's stream ended: what it held (except turns whose answer is being
    /// proposed) is sent to the others.
    pub fn disconnect(&mut self, worker_id: u64, store: &dyn Store, now: Now) -> Vec<Action> {
        info!(
            worker_id,
            "worker disconnected; re-dispatching what it held"
        );
        self.workers.remove(&worker_id);
        self.suspects.remove(&worker_id);
        let turns: Vec<String> = self
            .turns
            .iter()
            .filter(|(_, t)| t.worker_id == worker_id && !t.completing)
            .map(|(id, _)| id.clone())
            .collect();
        for instance_id in turns {
            self.turns.remove(&instance_id);
            self.consider_turn(&instance_id, store, now);
        }
        let activities: Vec<(String, i32)> = self
            .activities
            .iter()
            .filter(|(_, a)| a.worker_id == worker_id)
            .map(|(key, _)| key.clone())
            .collect();
        for (instance_id, task_id) in activities {
            self.activities.remove(&(instance_id.clone(), task_id));
            self.send_activity(&instance_id, task_id, store, now);
        }
        self.take_actions()
    }

    /// What the state machine just applied.
    pub fn on_effects(&mut self, effects: &[Effect], store: &dyn Store, now: Now) -> Vec<Action> {
        for effect in effects {
            match effect {
                Effect::InstanceChanged { instance_id } => {
                    self.consider_turn(instance_id, store, now)
                }
                Effect::ActivityScheduled {
                    instance_id,
                    task_id,
                } => self.send_activity(instance_id, *task_id, store, now),
                Effect::TimerArmed { .. }
                | Effect::StatusChanged { .. }
                | Effect::OutboxAppended => {}
            }
        }
        self.take_actions()
    }

    /// Offers every ready turn and pending activity in the tables (on start, and when the
    /// dispatcher missed effects).
    pub fn rescan(&mut self, store: &dyn Store, now: Now) -> Vec<Action> {
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_instances(after.as_deref(), RESCAN_PAGE_INSTANCES)
                .unwrap_or_else(|e| fatal_storage("the instances", e));
            for record in &page {
                if work_items::is_ready(record) {
                    self.consider_turn(&record.instance_id, store, now);
                }
            }
            match page.last() {
                Some(last) if page.len() == RESCAN_PAGE_INSTANCES => {
                    after = Some(last.instance_id.clone())
                }
                _ => break,
            }
        }
        let pending = store
            .pending_activities()
            .unwrap_or_else(|e| fatal_storage("the pending activities", e));
        for (instance_id, task_id, _) in pending {
            self.send_activity(&instance_id, task_id, store, now);
        }
        self.take_actions()
    }

    /// The periodic tick: sends overdue items again and offers what waits.
    pub fn tick(&mut self, store: &dyn Store, now: Now) -> Vec<Action> {
        self.redeliver_overdue(store, now);
        self.offer_waiting(store, now);
        self.take_actions()
    }

    /// A place under a cap was given back (by this shard or another): offers what waits.
    pub fn room_freed(&mut self, store: &dyn Store, now: Now) -> Vec<Action> {
        self.offer_waiting(store, now);
        self.take_actions()
    }

    /// Whether anything waits for a worker with room.
    pub fn has_waiting(&self) -> bool {
        !self.waiting_turns.is_empty() || !self.waiting_activities.is_empty()
    }

    /// The command recording a worker's answer to a turn, if it answers the turn in
    /// flight. The turn is then "completing": not sent again until [`Self::turn_done`].
    pub fn resolve_turn(
        &mut self,
        response: OrchestratorResponse,
    ) -> Result<CompleteTurn, Unmatched> {
        let unknown = || Unmatched(format!("unknown instance ID: {}", response.instance_id));
        let Some(in_flight) = self.turns.get_mut(&response.instance_id) else {
            return Err(unknown());
        };
        if in_flight.completing || !in_flight.token.accepts(&response.completion_token) {
            return Err(unknown());
        }
        in_flight.completing = true;
        self.suspects.remove(&in_flight.worker_id);
        Ok(work_items::complete_turn(&in_flight.turn, response))
    }

    /// The answer to a turn was proposed (applied or refused): the instance may run again.
    pub fn turn_done(
        &mut self,
        instance_id: &str,
        token: &str,
        store: &dyn Store,
        now: Now,
    ) -> (Finished, Vec<Action>) {
        let mut finished = Finished::default();
        let done = self
            .turns
            .get(instance_id)
            .is_some_and(|t| t.completing && t.token.accepts(token));
        if done {
            if let Some(turn) = self.turns.remove(instance_id) {
                finished.turn = Some(now.instant.saturating_duration_since(turn.sent_at));
            }
        }
        self.consider_turn(instance_id, store, now);
        (finished, self.take_actions())
    }

    /// The command recording an activity's result. An answer for something not in flight
    /// (sent by an earlier dispatcher, before a restart) is fenced by the run its token
    /// names; the engine refuses it if that run or activity is gone.
    pub fn resolve_activity(
        &mut self,
        response: ActivityResponse,
    ) -> Result<CompleteActivity, Unmatched> {
        let unknown = || {
            Unmatched(format!(
                "unknown instance ID/task ID combo: {}/{}",
                response.instance_id, response.task_id
            ))
        };
        let key = (response.instance_id.clone(), response.task_id);
        let execution_id = match self.activities.get(&key) {
            Some(in_flight) if in_flight.token.accepts(&response.completion_token) => {
                self.suspects.remove(&in_flight.worker_id);
                in_flight.token.execution_id().map(str::to_string)
            }
            _ => CompletionToken::parse(&response.completion_token)
                .and_then(|token| token.execution_id().map(str::to_string)),
        };
        let execution_id = execution_id.ok_or_else(unknown)?;
        Ok(CompleteActivity {
            instance_id: response.instance_id,
            execution_id,
            task_id: response.task_id,
            result: response.result,
            failure_details: response.failure_details,
        })
    }

    /// The activity's result was proposed (applied or refused).
    pub fn activity_done(&mut self, instance_id: &str, task_id: i32, now: Now) -> Finished {
        let activity = self.activities.remove(&(instance_id.to_string(), task_id));
        Finished {
            turn: None,
            activity: activity.map(|a| now.instant.saturating_duration_since(a.sent_at)),
        }
    }

    pub fn gauges(&self) -> Gauges {
        Gauges {
            workers: self.workers.len(),
            queued_turns: self.waiting_turns.len(),
            queued_activities: self.waiting_activities.len(),
            in_flight_turns: self.turns.len(),
            in_flight_activities: self.activities.len(),
        }
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Sends the instance's next turn if it has one and none is in flight; queues it when
    /// no worker has room.
    fn consider_turn(&mut self, instance_id: &str, store: &dyn Store, now: Now) {
        match self.place_turn(instance_id, store, now) {
            Placement::Done => self.waiting_turns.remove(instance_id),
            Placement::NoRoom => self.waiting_turns.push_back(instance_id.to_string()),
        }
    }

    fn place_turn(&mut self, instance_id: &str, store: &dyn Store, now: Now) -> Placement {
        if self.turns.contains_key(instance_id) {
            return Placement::Done;
        }
        let _span = tracing::debug_span!("turn", instance_id).entered();
        let record = match store.instance(instance_id) {
            Ok(Some(record)) if work_items::is_ready(&record) => record,
            Ok(_) => return Placement::Done,
            Err(e) => fatal_storage("an instance", e),
        };
        // A turn is built from one read of each, and a read returns at most MAX_SCAN_ROWS
        // rows (the caps keep instances below it; this guards data from before them).
        let rows = record.history_len.max(record.inbox_len);
        if rows > endure_storage::MAX_SCAN_ROWS as u64 {
            let description = format!(
                "its history or inbox holds {rows} rows, more than the {} a turn is built from",
                endure_storage::MAX_SCAN_ROWS
            );
            let (execution_id, history_len) = (record.execution_id.clone(), record.history_len);
            self.stall(instance_id, &execution_id, history_len, description);
            return Placement::Done;
        }
        let history = store
            .history(instance_id)
            .unwrap_or_else(|e| fatal_storage("a history", e));
        let inbox = store
            .inbox(instance_id)
            .unwrap_or_else(|e| fatal_storage("an inbox", e));
        let Some(turn) = work_items::build_turn(&record, history, inbox, now.leader_time) else {
            return Placement::Done;
        };
        if let Some(description) = self.too_big(&turn) {
            self.stall(
                &turn.request.instance_id,
                &turn.execution_id,
                turn.history_len,
                description,
            );
            return Placement::Done;
        }
        let token = self.minter.turn();
        let item = WorkItem {
            request: Some(work_item::Request::OrchestratorRequest(
                turn.request.clone(),
            )),
            completion_token: token.to_string(),
        };
        let Some((worker_id, permit)) = self.offer(Kind::Turn, item, now) else {
            return Placement::NoRoom;
        };
        debug!(
            instance_id,
            worker_id,
            events = turn.request.new_events.len(),
            "turn dispatched"
        );
        let in_flight = InFlightTurn {
            token,
            sent_at: now.instant,
            turn,
            worker_id,
            completing: false,
            _permit: permit,
        };
        self.turns.insert(instance_id.to_string(), in_flight);
        Placement::Done
    }

    /// Why a turn must not be sent: larger than a worker accepts, or on a history past the
    /// cap.
    fn too_big(&self, turn: &Turn) -> Option<String> {
        let size = turn.request.encoded_len();
        if size > self.settings.max_turn_bytes {
            return Some(format!(
                "the next turn is {size} bytes, over the {} bytes a worker accepts",
                self.settings.max_turn_bytes
            ));
        }
        let events = turn.history_len + turn.request.new_events.len() as u64;
        if events > self.settings.max_history_events {
            return Some(format!(
                "the history would hold {events} events, over the {} that \
                 --max-history-events allows",
                self.settings.max_history_events
            ));
        }
        None
    }

    /// A turn no worker should get (it would break the worker's stream, again and again,
    /// or grow a history past its cap): the instance is stalled instead, as Dapr does.
    fn stall(
        &mut self,
        instance_id: &str,
        execution_id: &str,
        history_len: u64,
        description: String,
    ) {
        warn!(instance_id, reason = description, "stalling the instance");
        self.actions.push(Action::Stall(StallForPayload {
            instance_id: instance_id.to_string(),
            execution_id: execution_id.to_string(),
            history_len,
            description,
        }));
    }

    /// Sends a pending activity unless it is already in flight; queues it when no worker
    /// has room.
    fn send_activity(&mut self, instance_id: &str, task_id: i32, store: &dyn Store, now: Now) {
        let key = (instance_id.to_string(), task_id);
        match self.place_activity(instance_id, task_id, store, now) {
            Placement::Done => self.waiting_activities.remove(&key),
            Placement::NoRoom => self.waiting_activities.push_back(key),
        }
    }

    fn place_activity(
        &mut self,
        instance_id: &str,
        task_id: i32,
        store: &dyn Store,
        now: Now,
    ) -> Placement {
        let _span = tracing::debug_span!("activity", instance_id, task_id).entered();
        let key = (instance_id.to_string(), task_id);
        if self.activities.contains_key(&key) {
            return Placement::Done;
        }
        let activities = store
            .activities(instance_id)
            .unwrap_or_else(|e| fatal_storage("the activities of an instance", e));
        let Some((_, activity)) = activities.into_iter().find(|(id, _)| *id == task_id) else {
            return Placement::Done;
        };
        let token = self.minter.activity(&activity.execution_id);
        let item = WorkItem {
            request: Some(work_item::Request::ActivityRequest(
                work_items::activity_request(instance_id, task_id, &activity),
            )),
            completion_token: token.to_string(),
        };
        let Some((worker_id, permit)) = self.offer(Kind::Activity, item, now) else {
            return Placement::NoRoom;
        };
        debug!(worker_id, "activity dispatched");
        let in_flight = InFlightActivity {
            token,
            sent_at: now.instant,
            worker_id,
            _permit: permit,
        };
        self.activities.insert(key, in_flight);
        Placement::Done
    }

    /// Offers the item to the workers with room in round-robin order, suspects only when
    /// every worker is one; the worker that took it and its place under the caps, or
    /// `None` when none can take it.
    fn offer(&mut self, kind: Kind, item: WorkItem, now: Now) -> Option<(u64, Permit)> {
        if !self.node_caps.has_room(kind) {
            return None;
        }
        self.suspects.retain(|_, until| *until > now.instant);
        let mut ids: Vec<u64> = self
            .workers
            .range(self.cursor + 1..)
            .chain(self.workers.range(..=self.cursor))
            .map(|(id, _)| *id)
            .collect();
        if ids.iter().any(|id| !self.suspects.contains_key(id)) {
            ids.retain(|id| !self.suspects.contains_key(id));
        }
        if let Some(held_by) = self.held_by {
            // Everyone else first; the earlier holder only when no one else can take it.
            ids.sort_by_key(|id| *id == held_by);
        }
        let mut item = item;
        for worker_id in ids {
            let worker = &self.workers[&worker_id];
            let Some(permit) = Permit::take(kind, &self.node_caps, &worker.caps) else {
                continue;
            };
            match worker.queue.offer(item) {
                Ok(()) => {
                    self.cursor = worker_id;
                    return Some((worker_id, permit));
                }
                Err(back) => {
                    permit.cancel();
                    item = back;
                }
            }
        }
        None
    }

    /// Sends again what was sent long ago and never answered: an answer the worker sent
    /// may have been lost on its way (the SDKs do not resend), and a worker whose stream
    /// stays open would otherwise hold the item for ever. Answers are fenced, so a late
    /// answer to the first dispatch is refused.
    fn redeliver_overdue(&mut self, store: &dyn Store, now: Now) {
        let overdue = |sent_at: Instant, after: Duration| {
            now.instant.saturating_duration_since(sent_at) > after
        };
        let turns: Vec<(String, u64)> = self
            .turns
            .iter()
            .filter(|(_, t)| !t.completing && overdue(t.sent_at, self.settings.turn_redelivery))
            .map(|(id, t)| (id.clone(), t.worker_id))
            .collect();
        for (instance_id, worker_id) in turns {
            warn!(
                instance_id,
                "turn unanswered for {:?}; sending it again", self.settings.turn_redelivery
            );
            self.turns.remove(&instance_id);
            let until = now.instant + self.settings.turn_redelivery;
            self.suspects.insert(worker_id, until);
            self.consider_turn(&instance_id, store, now);
        }
        let activities: Vec<((String, i32), u64)> = self
            .activities
            .iter()
            .filter(|(_, a)| overdue(a.sent_at, self.settings.activity_redelivery))
            .map(|(key, a)| (key.clone(), a.worker_id))
            .collect();
        for ((instance_id, task_id), worker_id) in activities {
            warn!(
                instance_id,
                task_id, "activity unanswered; sending it again"
            );
            self.activities.remove(&(instance_id.clone(), task_id));
            self.held_by = Some(worker_id);
            self.send_activity(&instance_id, task_id, store, now);
            self.held_by = None;
        }
    }

    /// Offers what waits, oldest first, until no worker has room for the next one.
    fn offer_waiting(&mut self, store: &dyn Store, now: Now) {
        if self.workers.is_empty() {
            return;
        }
        while let Some(instance_id) = self.waiting_turns.pop_front() {
            if self.place_turn(&instance_id, store, now) == Placement::NoRoom {
                self.waiting_turns.push_front(instance_id);
                break;
            }
        }
        while let Some(key) = self.waiting_activities.pop_front() {
            if self.place_activity(&key.0, key.1, store, now) == Placement::NoRoom {
                self.waiting_activities.push_front(key);
                break;
            }
        }
    }
}
