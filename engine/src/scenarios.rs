//! Scenario tests: commands in, history and effects out, on the in-memory tables.
//! Histories are compared as text, one event per line, so each test reads as a scenario.

use endure_proto::history_event::EventType;
use endure_proto::orchestrator_action::OrchestratorActionType as Action;
use endure_proto::{
    CompleteOrchestrationAction, CreateSubOrchestrationAction, CreateTimerAction, HistoryEvent,
    OrchestrationStatus, OrchestratorAction, OrchestratorResponse, ScheduleTaskAction,
    TaskFailureDetails,
};
use prost_types::Timestamp;

use crate::memory::MemoryTables;
use crate::records::command::Kind;
use crate::records::*;
use crate::work_items::{self, Turn};
use crate::{apply, Applied, Effect, EntryMeta, Outcome, RejectionCode};

struct Harness {
    tables: MemoryTables,
    now_secs: i64,
    index: u64,
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

fn sv(s: &str) -> Option<String> {
    Some(s.to_string())
}

impl Harness {
    fn new() -> Self {
        Harness {
            tables: MemoryTables::default(),
            now_secs: 1_000,
            index: 0,
        }
    }

    fn run(&mut self, kind: Kind) -> Applied {
        self.index += 1;
        self.now_secs += 1;
        let command = Command {
            leader_time: Some(ts(self.now_secs)),
            id_seed: format!("seed-{}", self.index),
            kind: Some(kind),
        };
        let applied = apply(
            &self.tables,
            &command,
            &EntryMeta {
                log_index: self.index,
            },
        )
        .unwrap();
        self.tables.commit(&applied.writes);
        applied
    }

    fn outcome(&mut self, kind: Kind) -> Outcome {
        self.run(kind).outcome.unwrap()
    }

    fn start(&mut self, id: &str, name: &str, input: Option<String>) -> Outcome {
        self.outcome(Kind::StartInstance(StartInstance {
            instance_id: id.into(),
            name: name.into(),
            input,
            ..Default::default()
        }))
    }

    fn record(&self, id: &str) -> InstanceRecord {
        self.tables
            .instances
            .get(id)
            .cloned()
            .expect("instance exists")
    }

    fn status(&self, id: &str) -> OrchestrationStatus {
        OrchestrationStatus::try_from(self.record(id).status).unwrap()
    }

    fn next_turn(&self, id: &str) -> Option<Turn> {
        let record = self.tables.instances.get(id)?;
        let history = crate::StateView::history(&self.tables, id).unwrap();
        let inbox = crate::StateView::inbox(&self.tables, id).unwrap();
        work_items::build_turn(record, history, inbox, ts(self.now_secs))
    }

    /// Dispatches the next turn and answers it with `actions`.
    fn turn(&mut self, id: &str, actions: Vec<OrchestratorAction>) -> Outcome {
        let turn = self.next_turn(id).expect("a turn is ready");
        self.answer(&turn, actions)
    }

    fn answer(&mut self, turn: &Turn, actions: Vec<OrchestratorAction>) -> Outcome {
        let response = OrchestratorResponse {
            instance_id: turn.request.instance_id.clone(),
            actions,
            ..Default::default()
        };
        self.outcome(Kind::CompleteTurn(work_items::complete_turn(
            turn, response,
        )))
    }

    fn complete_activity(&mut self, id: &str, task_id: i32, result: &str) -> Outcome {
        let execution_id = self.record(id).execution_id;
        self.outcome(Kind::CompleteActivity(CompleteActivity {
            instance_id: id.into(),
            execution_id,
            task_id,
            result: sv(result),
            failure_details: None,
        }))
    }

    fn fire_due(&mut self) -> Outcome {
        let due = self.tables.due_timers(&ts(self.now_secs + 1));
        self.outcome(Kind::FireTimers(FireTimers { timers: due }))
    }

    fn history(&self, id: &str) -> String {
        render(&crate::StateView::history(&self.tables, id).unwrap())
    }
}

fn render(events: &[HistoryEvent]) -> String {
    events.iter().map(render_one).collect::<Vec<_>>().join("\n")
}

fn render_one(event: &HistoryEvent) -> String {
    let id = event.event_id;
    match event.event_type.as_ref().unwrap() {
        EventType::OrchestratorStarted(_) => format!("{id} OrchestratorStarted"),
        EventType::ExecutionStarted(e) => format!("{id} ExecutionStarted {} {:?}", e.name, e.input),
        EventType::TaskScheduled(e) => format!("{id} TaskScheduled {}", e.name),
        EventType::TaskCompleted(e) => {
            format!("{id} TaskCompleted #{} {:?}", e.task_scheduled_id, e.result)
        }
        EventType::TaskFailed(e) => format!("{id} TaskFailed #{}", e.task_scheduled_id),
        EventType::TimerCreated(_) => format!("{id} TimerCreated"),
        EventType::TimerFired(e) => format!("{id} TimerFired #{}", e.timer_id),
        EventType::EventRaised(e) => format!("{id} EventRaised {} {:?}", e.name, e.input),
        EventType::ExecutionCompleted(e) => format!(
            "{id} ExecutionCompleted {} {:?}",
            e.orchestration_status, e.result
        ),
        EventType::ExecutionTerminated(e) => format!("{id} ExecutionTerminated {:?}", e.input),
        EventType::ExecutionSuspended(_) => format!("{id} ExecutionSuspended"),
        EventType::ExecutionResumed(_) => format!("{id} ExecutionResumed"),
        EventType::SubOrchestrationInstanceCreated(e) => {
            format!("{id} ChildCreated {}", e.instance_id)
        }
        EventType::SubOrchestrationInstanceCompleted(e) => format!(
            "{id} ChildCompleted #{} {:?}",
            e.task_scheduled_id, e.result
        ),
        EventType::SubOrchestrationInstanceFailed(e) => {
            format!("{id} ChildFailed #{}", e.task_scheduled_id)
        }
        EventType::ExecutionStalled(_) => format!("{id} ExecutionStalled"),
        other => format!("{id} {other:?}"),
    }
}

fn action(id: i32, kind: Action) -> OrchestratorAction {
    OrchestratorAction {
        id,
        orchestrator_action_type: Some(kind),
        ..Default::default()
    }
}

fn schedule(id: i32, name: &str) -> OrchestratorAction {
    action(
        id,
        Action::ScheduleTask(ScheduleTaskAction {
            name: name.into(),
            input: sv("\"in\""),
            ..Default::default()
        }),
    )
}

fn timer(id: i32, fire_at: Timestamp) -> OrchestratorAction {
    action(
        id,
        Action::CreateTimer(CreateTimerAction {
            fire_at: Some(fire_at),
            ..Default::default()
        }),
    )
}

fn complete(id: i32, status: OrchestrationStatus, result: Option<String>) -> OrchestratorAction {
    action(
        id,
        Action::CompleteOrchestration(CompleteOrchestrationAction {
            orchestration_status: status as i32,
            result,
            ..Default::default()
        }),
    )
}

fn child(id: i32, child_id: &str) -> OrchestratorAction {
    action(
        id,
        Action::CreateSubOrchestration(CreateSubOrchestrationAction {
            instance_id: child_id.into(),
            name: "Child".into(),
            ..Default::default()
        }),
    )
}

#[test]
fn activity_chain_records_every_step_once() {
    let mut h = Harness::new();
    assert_eq!(h.start("wf", "Chain", sv("1")), Outcome::OK);
    assert_eq!(h.status("wf"), OrchestrationStatus::Pending);
    let first = h.next_turn("wf").unwrap();
    assert!(first.request.past_events.is_empty());
    assert_eq!(
        first.request.new_events.len(),
        2,
        "OrchestratorStarted then ExecutionStarted"
    );
    assert_eq!(h.answer(&first, vec![schedule(1, "Add")]), Outcome::OK);
    assert_eq!(h.status("wf"), OrchestrationStatus::Running);
    assert!(
        h.next_turn("wf").is_none(),
        "nothing to do until the activity completes"
    );
    assert_eq!(h.complete_activity("wf", 1, "2"), Outcome::OK);
    let duplicate = h.complete_activity("wf", 1, "2");
    assert!(matches!(duplicate, Outcome::Rejected(r) if r.code == RejectionCode::Stale));
    assert_eq!(
        h.turn(
            "wf",
            vec![complete(2, OrchestrationStatus::Completed, sv("2"))]
        ),
        Outcome::OK
    );
    assert_eq!(h.status("wf"), OrchestrationStatus::Completed);
    assert_eq!(h.record("wf").output, sv("2"));
    assert_eq!(
        h.history("wf"),
        "-1 OrchestratorStarted\n-1 ExecutionStarted Chain Some(\"1\")\n1 TaskScheduled Add\n\
         -1 OrchestratorStarted\n-1 TaskCompleted #1 Some(\"2\")\n2 ExecutionCompleted 1 Some(\"2\")"
    );
    assert!(h.tables.activities.is_empty());
}

#[test]
fn a_turn_answered_twice_is_applied_once() {
    let mut h = Harness::new();
    h.start("wf", "W", None);
    let turn = h.next_turn("wf").unwrap();
    assert_eq!(h.answer(&turn, vec![schedule(1, "A")]), Outcome::OK);
    let again = h.answer(&turn, vec![schedule(1, "A")]);
    assert!(matches!(again, Outcome::Rejected(r) if r.code == RejectionCode::Stale));
    assert_eq!(h.record("wf").history_len, 3);
}

#[test]
fn orchestrator_started_times_strictly_increase() {
    let mut h = Harness::new();
    h.start("wf", "W", None);
    h.turn("wf", vec![timer(1, ts(0))]);
    h.fire_due();
    let second = h.next_turn("wf").unwrap();
    let first_time = h.record("wf").last_turn_at.unwrap();
    assert!(crate::time::after(&second.turn_time, &first_time));
}

#[test]
fn timers_fire_when_due_and_never_timers_stay() {
    let mut h = Harness::new();
    h.start("wf", "W", None);
    let due = ts(h.now_secs + 10);
    let never = Timestamp {
        seconds: 253_402_300_799,
        nanos: 999_999_999,
    };
    h.turn("wf", vec![timer(1, due), timer(2, never)]);
    assert_eq!(h.tables.timers.len(), 2);
    // Proposing a timer before it is due changes nothing.
    let early = h.outcome(Kind::FireTimers(FireTimers {
        timers: h.record("wf").timers.clone(),
    }));
    assert_eq!(early, Outcome::OK);
    assert_eq!(h.record("wf").inbox_len, 0);
    h.now_secs += 10;
    h.fire_due();
    assert_eq!(h.record("wf").inbox_len, 1);
    assert_eq!(h.tables.timers.len(), 1, "the 9999-12-31 timer stays armed");
    h.turn(
        "wf",
        vec![complete(3, OrchestrationStatus::Completed, None)],
    );
    assert!(h.tables.timers.is_empty(), "the run's timers go with it");
    assert!(h.history("wf").contains("TimerFired #1"));
}

#[test]
fn continue_as_new_resets_history_and_keeps_unconsumed_events() {
    let mut h = Harness::new();
    h.start("wf", "Loop", sv("0"));
    let turn = h.next_turn("wf").unwrap();
    let old_execution = h.record("wf").execution_id;
    h.outcome(Kind::RaiseEvent(RaiseEvent {
        instance_id: "wf".into(),
        name: "e".into(),
        input: sv("5"),
    }));
    h.answer(
        &turn,
        vec![complete(1, OrchestrationStatus::ContinuedAsNew, sv("1"))],
    );
    let record = h.record("wf");
    assert_ne!(record.execution_id, old_execution);
    assert_eq!(record.history_len, 0);
    assert_eq!(record.input, sv("1"));
    assert_eq!(h.status("wf"), OrchestrationStatus::Running);
    let next = h.next_turn("wf").unwrap();
    assert!(next.request.past_events.is_empty());
    let rendered = render(&next.request.new_events);
    assert_eq!(
        rendered,
        "-1 OrchestratorStarted\n-1 ExecutionStarted Loop Some(\"1\")\n-1 EventRaised e Some(\"5\")"
    );
    // A completion from the old run is fenced off.
    let stale = h.outcome(Kind::CompleteActivity(CompleteActivity {
        instance_id: "wf".into(),
        execution_id: old_execution,
        task_id: 1,
        result: None,
        failure_details: None,
    }));
    assert!(matches!(stale, Outcome::Rejected(_)));
}

#[test]
fn child_results_reach_the_parent() {
    let mut h = Harness::new();
    h.start("p", "Parent", None);
    h.turn("p", vec![child(1, "c1"), child(2, "")]);
    assert_eq!(h.status("c1"), OrchestrationStatus::Pending);
    assert!(
        h.tables.instances.contains_key("p:0002"),
        "empty child IDs are generated"
    );
    h.turn(
        "c1",
        vec![complete(1, OrchestrationStatus::Completed, sv("\"ok\""))],
    );
    h.turn(
        "p:0002",
        vec![complete(1, OrchestrationStatus::Failed, None)],
    );
    let turn = h.next_turn("p").unwrap();
    let rendered = render(&turn.request.new_events);
    assert!(
        rendered.contains("ChildCompleted #1 Some(\"\\\"ok\\\"\")"),
        "{rendered}"
    );
    assert!(rendered.contains("ChildFailed #2"), "{rendered}");
}

#[test]
fn recursive_terminate_ends_children_and_purge_removes_all() {
    let mut h = Harness::new();
    h.start("p", "Parent", None);
    h.turn("p", vec![child(1, "c")]);
    h.turn("c", vec![schedule(1, "Never")]);
    let running = h.outcome(Kind::Purge(Purge {
        instance_id: "p".into(),
        recursive: true,
    }));
    assert!(matches!(running, Outcome::Rejected(r) if r.code == RejectionCode::InvalidArgument));
    let out = h.outcome(Kind::Terminate(Terminate {
        instance_id: "p".into(),
        output: sv("\"bye\""),
        recursive: true,
    }));
    assert_eq!(out, Outcome::OK);
    assert_eq!(h.status("p"), OrchestrationStatus::Terminated);
    assert_eq!(h.status("c"), OrchestrationStatus::Terminated);
    assert_eq!(h.record("c").output, sv("\"bye\""));
    assert!(
        h.tables.activities.is_empty(),
        "the child's activity will never run"
    );
    let purged = h.outcome(Kind::Purge(Purge {
        instance_id: "p".into(),
        recursive: true,
    }));
    assert_eq!(purged, Outcome::Applied { purged: 2 });
    assert!(
        h.tables.instances.is_empty() && h.tables.history.is_empty() && h.tables.inbox.is_empty()
    );
    let missing = h.outcome(Kind::Terminate(Terminate {
        instance_id: "p".into(),
        ..Default::default()
    }));
    assert!(
        matches!(missing, Outcome::Rejected(r) if r.code == RejectionCode::NotFound && r.message.contains("no such instance exists"))
    );
}

#[test]
fn suspended_instances_run_no_turn_but_keep_events() {
    let mut h = Harness::new();
    h.start("wf", "W", None);
    h.turn("wf", vec![]);
    h.outcome(Kind::Suspend(Suspend {
        instance_id: "wf".into(),
        reason: None,
    }));
    assert_eq!(h.status("wf"), OrchestrationStatus::Suspended);
    h.outcome(Kind::RaiseEvent(RaiseEvent {
        instance_id: "wf".into(),
        name: "go".into(),
        input: None,
    }));
    assert!(h.next_turn("wf").is_none());
    h.outcome(Kind::Resume(Resume {
        instance_id: "wf".into(),
        reason: None,
    }));
    assert_eq!(h.status("wf"), OrchestrationStatus::Running);
    let turn = h.next_turn("wf").unwrap();
    assert_eq!(
        render(&turn.request.new_events),
        "-1 OrchestratorStarted\n-1 ExecutionSuspended\n-1 EventRaised go None\n-1 ExecutionResumed"
    );
}

#[test]
fn ids_are_reused_only_after_the_instance_ends() {
    let mut h = Harness::new();
    h.start("wf", "W", None);
    let again = h.start("wf", "W", None);
    assert!(
        matches!(again, Outcome::Rejected(r) if r.code == RejectionCode::AlreadyExists && r.message.contains("already exists"))
    );
    let first_execution = h.record("wf").execution_id;
    h.turn(
        "wf",
        vec![complete(1, OrchestrationStatus::Completed, None)],
    );
    assert_eq!(h.start("wf", "W", sv("2")), Outcome::OK);
    assert_ne!(h.record("wf").execution_id, first_execution);
    assert_eq!(h.record("wf").history_len, 0);
    assert_eq!(h.status("wf"), OrchestrationStatus::Pending);
}

#[test]
fn scheduled_start_waits_for_its_timer() {
    let mut h = Harness::new();
    let at = ts(h.now_secs + 60);
    let applied = h.run(Kind::StartInstance(StartInstance {
        instance_id: "wf".into(),
        name: "W".into(),
        scheduled_start: Some(at),
        ..Default::default()
    }));
    assert!(applied
        .effects
        .contains(&Effect::TimerArmed { fire_at: at }));
    assert!(h.next_turn("wf").is_none());
    h.now_secs += 60;
    h.fire_due();
    assert!(h.next_turn("wf").is_some());
}

#[test]
fn version_is_persisted_and_version_not_available_stalls() {
    let mut h = Harness::new();
    h.start("wf", "W", None);
    let turn = h.next_turn("wf").unwrap();
    let response = OrchestratorResponse {
        instance_id: "wf".into(),
        actions: vec![action(
            1,
            Action::OrchestratorVersionNotAvailable(Default::default()),
        )],
        version: Some(endure_proto::OrchestrationVersion {
            patches: vec!["p1".into()],
            name: Some("v2".into()),
        }),
        ..Default::default()
    };
    h.outcome(Kind::CompleteTurn(work_items::complete_turn(
        &turn, response,
    )));
    assert_eq!(h.status("wf"), OrchestrationStatus::Stalled);
    let history = crate::StateView::history(&h.tables, "wf").unwrap();
    let Some(EventType::OrchestratorStarted(started)) = &history[0].event_type else {
        panic!()
    };
    assert_eq!(
        started.version.as_ref().unwrap().patches,
        vec!["p1".to_string()]
    );
    let raise = h.outcome(Kind::RaiseEvent(RaiseEvent {
        instance_id: "wf".into(),
        name: "x".into(),
        input: None,
    }));
    assert!(matches!(raise, Outcome::Rejected(r) if r.message.contains("stalled")));
}

#[test]
fn failed_activity_is_recorded_as_task_failed() {
    let mut h = Harness::new();
    h.start("wf", "W", None);
    h.turn("wf", vec![schedule(1, "Boom")]);
    let execution_id = h.record("wf").execution_id;
    h.outcome(Kind::CompleteActivity(CompleteActivity {
        instance_id: "wf".into(),
        execution_id,
        task_id: 1,
        result: None,
        failure_details: Some(TaskFailureDetails {
            error_type: "ValueError".into(),
            error_message: "boom".into(),
            ..Default::default()
        }),
    }));
    let turn = h.next_turn("wf").unwrap();
    assert!(render(&turn.request.new_events).contains("TaskFailed #1"));
}

#[test]
fn status_transitions_are_reported_as_effects() {
    let mut h = Harness::new();
    let started = h.run(Kind::StartInstance(StartInstance {
        instance_id: "wf".into(),
        name: "W".into(),
        ..Default::default()
    }));
    let pending = OrchestrationStatus::Pending as i32;
    assert!(started.effects.contains(&Effect::StatusChanged {
        instance_id: "wf".into(),
        name: "W".into(),
        from: None,
        to: Some(pending),
    }));
    let turn = h.next_turn("wf").unwrap();
    let response = OrchestratorResponse {
        instance_id: "wf".into(),
        ..Default::default()
    };
    let applied = h.run(Kind::CompleteTurn(work_items::complete_turn(
        &turn, response,
    )));
    let transitions: Vec<_> = applied
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::StatusChanged { .. }))
        .collect();
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    assert!(
        matches!(transitions[0], Effect::StatusChanged { from: Some(f), to: Some(t), .. }
        if *f == pending && *t == OrchestrationStatus::Running as i32)
    );
}

#[test]
fn rerun_replays_the_turn_that_scheduled_the_event() {
    let mut h = Harness::new();
    h.start("src", "Chain", sv("1"));
    h.turn("src", vec![schedule(1, "A")]);
    h.complete_activity("src", 1, "2");
    h.turn("src", vec![schedule(2, "B")]);
    h.complete_activity("src", 2, "3");
    h.turn(
        "src",
        vec![complete(3, OrchestrationStatus::Completed, sv("3"))],
    );
    let rerun = |new_id: &str, event_id: i32| {
        Kind::Rerun(Rerun {
            source_instance_id: "src".into(),
            event_id,
            new_instance_id: new_id.into(),
            overwrite_input: false,
            input: None,
        })
    };
    assert_eq!(h.outcome(rerun("again", 2)), Outcome::OK);
    // Kept: the first turn and activity A's result; the turn that scheduled B comes again.
    assert_eq!(
        h.history("again"),
        "-1 OrchestratorStarted\n-1 ExecutionStarted Chain Some(\"1\")\n1 TaskScheduled A"
    );
    let turn = h.next_turn("again").unwrap();
    assert!(render(&turn.request.new_events).ends_with("-1 TaskCompleted #1 Some(\"2\")"));
    assert_ne!(h.record("again").execution_id, h.record("src").execution_id);
    assert_eq!(h.turn("again", vec![schedule(2, "B")]), Outcome::OK);
    assert!(
        h.tables.activities.contains_key(&("again".to_string(), 2)),
        "B runs again"
    );

    let exists = h.outcome(rerun("again", 2));
    assert!(matches!(exists, Outcome::Rejected(r) if r.code == RejectionCode::AlreadyExists));
    let not_schedulable = h.outcome(rerun("x", 3));
    assert!(
        matches!(not_schedulable, Outcome::Rejected(r) if r.code == RejectionCode::InvalidArgument)
    );
    let running = h.outcome(Kind::Rerun(Rerun {
        source_instance_id: "again".into(),
        event_id: 1,
        new_instance_id: "y".into(),
        overwrite_input: false,
        input: None,
    }));
    assert!(matches!(running, Outcome::Rejected(r) if r.code == RejectionCode::InvalidArgument));
    let missing = h.outcome(Kind::Rerun(Rerun {
        source_instance_id: "nope".into(),
        event_id: 1,
        new_instance_id: "z".into(),
        overwrite_input: false,
        input: None,
    }));
    assert!(matches!(missing, Outcome::Rejected(r) if r.code == RejectionCode::NotFound));
}

#[test]
fn rerun_from_the_first_turn_starts_over_with_a_new_input() {
    let mut h = Harness::new();
    h.start("src", "Chain", sv("1"));
    h.turn("src", vec![schedule(1, "A")]);
    h.complete_activity("src", 1, "2");
    h.turn(
        "src",
        vec![complete(2, OrchestrationStatus::Completed, sv("2"))],
    );
    let kind = Kind::Rerun(Rerun {
        source_instance_id: "src".into(),
        event_id: 1,
        new_instance_id: "fresh".into(),
        overwrite_input: true,
        input: sv("10"),
    });
    assert_eq!(h.outcome(kind), Outcome::OK);
    assert_eq!(h.history("fresh"), "");
    assert_eq!(h.status("fresh"), OrchestrationStatus::Pending);
    let turn = h.next_turn("fresh").unwrap();
    assert_eq!(
        render(&turn.request.new_events),
        "-1 OrchestratorStarted\n-1 ExecutionStarted Chain Some(\"10\")"
    );
}

#[test]
fn an_oversized_turn_stalls_the_instance_once() {
    let mut h = Harness::new();
    h.start("wf", "W", None);
    let turn = h.next_turn("wf").unwrap();
    let stall = |history_len| {
        Kind::StallForPayload(StallForPayload {
            instance_id: "wf".into(),
            execution_id: turn.execution_id.clone(),
            history_len,
            description: "too large".into(),
        })
    };
    assert_eq!(h.outcome(stall(turn.history_len)), Outcome::OK);
    assert_eq!(h.status("wf"), OrchestrationStatus::Stalled);
    assert!(h.history("wf").ends_with("ExecutionStalled"));
    assert!(
        h.next_turn("wf").is_none(),
        "no turn is sent to a payload-stalled instance"
    );
    let again = h.outcome(stall(h.record("wf").history_len));
    assert!(matches!(again, Outcome::Rejected(r) if r.code == RejectionCode::Stale));
    let ended = h.outcome(Kind::Terminate(Terminate {
        instance_id: "wf".into(),
        output: None,
        recursive: false,
    }));
    assert_eq!(ended, Outcome::OK);
    assert_eq!(h.status("wf"), OrchestrationStatus::Terminated);
}
