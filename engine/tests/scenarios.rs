//! Engine scenarios: commands in, history and effects out, on the in-memory tables.
//!
//! Most scenarios are text files in `tests/scenarios/*.txt`, run by [`runner`] (see there
//! for the commands; `ENDURE_REWRITE_SCENARIOS=1` rewrites their expected output). The
//! few Rust tests below check what a file does not show: timestamps and
//! invariants.

#[path = "scenarios/answers.rs"]
mod answers;
#[path = "scenarios/harness.rs"]
mod harness;
#[path = "scenarios/runner.rs"]
mod runner;

use endure_engine::records::command::Kind;
use endure_engine::records::{ActivityRecord, CompleteActivity};
use endure_engine::Error;
use endure_proto::orchestrator_action::OrchestratorActionType as Action;
use endure_proto::{CreateTimerAction, OrchestratorAction};

use harness::{ts, Harness};

/// One test per scenario file, named as the file.
macro_rules! scenario_files {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                runner::run_file(stringify!($name));
            }
        )*

        /// A file that is not listed here would never run.
        #[test]
        fn every_scenario_file_is_listed() {
            let listed = [$(stringify!($name)),*];
            for entry in std::fs::read_dir(runner::folder()).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "txt") {
                    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                    assert!(listed.contains(&stem.as_str()), "{stem}.txt is not listed");
                }
            }
        }
    };
}

scenario_files!(
    activity_chain,
    activity_failure,
    child_workflow,
    continue_as_new,
    external_event_after_wait,
    external_event_before_wait,
    id_reuse,
    inbox_cap,
    outbox,
    payload_stall,
    rerun,
    scheduled_start,
    send_event,
    stale_activity_result,
    suspend_resume,
    terminate_and_purge,
    timers,
    turn_fences,
    version_not_available,
);

fn timer(id: i32, seconds: i64) -> OrchestratorAction {
    OrchestratorAction {
        id,
        orchestrator_action_type: Some(Action::CreateTimer(CreateTimerAction {
            fire_at: Some(ts(seconds)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[test]
fn orchestrator_started_times_strictly_increase_even_when_the_clock_does_not() {
    let mut h = Harness::default();
    h.start("wf", "W", None);
    h.turn("wf", vec![timer(1, 0)]);
    h.fire_due();
    let first = h.record("wf").last_turn_at.unwrap();
    // The dispatcher's clock reads earlier than the last turn: the turn is still later.
    h.now_secs = first.seconds - 10;
    let second = h.next_turn("wf").unwrap();
    assert!(endure_engine::time::after(&second.turn_time, &first));
    assert_eq!(second.turn_time.seconds, first.seconds);
    assert_eq!(
        second.turn_time.nanos,
        first.nanos + 1_000,
        "one microsecond later"
    );
}

/// Every path that gives an instance a new run drops the old run's activity rows, so a
/// row of another run under the current one is corrupt state, not a stale result.
#[test]
fn an_activity_row_of_another_run_is_corruption() {
    let mut h = Harness::default();
    h.start("wf", "W", None);
    let execution_id = h.record("wf").execution_id;
    let row = ActivityRecord {
        name: "A".into(),
        execution_id: "an-older-run".into(),
        ..Default::default()
    };
    h.tables.activities.insert(("wf".into(), 1), row);
    let applied = h.try_run(Kind::CompleteActivity(CompleteActivity {
        instance_id: "wf".into(),
        execution_id,
        task_id: 1,
        result: None,
        failure_details: None,
    }));
    assert!(matches!(applied, Err(Error::Corruption(_))), "{applied:?}");
}
