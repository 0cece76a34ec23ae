//! The dispatcher's bookkeeping on the in-memory store with a manual clock: no tokio, no
//! sleeps. Rows are made by applying real commands through the engine.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use endure_engine::apply::{apply, EntryMeta};
use endure_engine::records::command::Kind;
use endure_engine::records::{Command, StartInstance};
use endure_engine::Effect;
use endure_proto::orchestrator_action::OrchestratorActionType;
use endure_proto::{
    work_item, ActivityResponse, OrchestratorAction, OrchestratorResponse, ScheduleTaskAction,
    WorkItem,
};
use endure_storage::memory::MemoryStore;
use endure_storage::Store;
use prost_types::Timestamp;

use std::sync::Arc;

use super::budget::{Caps, Kind as CapKind};
use super::state::{
    Action, DispatchState, Now, Settings, WorkerQueue, ACTIVITY_REDELIVERY_AFTER,
    TURN_REDELIVERY_AFTER,
};
use super::token::Minter;

/// A worker's queue in a test: what it received, and how many more items it takes.
#[derive(Clone, Default)]
struct Queue {
    items: Rc<RefCell<Vec<WorkItem>>>,
    room: Rc<RefCell<Option<usize>>>,
}

impl Queue {
    fn with_room(room: usize) -> Queue {
        let queue = Queue::default();
        *queue.room.borrow_mut() = Some(room);
        queue
    }

    fn take(&self) -> Vec<WorkItem> {
        std::mem::take(&mut self.items.borrow_mut())
    }
}

impl WorkerQueue for Queue {
    fn offer(&self, item: WorkItem) -> Result<(), WorkItem> {
        let mut room = self.room.borrow_mut();
        match room.as_mut() {
            Some(0) => return Err(item),
            Some(left) => *left -= 1,
            None => {}
        }
        self.items.borrow_mut().push(item);
        Ok(())
    }
}

struct Harness {
    store: MemoryStore,
    state: DispatchState<Queue>,
    started: Instant,
    elapsed: Duration,
    log_index: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_limit(4 * 1024 * 1024)
    }

    fn with_limit(max_turn_bytes: usize) -> Harness {
        Harness::with(
            Settings {
                max_turn_bytes,
                ..Settings::default()
            },
            Caps::unlimited(),
        )
    }

    fn with(settings: Settings, node_caps: Arc<Caps>) -> Harness {
        Harness {
            store: MemoryStore::default(),
            state: DispatchState::new(Minter::with_epoch("first"), settings, node_caps),
            started: Instant::now(),
            elapsed: Duration::ZERO,
            log_index: 0,
        }
    }

    fn now(&self) -> Now {
        Now {
            instant: self.started + self.elapsed,
            leader_time: Timestamp {
                seconds: 1_000 + self.elapsed.as_secs() as i64,
                nanos: 0,
            },
        }
    }

    fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    /// Applies a command to the store, as the state machine would; returns its effects.
    fn apply(&mut self, kind: Kind) -> Vec<Effect> {
        self.log_index += 1;
        let command = Command {
            leader_time: Some(self.now().leader_time),
            id_seed: format!("seed-{}", self.log_index),
            kind: Some(kind),
        };
        let meta = EntryMeta {
            log_index: self.log_index,
        };
        let applied = apply(&self.store, &command, &meta).expect("the command applies");
        self.store
            .commit(&applied.writes, b"")
            .expect("the writes commit");
        applied.effects
    }

    /// Starts `instance_id` and answers its first turn with one activity, `act`; the
    /// activity then goes to `worker`.
    fn schedule_activity(&mut self, instance_id: &str, worker: &Queue) {
        self.start(instance_id);
        let turn = worker.take().remove(0);
        self.answer_turn(&turn, vec![schedule("act")]);
    }

    fn start(&mut self, instance_id: &str) -> Vec<Action> {
        let effects = self.apply(Kind::StartInstance(StartInstance {
            instance_id: instance_id.to_string(),
            name: "wf".to_string(),
            ..Default::default()
        }));
        self.state.on_effects(&effects, &self.store, self.now())
    }

    fn connect(&mut self, worker_id: u64, queue: &Queue) -> Vec<Action> {
        self.connect_capped(worker_id, queue, Caps::unlimited())
    }

    fn connect_capped(&mut self, worker_id: u64, queue: &Queue, caps: Arc<Caps>) -> Vec<Action> {
        self.state
            .connect(worker_id, queue.clone(), caps, &self.store, self.now())
    }

    fn disconnect(&mut self, worker_id: u64) {
        let actions = self.state.disconnect(worker_id, &self.store, self.now());
        assert!(actions.is_empty());
    }

    fn tick(&mut self) {
        let actions = self.state.tick(&self.store, self.now());
        assert!(actions.is_empty());
    }

    /// Answers a turn with `actions`, applies the answer and reports it done, as the
    /// completion RPC does.
    fn answer_turn(&mut self, item: &WorkItem, actions: Vec<OrchestratorAction>) {
        let request = turn_of(item);
        let response = OrchestratorResponse {
            instance_id: request.instance_id.clone(),
            actions,
            completion_token: item.completion_token.clone(),
            ..Default::default()
        };
        let command = self
            .state
            .resolve_turn(response)
            .expect("the answer matches");
        let effects = self.apply(Kind::CompleteTurn(command));
        let (_, actions) = self.state.turn_done(
            &request.instance_id,
            &item.completion_token,
            &self.store,
            self.now(),
        );
        assert!(actions.is_empty());
        let actions = self.state.on_effects(&effects, &self.store, self.now());
        assert!(actions.is_empty());
    }
}

fn turn_of(item: &WorkItem) -> &endure_proto::OrchestratorRequest {
    match &item.request {
        Some(work_item::Request::OrchestratorRequest(request)) => request,
        other => panic!("expected a turn, got {other:?}"),
    }
}

fn activity_of(item: &WorkItem) -> &endure_proto::ActivityRequest {
    match &item.request {
        Some(work_item::Request::ActivityRequest(request)) => request,
        other => panic!("expected an activity, got {other:?}"),
    }
}

fn schedule(name: &str) -> OrchestratorAction {
    OrchestratorAction {
        id: 1,
        orchestrator_action_type: Some(OrchestratorActionType::ScheduleTask(ScheduleTaskAction {
            name: name.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn turn_answer(instance_id: &str, token: &str) -> OrchestratorResponse {
    OrchestratorResponse {
        instance_id: instance_id.to_string(),
        completion_token: token.to_string(),
        ..Default::default()
    }
}

fn activity_answer(item: &WorkItem, token: &str) -> ActivityResponse {
    let request = activity_of(item);
    ActivityResponse {
        instance_id: request
            .orchestration_instance
            .as_ref()
            .unwrap()
            .instance_id
            .clone(),
        task_id: request.task_id,
        completion_token: token.to_string(),
        ..Default::default()
    }
}

#[test]
fn a_ready_turn_waits_for_a_worker_and_goes_to_the_first_that_connects() {
    let mut h = Harness::new();
    assert!(h.start("i1").is_empty());
    assert_eq!(h.state.gauges().queued_turns, 1);
    let worker = Queue::default();
    h.connect(7, &worker);
    let items = worker.take();
    assert_eq!(items.len(), 1);
    assert_eq!(turn_of(&items[0]).instance_id, "i1");
    assert!(items[0].completion_token.starts_with("tfirst."));
    let gauges = h.state.gauges();
    assert_eq!((gauges.queued_turns, gauges.in_flight_turns), (0, 1));
}

#[test]
fn a_disconnect_sends_what_the_worker_held_to_another_worker_with_a_new_token() {
    let mut h = Harness::new();
    let (first, second) = (Queue::default(), Queue::default());
    h.connect(1, &first);
    h.start("i1");
    let held = first.take().remove(0);
    h.connect(2, &second);
    assert!(second.take().is_empty(), "nothing is sent twice while held");
    h.disconnect(1);
    let again = second.take().remove(0);
    assert_eq!(turn_of(&again).instance_id, "i1");
    assert_ne!(again.completion_token, held.completion_token);
    let late = h
        .state
        .resolve_turn(turn_answer("i1", &held.completion_token));
    assert!(late.is_err(), "the first dispatch's answer is refused");
    assert!(h
        .state
        .resolve_turn(turn_answer("i1", &again.completion_token))
        .is_ok());
}

#[test]
fn an_unanswered_turn_is_sent_again_after_the_timeout_to_another_worker_first() {
    let mut h = Harness::new();
    let (first, second) = (Queue::default(), Queue::default());
    h.connect(1, &first);
    h.connect(2, &second);
    h.start("i1");
    let (holder, other) = if first.items.borrow().is_empty() {
        (&second, &first)
    } else {
        (&first, &second)
    };
    let held = holder.take().remove(0);
    h.advance(TURN_REDELIVERY_AFTER - Duration::from_secs(1));
    h.tick();
    assert!(
        first.take().is_empty() && second.take().is_empty(),
        "not overdue yet"
    );
    h.advance(Duration::from_secs(2));
    h.tick();
    assert!(holder.take().is_empty(), "the silent holder is tried last");
    let again = other.take().remove(0);
    assert_ne!(again.completion_token, held.completion_token);
    assert!(h
        .state
        .resolve_turn(turn_answer("i1", &held.completion_token))
        .is_err());
}

#[test]
fn a_turn_whose_answer_is_being_proposed_is_not_sent_again() {
    let mut h = Harness::new();
    let worker = Queue::default();
    h.connect(1, &worker);
    h.start("i1");
    let item = worker.take().remove(0);
    h.state
        .resolve_turn(turn_answer("i1", &item.completion_token))
        .expect("the answer matches");
    let twice = h
        .state
        .resolve_turn(turn_answer("i1", &item.completion_token));
    assert!(twice.is_err(), "a second copy of the answer is refused");
    h.advance(TURN_REDELIVERY_AFTER * 2);
    h.tick();
    let spare = Queue::default();
    h.connect(2, &spare);
    h.disconnect(1);
    assert!(
        spare.take().is_empty(),
        "neither the timeout nor a disconnect resends it"
    );
    assert_eq!(h.state.gauges().in_flight_turns, 1);
}

#[test]
fn the_empty_token_of_older_sdks_matches_the_outstanding_work() {
    let mut h = Harness::new();
    let worker = Queue::default();
    h.connect(1, &worker);
    h.start("i1");
    let turn = worker.take().remove(0);
    let command = h
        .state
        .resolve_turn(turn_answer("i1", ""))
        .expect("matches");
    assert_eq!(command.instance_id, "i1");
    let effects = h.apply(Kind::CompleteTurn(command));
    let _ = turn;
    h.state.turn_done("i1", "", &h.store, h.now());
    assert_eq!(h.state.gauges().in_flight_turns, 0);
    let _ = h.state.on_effects(&effects, &h.store, h.now());
    // The start turn scheduled nothing, so nothing more is in flight.
    assert!(worker.take().is_empty());
}

#[test]
fn an_activity_answer_without_a_token_matches_its_in_flight_dispatch() {
    let mut h = Harness::new();
    let worker = Queue::default();
    h.connect(1, &worker);
    h.schedule_activity("i1", &worker);
    let activity = worker.take().remove(0);
    assert_eq!(activity_of(&activity).name, "act");
    let command = h
        .state
        .resolve_activity(activity_answer(&activity, ""))
        .expect("the empty token matches");
    let execution_id = activity_of(&activity)
        .orchestration_instance
        .as_ref()
        .unwrap()
        .execution_id
        .clone()
        .unwrap();
    assert_eq!(command.execution_id, execution_id);
}

#[test]
fn after_a_restart_old_tokens_do_not_match_new_dispatches() {
    let mut h = Harness::new();
    let worker = Queue::default();
    h.connect(1, &worker);
    h.schedule_activity("i1", &worker);
    h.start("i2");
    let mut items = worker.take();
    let old_turn = items.pop().unwrap();
    let old_activity = items.pop().unwrap();
    assert_eq!(turn_of(&old_turn).instance_id, "i2");

    // The node restarts: a new dispatcher with a new epoch reads the tables again.
    h.state = DispatchState::new(
        Minter::with_epoch("second"),
        Settings::default(),
        Caps::unlimited(),
    );
    let fresh = Queue::default();
    h.connect(1, &fresh);
    assert!(h.state.rescan(&h.store, h.now()).is_empty());
    let resent = fresh.take();
    assert_eq!(
        resent.len(),
        2,
        "the ready turn and the pending activity are sent again"
    );
    assert!(resent
        .iter()
        .all(|item| item.completion_token.contains("second.")));

    let stale = h
        .state
        .resolve_turn(turn_answer("i2", &old_turn.completion_token));
    assert!(
        stale.is_err(),
        "a turn token of the earlier dispatcher is refused"
    );
    // An activity's old token still names the run it belongs to: the engine fences the
    // result to that run (and applies it once, if the activity is still pending).
    let command = h
        .state
        .resolve_activity(activity_answer(
            &old_activity,
            &old_activity.completion_token,
        ))
        .expect("fenced by its run");
    assert_eq!(
        Some(command.execution_id),
        activity_of(&old_activity)
            .orchestration_instance
            .as_ref()
            .unwrap()
            .execution_id
    );
    let garbage = h
        .state
        .resolve_activity(activity_answer(&old_activity, "not-a-token"));
    assert!(
        garbage.is_err(),
        "a token this server never issued is refused"
    );
}

#[test]
fn an_unanswered_activity_is_redelivered_only_after_its_long_timeout() {
    let mut h = Harness::new();
    let worker = Queue::default();
    h.connect(1, &worker);
    h.schedule_activity("i1", &worker);
    let first = worker.take().remove(0);
    h.advance(TURN_REDELIVERY_AFTER * 2);
    h.tick();
    assert!(worker.take().is_empty(), "activities may run long");
    h.advance(ACTIVITY_REDELIVERY_AFTER);
    h.tick();
    let again = worker.take().remove(0);
    assert_eq!(activity_of(&again).task_id, activity_of(&first).task_id);
    assert_ne!(again.completion_token, first.completion_token);
}

#[test]
fn a_full_worker_is_skipped_and_work_waits_when_every_worker_is_full() {
    let mut h = Harness::new();
    let (full, roomy) = (Queue::with_room(0), Queue::with_room(1));
    h.connect(1, &full);
    h.connect(2, &roomy);
    h.start("i1");
    h.start("i2");
    assert_eq!(roomy.take().len(), 1);
    assert_eq!(h.state.gauges().queued_turns, 1);
    *roomy.room.borrow_mut() = Some(1);
    h.tick();
    assert_eq!(
        roomy.take().len(),
        1,
        "the waiting turn goes out on the next tick"
    );
    assert_eq!(h.state.gauges().queued_turns, 0);
}

#[test]
fn a_turn_larger_than_a_worker_accepts_stalls_the_instance_instead() {
    let mut h = Harness::with_limit(16);
    let worker = Queue::default();
    h.connect(1, &worker);
    let actions = h.start("i1");
    assert!(worker.take().is_empty());
    match actions.as_slice() {
        [Action::Stall(stall)] => {
            assert_eq!(stall.instance_id, "i1");
            assert!(stall.description.contains("over the 16 bytes"));
        }
        other => panic!("expected one stall, got {other:?}"),
    }
}

fn caps(turns: usize, activities: usize) -> Arc<Caps> {
    Caps::new(turns, activities, Arc::new(tokio::sync::Notify::new()))
}

#[test]
fn a_worker_stream_holds_no_more_turns_than_its_cap_and_the_rest_wait_in_order() {
    let mut h = Harness::new();
    let capped = Queue::default();
    let stream = caps(1, 10);
    h.connect_capped(1, &capped, stream.clone());
    for id in ["i1", "i2", "i3"] {
        h.start(id);
    }
    let first = capped.take();
    assert_eq!(first.len(), 1, "one turn under a cap of one");
    assert_eq!(stream.used(CapKind::Turn), 1);
    assert_eq!(h.state.gauges().queued_turns, 2);
    h.tick();
    assert!(capped.take().is_empty(), "a tick does not break the cap");

    // Answering gives the place back; what waits goes out oldest first.
    h.answer_turn(&first[0], vec![]);
    assert!(h.state.has_waiting());
    assert!(h.state.room_freed(&h.store, h.now()).is_empty());
    let next = capped.take();
    assert_eq!(next.len(), 1);
    assert_eq!(turn_of(&next[0]).instance_id, "i2");

    // A second worker takes what the first has no room for.
    let other = Queue::default();
    h.connect(2, &other);
    let taken = other.take();
    assert_eq!(taken.len(), 1);
    assert_eq!(turn_of(&taken[0]).instance_id, "i3");
    assert!(!h.state.has_waiting());
}

#[test]
fn the_node_cap_holds_over_every_worker_and_a_disconnect_gives_places_back() {
    let node = caps(10, 1);
    let mut h = Harness::with(Settings::default(), node.clone());
    let (first, second) = (Queue::default(), Queue::default());
    h.connect(1, &first);
    h.schedule_activity("i1", &first);
    h.connect(2, &second);
    h.schedule_activity("i2", &second);
    let sent: Vec<WorkItem> = first.take().into_iter().chain(second.take()).collect();
    assert_eq!(
        sent.len(),
        1,
        "one activity in flight on the node, {sent:?}"
    );
    assert_eq!(node.used(CapKind::Activity), 1);
    assert_eq!(h.state.gauges().queued_activities, 1);

    // The holder goes away: its activity is re-sent, so the node still has one out.
    let holder = if activity_of(&sent[0])
        .orchestration_instance
        .as_ref()
        .unwrap()
        .instance_id
        == "i1"
    {
        1
    } else {
        2
    };
    h.disconnect(holder);
    let (live, live_id) = if holder == 1 {
        (&second, 2)
    } else {
        (&first, 1)
    };
    let resent = live.take();
    assert_eq!(resent.len(), 1);
    assert_eq!(node.used(CapKind::Activity), 1);

    // Its answer frees the place for the one that waited.
    h.state.activity_done(
        &activity_of(&resent[0])
            .orchestration_instance
            .as_ref()
            .unwrap()
            .instance_id,
        activity_of(&resent[0]).task_id,
        h.now(),
    );
    assert_eq!(node.used(CapKind::Activity), 0);
    h.state.room_freed(&h.store, h.now());
    assert_eq!(
        live.take().len(),
        1,
        "worker {live_id} gets the waiting activity"
    );
    assert_eq!(h.state.gauges().queued_activities, 0);
}

#[test]
fn a_history_past_its_cap_stalls_the_instance_before_the_next_turn() {
    let settings = Settings {
        max_history_events: 4,
        ..Settings::default()
    };
    let mut h = Harness::with(settings, Caps::unlimited());
    let worker = Queue::default();
    h.connect(1, &worker);
    h.schedule_activity("i1", &worker);
    let activity = worker.take().remove(0);
    let command = h
        .state
        .resolve_activity(activity_answer(&activity, &activity.completion_token))
        .unwrap();
    let effects = h.apply(Kind::CompleteActivity(command));
    // History: OrchestratorStarted, ExecutionStarted, TaskScheduled; the next turn adds
    // OrchestratorStarted and TaskCompleted: 5 > 4.
    let actions = h.state.on_effects(&effects, &h.store, h.now());
    assert!(worker.take().is_empty(), "no turn is sent");
    match actions.as_slice() {
        [Action::Stall(stall)] => {
            assert_eq!((stall.instance_id.as_str(), stall.history_len), ("i1", 3));
            assert!(
                stall.description.contains("5 events")
                    && stall.description.contains("--max-history-events"),
                "{}",
                stall.description
            );
        }
        other => panic!("expected one stall, got {other:?}"),
    }
}

#[test]
fn the_redelivery_timeouts_are_settings() {
    let settings = Settings {
        turn_redelivery: Duration::from_secs(5),
        ..Settings::default()
    };
    let mut h = Harness::with(settings, Caps::unlimited());
    let worker = Queue::default();
    h.connect(1, &worker);
    h.start("i1");
    let first = worker.take().remove(0);
    h.advance(Duration::from_secs(6));
    h.tick();
    let again = worker.take().remove(0);
    assert_ne!(again.completion_token, first.completion_token);
}

#[test]
fn a_worker_that_let_a_turn_time_out_gets_nothing_new_while_another_can_take_it() {
    let mut h = Harness::new();
    let (stuck, live) = (Queue::default(), Queue::default());
    h.connect(1, &stuck);
    h.start("i1");
    assert_eq!(stuck.take().len(), 1);
    h.connect(2, &live);
    h.advance(TURN_REDELIVERY_AFTER + Duration::from_secs(1));
    h.tick();
    let moved = live.take().remove(0);
    for id in ["i2", "i3", "i4"] {
        h.start(id);
    }
    assert!(stuck.take().is_empty(), "a suspect gets no new turns");
    assert_eq!(live.take().len(), 3);

    // Alone, a suspect still gets work (it may only have been slow) ...
    h.answer_turn(&moved, vec![]);
    h.disconnect(2);
    h.start("i5");
    assert_eq!(stuck.take().len(), 4, "the live worker's 3 and the new one");

    // ... and once its suspicion runs out it is back in the rotation.
    let other = Queue::default();
    h.connect(3, &other);
    h.advance(TURN_REDELIVERY_AFTER + Duration::from_secs(1));
    for id in ["i6", "i7"] {
        h.start(id);
    }
    assert_eq!((stuck.take().len(), other.take().len()), (1, 1));
}
