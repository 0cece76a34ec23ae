//! The test harness: commands applied to the in-memory tables, one log entry each, with the
//! leader's clock one second later per entry; and the text rendering of histories, effects
//! and outcomes that the scenario files compare.

use std::collections::BTreeMap;

use endure_engine::memory::MemoryTables;
use endure_engine::records::command::Kind;
use endure_engine::records::{
    AckOutbox, DeliverMessages, FireTimers, InstanceRecord, OutboxEntry, StartInstance,
};
use endure_engine::work_items::{self, Turn};
use endure_engine::{apply, Applied, Command, Effect, EntryMeta, Error, Outcome, StateView};
use endure_proto::history_event::EventType;
use endure_proto::{
    HistoryEvent, OrchestrationStatus, OrchestratorAction, OrchestratorResponse, StalledReason,
    TaskFailureDetails,
};
use prost_types::Timestamp;

/// Seconds of the leader's clock before the first command.
pub const START_SECS: i64 = 1_000;

/// 9999-12-31T23:59:59.999999999Z, the SDKs' "never" for timers that must not fire.
pub const NEVER: Timestamp = Timestamp {
    seconds: 253_402_300_799,
    nanos: 999_999_999,
};

/// A timestamp at whole seconds.
pub fn ts(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// The tables, the leader's clock and the log index; and every run each instance had.
pub struct Harness {
    /// The state machine's tables.
    pub tables: MemoryTables,
    /// The leader's clock: the last entry's time, in seconds.
    pub now_secs: i64,
    index: u64,
    runs: BTreeMap<String, Vec<String>>,
    /// The last delivery the relay made, to repeat it.
    pub last_delivery: Option<DeliverMessages>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness {
            tables: MemoryTables::default(),
            now_secs: START_SECS,
            index: 0,
            runs: BTreeMap::new(),
            last_delivery: None,
        }
    }
}

impl Harness {
    /// Applies one command as the next log entry and commits its writes.
    pub fn run(&mut self, kind: Kind) -> Applied {
        self.try_run(kind).expect("apply succeeds")
    }

    /// Applies one command; an error (corrupt state) commits nothing.
    pub fn try_run(&mut self, kind: Kind) -> Result<Applied, Error> {
        self.index += 1;
        self.now_secs += 1;
        let command = Command {
            leader_time: Some(ts(self.now_secs)),
            id_seed: format!("seed-{}", self.index),
            kind: Some(kind),
        };
        let meta = EntryMeta {
            log_index: self.index,
        };
        let applied = apply(&self.tables, &command, &meta)?;
        self.tables.commit(&applied.writes);
        self.note_runs();
        Ok(applied)
    }

    /// Applies one command; only its outcome.
    pub fn outcome(&mut self, kind: Kind) -> Outcome {
        self.run(kind).outcome.expect("apply always answers")
    }

    fn note_runs(&mut self) {
        for (id, record) in &self.tables.instances {
            let runs = self.runs.entry(id.clone()).or_default();
            if runs.last() != Some(&record.execution_id) {
                runs.push(record.execution_id.clone());
            }
        }
    }

    /// Execution ID of the instance's `run`-th run (from 1), in the order they appeared.
    pub fn execution_id(&self, instance_id: &str, run: usize) -> String {
        self.runs
            .get(instance_id)
            .and_then(|runs| runs.get(run.checked_sub(1)?))
            .cloned()
            .unwrap_or_else(|| format!("no run {run} of {instance_id}"))
    }

    /// Which run (from 1) an execution ID is.
    pub fn run_number(&self, instance_id: &str, execution_id: &str) -> usize {
        self.runs
            .get(instance_id)
            .and_then(|runs| runs.iter().position(|e| e == execution_id))
            .map_or(0, |i| i + 1)
    }

    /// Starts a workflow now.
    pub fn start(&mut self, id: &str, name: &str, input: Option<String>) -> Outcome {
        self.outcome(Kind::StartInstance(StartInstance {
            instance_id: id.into(),
            name: name.into(),
            input,
            ..Default::default()
        }))
    }

    /// The instance's record; panics if it does not exist.
    pub fn record(&self, id: &str) -> InstanceRecord {
        self.tables
            .instances
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("instance {id} exists"))
    }

    /// The turn the dispatcher would send now, if one is ready.
    pub fn next_turn(&self, id: &str) -> Option<Turn> {
        let record = self.tables.instances.get(id)?;
        let history = self.tables.history(id).expect("memory reads");
        let inbox = self.tables.inbox(id).expect("memory reads");
        work_items::build_turn(record, history, inbox, ts(self.now_secs))
    }

    /// Builds the next turn and answers it with `actions`.
    pub fn turn(&mut self, id: &str, actions: Vec<OrchestratorAction>) -> Applied {
        let turn = self.next_turn(id).expect("a turn is ready");
        self.answer(&turn, actions)
    }

    /// Answers a turn built earlier with `actions`.
    pub fn answer(&mut self, turn: &Turn, actions: Vec<OrchestratorAction>) -> Applied {
        let response = OrchestratorResponse {
            instance_id: turn.request.instance_id.clone(),
            actions,
            ..Default::default()
        };
        self.answer_with(turn, response)
    }

    /// Answers a turn built earlier with a whole response.
    pub fn answer_with(&mut self, turn: &Turn, response: OrchestratorResponse) -> Applied {
        let done = work_items::complete_turn(turn, response);
        self.run(Kind::CompleteTurn(done))
    }

    /// Proposes the timers due by the next entry's time, as the timer service does.
    pub fn fire_due(&mut self) -> Applied {
        let due = self.tables.due_timers(&ts(self.now_secs + 1));
        self.run(Kind::FireTimers(FireTimers { timers: due }))
    }

    /// Delivers the outbox as the leader's relay does (one shard: every target is here)
    /// until it is empty, a delivery then an acknowledgement per round; what each did.
    pub fn relay(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(upto) = self.tables.outbox.keys().next_back().copied() {
            let entries: Vec<OutboxEntry> = (self.tables.outbox.iter())
                .map(|(seq, message)| OutboxEntry {
                    seq: *seq,
                    message: Some(message.clone()),
                })
                .collect();
            let first = entries[0].seq;
            lines.push(format!("outbox: deliver #{first}..#{upto}"));
            let deliver = DeliverMessages {
                source_shard: 0,
                entries,
            };
            self.last_delivery = Some(deliver.clone());
            lines.extend(render_applied(&self.run(Kind::DeliverMessages(deliver))));
            let acked = self.run(Kind::AckOutbox(AckOutbox { upto_seq: upto }));
            lines.push(format!(
                "outbox: ack #{upto}: {}",
                render_outcome(&acked.outcome)
            ));
        }
        lines
    }

    /// The committed history of the instance's current run.
    pub fn history(&self, id: &str) -> Vec<HistoryEvent> {
        self.tables.history(id).expect("memory reads")
    }
}

/// A status by its proto name without the prefix: `RUNNING`, `CONTINUED_AS_NEW`.
pub fn status_name(status: i32) -> String {
    match OrchestrationStatus::try_from(status) {
        Ok(status) => status
            .as_str_name()
            .trim_start_matches("ORCHESTRATION_STATUS_")
            .to_string(),
        Err(_) => format!("UNKNOWN({status})"),
    }
}

/// The status named as [`status_name`] renders it.
pub fn parse_status(name: &str) -> Option<OrchestrationStatus> {
    OrchestrationStatus::from_str_name(&format!("ORCHESTRATION_STATUS_{name}"))
}

/// ` key=value` for a payload that is there, nothing for one that is not.
fn payload(key: &str, value: &Option<String>) -> String {
    value
        .as_ref()
        .map(|v| format!(" {key}={v}"))
        .unwrap_or_default()
}

/// A time as seconds, or `never`.
pub fn time(at: &Option<Timestamp>) -> String {
    match at {
        Some(at) if *at == NEVER => "never".to_string(),
        Some(at) if at.nanos == 0 => format!("@{}", at.seconds),
        Some(at) => format!("@{}.{:09}", at.seconds, at.nanos),
        None => "@-".to_string(),
    }
}

fn failure(details: &Option<TaskFailureDetails>) -> String {
    details
        .as_ref()
        .map(|f| format!(" failure={}: {}", f.error_type, f.error_message))
        .unwrap_or_default()
}

/// One history event per line: its eventId, its kind and what it carries.
pub fn render_event(event: &HistoryEvent) -> String {
    let what = match event.event_type.as_ref() {
        None => "(no event type)".to_string(),
        Some(kind) => render_kind(kind),
    };
    format!("{} {what}", event.event_id)
}

fn render_kind(kind: &EventType) -> String {
    match kind {
        EventType::OrchestratorStarted(e) => match &e.version {
            Some(v) => format!(
                "OrchestratorStarted version={} patches={}",
                v.name.as_deref().unwrap_or("-"),
                v.patches.join(",")
            ),
            None => "OrchestratorStarted".to_string(),
        },
        EventType::ExecutionStarted(e) => {
            let parent = e
                .parent_instance
                .as_ref()
                .and_then(|p| {
                    let instance = p.orchestration_instance.as_ref()?;
                    Some(format!(
                        " parent={}#{}",
                        instance.instance_id, p.task_scheduled_id
                    ))
                })
                .unwrap_or_default();
            format!(
                "ExecutionStarted {}{}{parent}",
                e.name,
                payload("input", &e.input)
            )
        }
        EventType::TaskScheduled(e) => {
            format!("TaskScheduled {}{}", e.name, payload("input", &e.input))
        }
        EventType::TaskCompleted(e) => format!(
            "TaskCompleted #{}{}",
            e.task_scheduled_id,
            payload("result", &e.result)
        ),
        EventType::TaskFailed(e) => format!(
            "TaskFailed #{}{}",
            e.task_scheduled_id,
            failure(&e.failure_details)
        ),
        EventType::TimerCreated(e) => format!("TimerCreated {}", time(&e.fire_at)),
        EventType::TimerFired(e) => format!("TimerFired #{} {}", e.timer_id, time(&e.fire_at)),
        EventType::EventRaised(e) => {
            format!("EventRaised {}{}", e.name, payload("input", &e.input))
        }
        EventType::EventSent(e) => format!(
            "EventSent {} {}{}",
            e.instance_id,
            e.name,
            payload("input", &e.input)
        ),
        EventType::ExecutionCompleted(e) => format!(
            "ExecutionCompleted {}{}{}",
            status_name(e.orchestration_status),
            payload("result", &e.result),
            failure(&e.failure_details)
        ),
        EventType::ExecutionTerminated(e) => {
            let recursive = if e.recurse { " recursive" } else { "" };
            format!(
                "ExecutionTerminated{}{recursive}",
                payload("output", &e.input)
            )
        }
        EventType::ExecutionSuspended(e) => {
            format!("ExecutionSuspended{}", payload("reason", &e.input))
        }
        EventType::ExecutionResumed(e) => {
            format!("ExecutionResumed{}", payload("reason", &e.input))
        }
        EventType::SubOrchestrationInstanceCreated(e) => format!(
            "ChildCreated {} {}{}",
            e.instance_id,
            e.name,
            payload("input", &e.input)
        ),
        EventType::SubOrchestrationInstanceCompleted(e) => format!(
            "ChildCompleted #{}{}",
            e.task_scheduled_id,
            payload("result", &e.result)
        ),
        EventType::SubOrchestrationInstanceFailed(e) => format!(
            "ChildFailed #{}{}",
            e.task_scheduled_id,
            failure(&e.failure_details)
        ),
        EventType::ExecutionStalled(e) => {
            let reason = StalledReason::try_from(e.reason)
                .map(|r| r.as_str_name().to_string())
                .unwrap_or_else(|_| e.reason.to_string());
            format!(
                "ExecutionStalled {reason}{}",
                payload("description", &e.description)
            )
        }
        other => format!("{other:?}"),
    }
}

/// The outcome on one line: `ok`, `ok purged=N`, or `rejected Code: message`.
pub fn render_outcome(outcome: &Option<Outcome>) -> String {
    match outcome {
        Some(Outcome::Applied { purged: 0 }) => "ok".to_string(),
        Some(Outcome::Applied { purged }) => format!("ok purged={purged}"),
        Some(Outcome::Rejected(r)) => format!("rejected {:?}: {}", r.code, r.message),
        None => "no outcome".to_string(),
    }
}

/// One effect per line, prefixed `effect`.
pub fn render_effect(effect: &Effect) -> String {
    let status = |s: &Option<i32>| s.map_or("-".to_string(), status_name);
    let what = match effect {
        Effect::InstanceChanged { instance_id } => format!("InstanceChanged {instance_id}"),
        Effect::ActivityScheduled {
            instance_id,
            task_id,
        } => format!("ActivityScheduled {instance_id} #{task_id}"),
        Effect::TimerArmed { fire_at } => format!("TimerArmed {}", time(&Some(*fire_at))),
        Effect::OutboxAppended => "OutboxAppended".to_string(),
        Effect::StatusChanged {
            instance_id,
            name,
            from,
            to,
        } => format!(
            "StatusChanged {instance_id} ({name}) {} -> {}",
            status(from),
            status(to)
        ),
    };
    format!("effect {what}")
}

/// What applying one command did: the outcome, then its effects; or the error.
pub fn render_result(result: &Result<Applied, Error>) -> Vec<String> {
    match result {
        Ok(applied) => render_applied(applied),
        Err(error) => vec![format!("error: {error}")],
    }
}

/// What applying one command did: the outcome, then its effects.
pub fn render_applied(applied: &Applied) -> Vec<String> {
    let mut lines = vec![render_outcome(&applied.outcome)];
    lines.extend(applied.effects.iter().map(render_effect));
    lines
}
