//! A tiny deterministic orchestrator runner, in the way the Dapr SDKs replay: the whole
//! history of the run (pastEvents + newEvents) is folded into a [`Replay`], the workflow
//! function runs against it from the start, and each step it takes gets the next sequence
//! number as its action ID (the server stores the event under that ID). Steps whose ID
//! the history already holds were sent in an earlier turn; only the others go out now.
//! Because the workflow is a pure function of the history, replaying a history always
//! yields the same actions (what P4's determinism check relies on).

use std::collections::{BTreeMap, BTreeSet};

use endure_proto::history_event::EventType;
use endure_proto::orchestrator_action::OrchestratorActionType;
use endure_proto::{
    create_timer_action, CompleteOrchestrationAction, CreateSubOrchestrationAction,
    CreateTimerAction, HistoryEvent, OrchestrationStatus, OrchestratorAction, ScheduleTaskAction,
    TimerOriginCreateTimer,
};
use serde_json::{json, Value};

use super::workflows;
use crate::decode::{timestamp, timestamp_ns};

/// The result of a task or child: the output text, or the failure message.
pub type TaskResult = Result<String, String>;

/// What the history of one run says, folded.
#[derive(Debug, Default)]
pub struct Replay {
    pub instance_id: String,
    pub name: String,
    pub input: Value,
    /// Timestamp of the first OrchestratorStarted: the run's deterministic "start".
    pub start_ns: i128,
    /// Event IDs of actions the history already holds (scheduled, timers, children).
    pub scheduled: BTreeSet<i32>,
    pub results: BTreeMap<i32, TaskResult>,
    pub fired: BTreeSet<i32>,
    /// Raised events in history order: (name, payload).
    pub raised: Vec<(String, Option<String>)>,
    pub suspended: bool,
    /// `Some(output)` once an ExecutionTerminated was seen.
    pub terminated: Option<Option<String>>,
    pub completed: bool,
}

impl Replay {
    pub fn fold<'a>(instance_id: &str, events: impl IntoIterator<Item = &'a HistoryEvent>) -> Self {
        let mut r = Replay {
            instance_id: instance_id.to_owned(),
            input: Value::Null,
            ..Default::default()
        };
        for event in events {
            r.apply(event);
        }
        r
    }

    fn apply(&mut self, event: &HistoryEvent) {
        let Some(kind) = &event.event_type else {
            return;
        };
        match kind {
            EventType::OrchestratorStarted(_) if self.start_ns == 0 => {
                self.start_ns = timestamp_ns(event.timestamp.as_ref());
            }
            EventType::ExecutionStarted(e) => {
                self.name = e.name.clone();
                self.input = e
                    .input
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null);
            }
            EventType::TaskScheduled(_)
            | EventType::TimerCreated(_)
            | EventType::SubOrchestrationInstanceCreated(_) => {
                self.scheduled.insert(event.event_id);
            }
            EventType::TaskCompleted(e) => {
                let out = e.result.clone().unwrap_or_else(|| "null".into());
                self.results.entry(e.task_scheduled_id).or_insert(Ok(out));
            }
            EventType::TaskFailed(e) => {
                let why = e.failure_details.as_ref().map(|f| f.error_message.clone());
                self.results
                    .entry(e.task_scheduled_id)
                    .or_insert(Err(why.unwrap_or_default()));
            }
            EventType::SubOrchestrationInstanceCompleted(e) => {
                let out = e.result.clone().unwrap_or_else(|| "null".into());
                self.results.entry(e.task_scheduled_id).or_insert(Ok(out));
            }
            EventType::SubOrchestrationInstanceFailed(e) => {
                let why = e.failure_details.as_ref().map(|f| f.error_message.clone());
                self.results
                    .entry(e.task_scheduled_id)
                    .or_insert(Err(why.unwrap_or_default()));
            }
            EventType::TimerFired(e) => {
                self.fired.insert(e.timer_id);
            }
            EventType::EventRaised(e) => self.raised.push((e.name.clone(), e.input.clone())),
            EventType::ExecutionSuspended(_) => self.suspended = true,
            EventType::ExecutionResumed(_) => self.suspended = false,
            EventType::ExecutionTerminated(e) => self.terminated = Some(e.input.clone()),
            EventType::ExecutionCompleted(_) => self.completed = true,
            _ => {}
        }
    }
}

/// What a workflow function sees and does: each step takes the next action ID.
pub struct Ctx<'a> {
    pub replay: &'a Replay,
    next_id: i32,
    actions: Vec<OrchestratorAction>,
    done: bool,
}

impl<'a> Ctx<'a> {
    fn new(replay: &'a Replay) -> Self {
        Ctx {
            replay,
            next_id: 1,
            actions: Vec::new(),
            done: false,
        }
    }

    fn step(&mut self, action: OrchestratorActionType) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        if !self.replay.scheduled.contains(&id) && !self.done {
            self.actions.push(OrchestratorAction {
                id,
                router: None,
                orchestrator_action_type: Some(action),
            });
        }
        id
    }

    /// Schedules an activity; its result once recorded.
    pub fn activity(&mut self, name: &str, input: String) -> Option<&'a TaskResult> {
        let id = self.step(OrchestratorActionType::ScheduleTask(ScheduleTaskAction {
            name: name.to_owned(),
            input: Some(input),
            ..Default::default()
        }));
        self.replay.results.get(&id)
    }

    /// Creates a child workflow with a deterministic ID; its result once recorded.
    pub fn child(&mut self, name: &str, input: String) -> Option<&'a TaskResult> {
        let id = self.next_id;
        let instance_id = format!("{}:{id:04x}", self.replay.instance_id);
        let id = self.step(OrchestratorActionType::CreateSubOrchestration(
            CreateSubOrchestrationAction {
                instance_id,
                name: name.to_owned(),
                input: Some(input),
                ..Default::default()
            },
        ));
        self.replay.results.get(&id)
    }

    /// Arms a timer due at `fire_at_ns`; whether it has fired.
    pub fn timer(&mut self, fire_at_ns: i128) -> bool {
        let id = self.step(OrchestratorActionType::CreateTimer(CreateTimerAction {
            fire_at: Some(timestamp(fire_at_ns)),
            name: None,
            origin: Some(create_timer_action::Origin::CreateTimer(
                TimerOriginCreateTimer {},
            )),
        }));
        self.replay.fired.contains(&id)
    }

    /// Ends the run with `status` and `result`; later steps are ignored.
    pub fn finish(&mut self, status: OrchestrationStatus, result: Option<String>) {
        self.step(OrchestratorActionType::CompleteOrchestration(
            CompleteOrchestrationAction {
                orchestration_status: status as i32,
                result,
                ..Default::default()
            },
        ));
        self.done = true;
    }
}

/// The actions of this turn for the run whose history is `events`.
pub fn decide<'a>(
    instance_id: &str,
    events: impl IntoIterator<Item = &'a HistoryEvent>,
) -> Vec<OrchestratorAction> {
    let replay = Replay::fold(instance_id, events);
    let mut ctx = Ctx::new(&replay);
    if replay.completed {
        return Vec::new();
    }
    if let Some(output) = &replay.terminated {
        // Replay the steps so the completion takes the next free ID.
        workflows::run(&replay.name, &mut ctx);
        ctx.actions.clear();
        ctx.done = false;
        ctx.finish(OrchestrationStatus::Terminated, output.clone());
        return ctx.actions;
    }
    if replay.suspended {
        return Vec::new();
    }
    if !workflows::run(&replay.name, &mut ctx) {
        let why = json!({ "error": format!("unknown workflow {:?}", replay.name) });
        ctx.finish(OrchestrationStatus::Failed, Some(why.to_string()));
    }
    ctx.actions
}
