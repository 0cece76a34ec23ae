"""Retry policies. Retries are run by the SDK (durable retry timers, then a new
ScheduleTask / CreateChildWorkflow); the server must deliver failures faithfully, fire the
retry timers, and let a failed child instance ID be created again."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from dapr.ext.workflow import (
    DaprWorkflowContext,
    RetryPolicy,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
)

from compat_helpers import WAIT_S, SideEffects, new_id

effects = SideEffects()

ACTIVITY_RETRY = RetryPolicy(
    first_retry_interval=timedelta(seconds=1),
    max_number_of_attempts=5,
    backoff_coefficient=1.0,
)

SHORT_RETRY = RetryPolicy(
    first_retry_interval=timedelta(milliseconds=500),
    max_number_of_attempts=3,
    backoff_coefficient=1.0,
)

CHILD_RETRY = RetryPolicy(
    first_retry_interval=timedelta(seconds=1),
    max_number_of_attempts=4,
    backoff_coefficient=1.0,
)


# ---- activity retries -------------------------------------------------------------------


def flaky_activity(ctx: WorkflowActivityContext, key: str) -> str:
    attempt = effects.record(("flaky", key), ctx.workflow_id)
    if attempt < 3:
        raise ValueError(f"transient failure #{attempt}")
    return f"succeeded after {attempt} attempts"


def activity_retry_workflow(ctx: DaprWorkflowContext, key: str):
    result = yield ctx.call_activity(flaky_activity, input=key, retry_policy=ACTIVITY_RETRY)
    return result


def test_activity_retry_policy(client):
    iid = new_id("act-retry")
    started = time.monotonic()
    client.schedule_new_workflow(activity_retry_workflow, input=iid, instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    elapsed = time.monotonic() - started
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert json.loads(state.serialized_output) == "succeeded after 3 attempts"
    assert effects.count(("flaky", iid)) == 3, "activity should run exactly 3 times"
    assert effects.values(("flaky", iid)) == [iid, iid, iid]
    # two 1 s durable retry timers between the three attempts
    assert elapsed >= 1.9, f"retries were not delayed by their timers ({elapsed:.2f}s)"


def always_failing_activity(ctx: WorkflowActivityContext, key: str) -> str:
    attempt = effects.record(("always-fails", key))
    raise RuntimeError(f"permanently broken (attempt {attempt})")


def retry_exhausted_workflow(ctx: DaprWorkflowContext, key: str):
    result = yield ctx.call_activity(always_failing_activity, input=key, retry_policy=SHORT_RETRY)
    return result


def test_activity_retries_exhausted_fail_the_workflow(client):
    iid = new_id("act-exhaust")
    client.schedule_new_workflow(retry_exhausted_workflow, input=iid, instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.FAILED, state.to_json()
    assert effects.count(("always-fails", iid)) == 3  # max_number_of_attempts counts the first
    fd = state.failure_details
    assert fd is not None
    assert fd.error_type == "TaskFailedError"
    assert fd.message.endswith("failed: permanently broken (attempt 3)"), fd.message


# ---- child workflow retries ------------------------------------------------------------


def count_child_attempt(ctx: WorkflowActivityContext, child_id: str) -> int:
    return effects.record(("child-attempt", child_id), ctx.workflow_id)


def flaky_child(ctx: DaprWorkflowContext, payload: str):
    attempt = yield ctx.call_activity(count_child_attempt, input=ctx.instance_id)
    if attempt < 2:
        raise RuntimeError(f"child attempt {attempt} failed")
    return {"attempt": attempt, "child_id": ctx.instance_id, "payload": payload}


def child_retry_parent(ctx: DaprWorkflowContext, payload: str):
    result = yield ctx.call_child_workflow(flaky_child, input=payload, retry_policy=CHILD_RETRY)
    return result


def test_child_workflow_retry_policy_reuses_child_id(client):
    iid = new_id("child-retry")
    client.schedule_new_workflow(child_retry_parent, input="p-1", instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    out = json.loads(state.serialized_output)
    child_id = out["child_id"]
    assert out == {"attempt": 2, "child_id": child_id, "payload": "p-1"}
    assert child_id == f"{iid}:0001", child_id  # the SDK's deterministic child ID
    # both attempts ran under the same child instance ID
    attempt_keys = effects.keys(lambda k: k[0] == "child-attempt" and k[1].startswith(iid))
    assert attempt_keys == [("child-attempt", child_id)], attempt_keys
    assert effects.count(("child-attempt", child_id)) == 2
    child = client.get_workflow_state(child_id)
    assert child is not None
    assert child.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(child.serialized_output) == out


def register(rt: WorkflowRuntime) -> None:
    for w in (activity_retry_workflow, retry_exhausted_workflow, flaky_child, child_retry_parent):
        rt.register_workflow(w)
    for a in (flaky_activity, always_failing_activity, count_child_attempt):
        rt.register_activity(a)
