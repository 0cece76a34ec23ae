//! The worker's side of a scenario: the answer to a turn, one action per input line (the
//! actions are listed in the runner's module doc).

use endure_engine::work_items::Turn;
use endure_proto::orchestrator_action::OrchestratorActionType as Action;
use endure_proto::{
    CompleteOrchestrationAction, CreateDetachedWorkflowAction, CreateSubOrchestrationAction,
    CreateTimerAction, OrchestrationInstance, OrchestrationVersion, OrchestratorAction,
    OrchestratorResponse, ScheduleTaskAction, SendEventAction, TaskFailureDetails,
    TerminateOrchestrationAction,
};

use super::harness::{self, ts, NEVER};
use super::runner::Args;

/// Failure details of this error type, as a worker reports them.
pub fn failure(error_type: String) -> TaskFailureDetails {
    TaskFailureDetails {
        error_message: format!("{error_type} raised"),
        error_type,
        ..Default::default()
    }
}

/// The worker's answer: one action per input line (and the `version` line).
pub fn response(turn: &Turn, input: &[String], now_secs: i64) -> OrchestratorResponse {
    let mut response = OrchestratorResponse {
        instance_id: turn.request.instance_id.clone(),
        ..Default::default()
    };
    for line in input {
        let args = Args::of(line);
        if args.word(0) == "version" {
            response.version = Some(OrchestrationVersion {
                name: Some(args.word(1)),
                patches: args.word(2).split(',').map(str::to_string).collect(),
            });
            continue;
        }
        response.actions.push(OrchestratorAction {
            id: args.number(1),
            orchestrator_action_type: Some(action(&args, now_secs)),
            ..Default::default()
        });
    }
    response
}

/// One action; `timer ... in=S` is due S seconds after `now_secs`.
fn action(args: &Args, now_secs: i64) -> Action {
    match args.word(0).as_str() {
        "schedule" => Action::ScheduleTask(ScheduleTaskAction {
            name: args.word(2),
            input: args.option("input"),
            ..Default::default()
        }),
        "timer" => Action::CreateTimer(CreateTimerAction {
            fire_at: Some(match args.option("in").as_deref() {
                Some("never") | None => NEVER,
                Some(seconds) => ts(now_secs + seconds.parse::<i64>().expect("seconds")),
            }),
            ..Default::default()
        }),
        "child" => Action::CreateSubOrchestration(CreateSubOrchestrationAction {
            instance_id: Some(args.word(2))
                .filter(|id| id != "-")
                .unwrap_or_default(),
            name: args.option("name").unwrap_or_else(|| "Child".into()),
            input: args.option("input"),
            ..Default::default()
        }),
        "send" => Action::SendEvent(SendEventAction {
            instance: Some(OrchestrationInstance {
                instance_id: args.word(2),
                execution_id: None,
            }),
            name: args.word(3),
            data: args.option("input"),
        }),
        "complete" => Action::CompleteOrchestration(CompleteOrchestrationAction {
            orchestration_status: harness::parse_status(&args.word(2))
                .map_or(-1, |status| status.into()),
            result: args.option("result"),
            failure_details: args.option("failure").map(failure),
            ..Default::default()
        }),
        "terminate" => Action::TerminateOrchestration(TerminateOrchestrationAction {
            instance_id: args.word(2),
            reason: args.option("output"),
            recurse: args.flag("recursive"),
        }),
        "version-not-available" => Action::OrchestratorVersionNotAvailable(Default::default()),
        "detached" => Action::CreateDetachedWorkflow(CreateDetachedWorkflowAction {
            instance_id: args.word(2),
            name: args.word(3),
            input: args.option("input"),
            ..Default::default()
        }),
        other => panic!("unknown action {other}"),
    }
}
