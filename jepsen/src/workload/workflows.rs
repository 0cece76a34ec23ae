//! The workflow functions the test worker runs, each a pure function of the replayed
//! history ([`Ctx`]): what they do is chosen to exercise one property family each.
//!
//! - `chain`: N sequential activities, each output the next input (P4, P5).
//! - `fanout`: 20 parallel activities plus one child `chain` (P5 at scale, children).
//! - `timers`: one timer from the input's `delay_ms`, then activity `after-timer` with
//!   `fire_at_ns` in its input (P6).
//! - `events`: consumes M events named `e`, completes with their seqs in order (P7).
//! - `control`: a long loop of timer + activity for terminate / suspend / purge (P8).

use endure_proto::OrchestrationStatus;
use serde_json::{json, Value};

use super::orchestrator::Ctx;

/// Activities a `fanout` runs in parallel.
pub const FANOUT_WIDTH: u64 = 20;
/// Pause between two `control` ticks, ms.
pub const CONTROL_TICK_MS: i128 = 2_000;
/// The event name `events` waits for.
pub const EVENT_NAME: &str = "e";

/// The workflow names the worker knows.
pub const NAMES: [&str; 5] = ["chain", "fanout", "timers", "events", "control"];

/// Runs the workflow `name`; false if there is none by that name.
pub fn run(name: &str, ctx: &mut Ctx<'_>) -> bool {
    match name {
        "chain" => chain(ctx),
        "fanout" => fanout(ctx),
        "timers" => timers(ctx),
        "events" => events(ctx),
        "control" => control(ctx),
        _ => return false,
    }
    true
}

fn field(ctx: &Ctx<'_>, name: &str, default: u64) -> u64 {
    ctx.replay
        .input
        .get(name)
        .and_then(Value::as_u64)
        .unwrap_or(default)
}

fn fail(ctx: &mut Ctx<'_>, why: &str) {
    let output = json!({ "error": why }).to_string();
    ctx.finish(OrchestrationStatus::Failed, Some(output));
}

fn chain(ctx: &mut Ctx<'_>) {
    let steps = field(ctx, "n", 3);
    let mut previous = ctx.replay.input.to_string();
    for _ in 0..steps {
        match ctx.activity("step", previous) {
            None => return,
            Some(Ok(output)) => previous = output.clone(),
            Some(Err(why)) => return fail(ctx, why),
        }
    }
    ctx.finish(OrchestrationStatus::Completed, Some(previous));
}

fn fanout(ctx: &mut Ctx<'_>) {
    let results: Vec<_> = (0..FANOUT_WIDTH)
        .map(|i| ctx.activity("fan", json!({ "i": i }).to_string()))
        .collect();
    let child = ctx.child("chain", json!({ "n": 2 }).to_string());
    if results.iter().any(Option::is_none) || child.is_none() {
        return;
    }
    let ok = results.iter().filter(|r| matches!(r, Some(Ok(_)))).count();
    let child = match child {
        Some(Ok(output)) => Value::String(output.clone()),
        _ => Value::Null,
    };
    let output = json!({ "fan": ok, "child": child }).to_string();
    ctx.finish(OrchestrationStatus::Completed, Some(output));
}

fn timers(ctx: &mut Ctx<'_>) {
    let delay_ms = field(ctx, "delay_ms", 1_000) as i128;
    let fire_at_ns = ctx.replay.start_ns + delay_ms * 1_000_000;
    if !ctx.timer(fire_at_ns) {
        return;
    }
    let input = json!({ "fire_at_ns": fire_at_ns as i64, "delay_ms": delay_ms as i64 });
    match ctx.activity("after-timer", input.to_string()) {
        None => {}
        Some(Ok(output)) => ctx.finish(OrchestrationStatus::Completed, Some(output.clone())),
        Some(Err(why)) => fail(ctx, why),
    }
}

fn events(ctx: &mut Ctx<'_>) {
    let wanted = field(ctx, "m", 5) as usize;
    let seqs: Vec<Value> = ctx
        .replay
        .raised
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(EVENT_NAME))
        .map(|(_, payload)| {
            payload
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .and_then(|p| p.get("seq").cloned())
                .unwrap_or(Value::Null)
        })
        // A raise retried after an ambiguous answer may arrive twice (RaiseEvent has no
        // idempotency key): a seq seen already is dropped, as an application keyed by
        // its payload would.
        .fold(Vec::new(), |mut kept: Vec<Value>, seq| {
            if !kept.contains(&seq) {
                kept.push(seq);
            }
            kept
        })
        .into_iter()
        .take(wanted)
        .collect();
    if seqs.len() == wanted {
        let output = Value::Array(seqs).to_string();
        ctx.finish(OrchestrationStatus::Completed, Some(output));
    }
}

fn control(ctx: &mut Ctx<'_>) {
    let ticks = field(ctx, "ticks", 20);
    let start = ctx.replay.start_ns;
    for k in 0..ticks {
        if !ctx.timer(start + (k as i128 + 1) * CONTROL_TICK_MS * 1_000_000) {
            return;
        }
        match ctx.activity("tick", json!({ "k": k }).to_string()) {
            None => return,
            Some(Ok(_)) => {}
            Some(Err(why)) => return fail(ctx, why),
        }
    }
    let output = json!({ "ticks": ticks }).to_string();
    ctx.finish(OrchestrationStatus::Completed, Some(output));
}

#[cfg(test)]
mod tests {
    use endure_proto::history_event::EventType;
    use endure_proto::orchestrator_action::OrchestratorActionType as A;
    use endure_proto::*;

    use super::super::orchestrator::decide;
    use crate::decode::timestamp;

    fn ev(id: i32, kind: EventType) -> HistoryEvent {
        HistoryEvent {
            event_id: id,
            timestamp: Some(timestamp(1_000_000_000)),
            router: None,
            event_type: Some(kind),
        }
    }

    fn started(name: &str, input: &str) -> Vec<HistoryEvent> {
        vec![
            ev(-1, EventType::OrchestratorStarted(Default::default())),
            ev(
                -1,
                EventType::ExecutionStarted(ExecutionStartedEvent {
                    name: name.into(),
                    input: Some(input.into()),
                    ..Default::default()
                }),
            ),
        ]
    }

    #[test]
    fn chain_schedules_one_step_at_a_time_and_completes() {
        let mut h = started("chain", r#"{"n":2}"#);
        let a = decide("c1", &h);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].id, 1);
        h.push(ev(
            1,
            EventType::TaskScheduled(TaskScheduledEvent {
                name: "step".into(),
                ..Default::default()
            }),
        ));
        assert!(decide("c1", &h).is_empty());
        h.push(ev(
            -1,
            EventType::TaskCompleted(TaskCompletedEvent {
                task_scheduled_id: 1,
                result: Some("\"r1\"".into()),
                ..Default::default()
            }),
        ));
        let a = decide("c1", &h);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].id, 2);
        match &a[0].orchestrator_action_type {
            Some(A::ScheduleTask(t)) => assert_eq!(t.input.as_deref(), Some("\"r1\"")),
            other => panic!("{other:?}"),
        }
        h.push(ev(2, EventType::TaskScheduled(Default::default())));
        h.push(ev(
            -1,
            EventType::TaskCompleted(TaskCompletedEvent {
                task_scheduled_id: 2,
                result: Some("\"r2\"".into()),
                ..Default::default()
            }),
        ));
        let a = decide("c1", &h);
        assert_eq!(a[0].id, 3);
        match &a[0].orchestrator_action_type {
            Some(A::CompleteOrchestration(c)) => assert_eq!(c.result.as_deref(), Some("\"r2\"")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fanout_first_turn_has_twenty_tasks_and_a_child() {
        let a = decide("f1", &started("fanout", "{}"));
        assert_eq!(a.len(), 21);
        match &a[20].orchestrator_action_type {
            Some(A::CreateSubOrchestration(c)) => assert_eq!(c.instance_id, "f1:0015"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_complete_with_seqs_in_order_and_wait_while_suspended() {
        let mut h = started("events", r#"{"m":2}"#);
        for seq in [1, 2] {
            h.push(ev(
                -1,
                EventType::EventRaised(EventRaisedEvent {
                    name: "e".into(),
                    input: Some(format!(r#"{{"seq":{seq},"sender":0}}"#)),
                }),
            ));
        }
        let mut suspended = h.clone();
        suspended.insert(2, ev(-1, EventType::ExecutionSuspended(Default::default())));
        assert!(decide("e1", &suspended).is_empty());
        let a = decide("e1", &h);
        match &a[0].orchestrator_action_type {
            Some(A::CompleteOrchestration(c)) => assert_eq!(c.result.as_deref(), Some("[1,2]")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_workflow_fails() {
        let a = decide("x", &started("nope", "{}"));
        match &a[0].orchestrator_action_type {
            Some(A::CompleteOrchestration(c)) => {
                assert_eq!(c.orchestration_status, OrchestrationStatus::Failed as i32)
            }
            other => panic!("{other:?}"),
        }
    }
}
