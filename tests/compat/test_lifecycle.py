"""Management operations: terminate (recursive and not), pause/resume, purge, and
instance ID reuse, through DaprWorkflowClient."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import grpc
import pytest
from dapr.ext.workflow import (
    DaprWorkflowContext,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
)

from compat_helpers import WAIT_S, SideEffects, new_id, wait_until

effects = SideEffects()


def _status(client, iid):
    state = client.get_workflow_state(iid)
    return None if state is None else state.runtime_status


# ---- terminate ------------------------------------------------------------------------


def child_side_effect(ctx: WorkflowActivityContext, child_id: str) -> str:
    effects.record(("child-ran", child_id))
    return "child activity ran"


def parent_side_effect(ctx: WorkflowActivityContext, parent_id: str) -> str:
    effects.record(("parent-ran", parent_id))
    return "parent activity ran"


def waiting_child(ctx: DaprWorkflowContext, _):
    yield ctx.wait_for_external_event("proceed")
    result = yield ctx.call_activity(child_side_effect, input=ctx.instance_id)
    return result


def parent_of_waiting_child(ctx: DaprWorkflowContext, child_id: str):
    result = yield ctx.call_child_workflow(waiting_child, instance_id=child_id)
    yield ctx.call_activity(parent_side_effect, input=ctx.instance_id)
    return result


def _start_parent_and_child(client):
    parent_id = new_id("term-parent")
    child_id = parent_id + "-child"
    client.schedule_new_workflow(parent_of_waiting_child, input=child_id, instance_id=parent_id)
    wait_until(
        lambda: _status(client, child_id) == WorkflowStatus.RUNNING, what=f"child {child_id} running"
    )
    return parent_id, child_id


def test_recursive_terminate(client):
    parent_id, child_id = _start_parent_and_child(client)
    client.terminate_workflow(parent_id, output="stopped by test")  # recursive=True by default
    parent = client.wait_for_workflow_completion(parent_id, timeout_in_seconds=WAIT_S)
    assert parent.runtime_status == WorkflowStatus.TERMINATED, parent.to_json()
    assert parent.serialized_output == json.dumps("stopped by test")
    child = client.wait_for_workflow_completion(child_id, timeout_in_seconds=WAIT_S)
    assert child.runtime_status == WorkflowStatus.TERMINATED, child.to_json()
    # The event the child waited for must not revive it.
    try:
        client.raise_workflow_event(child_id, "proceed", data="late")
    except grpc.RpcError:
        pass  # rejecting events to a terminated instance is fine too
    time.sleep(2)
    assert _status(client, child_id) == WorkflowStatus.TERMINATED
    assert _status(client, parent_id) == WorkflowStatus.TERMINATED
    assert effects.count(("child-ran", child_id)) == 0, "child activity ran after terminate"
    assert effects.count(("parent-ran", parent_id)) == 0, "parent activity ran after terminate"


def test_non_recursive_terminate_leaves_child_running(client):
    parent_id, child_id = _start_parent_and_child(client)
    client.terminate_workflow(parent_id, output="parent only", recursive=False)
    parent = client.wait_for_workflow_completion(parent_id, timeout_in_seconds=WAIT_S)
    assert parent.runtime_status == WorkflowStatus.TERMINATED
    time.sleep(1)
    assert _status(client, child_id) == WorkflowStatus.RUNNING
    client.raise_workflow_event(child_id, "proceed", data="go")
    child = client.wait_for_workflow_completion(child_id, timeout_in_seconds=WAIT_S)
    assert child.runtime_status == WorkflowStatus.COMPLETED, child.to_json()
    assert json.loads(child.serialized_output) == "child activity ran"
    assert effects.count(("child-ran", child_id)) == 1
    # the child's completion must not wake the terminated parent
    time.sleep(1)
    assert _status(client, parent_id) == WorkflowStatus.TERMINATED
    assert effects.count(("parent-ran", parent_id)) == 0


# ---- pause / resume ------------------------------------------------------------------


def pausable_workflow(ctx: DaprWorkflowContext, _):
    data = yield ctx.wait_for_external_event("data")
    ctx.set_custom_status("got-data")
    finish = yield ctx.wait_for_external_event("finish")
    return {"data": data, "finish": finish}


def test_pause_and_resume(client):
    iid = new_id("pause")
    client.schedule_new_workflow(pausable_workflow, instance_id=iid)
    started = client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT_S)
    assert started.runtime_status == WorkflowStatus.RUNNING

    client.pause_workflow(iid)
    # SuspendInstance returns once the suspension is visible (no polling here on purpose)
    assert _status(client, iid) == WorkflowStatus.SUSPENDED

    client.raise_workflow_event(iid, "data", data={"x": 1})
    with pytest.raises(TimeoutError):
        client.wait_for_workflow_completion(iid, timeout_in_seconds=2)
    state = client.get_workflow_state(iid)
    assert state.runtime_status == WorkflowStatus.SUSPENDED
    assert state.serialized_custom_status is None, "event was processed while suspended"

    client.resume_workflow(iid)
    # ResumeInstance returns once the instance is RUNNING again (it still waits for "finish")
    assert _status(client, iid) == WorkflowStatus.RUNNING

    # the event raised while suspended is delivered after the resume
    wait_until(
        lambda: client.get_workflow_state(iid).serialized_custom_status == "got-data",
        what="event raised while suspended to be processed after resume",
    )
    client.raise_workflow_event(iid, "finish", data="now")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert json.loads(state.serialized_output) == {"data": {"x": 1}, "finish": "now"}


def test_terminate_while_suspended(client):
    iid = new_id("pause-term")
    client.schedule_new_workflow(pausable_workflow, instance_id=iid)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT_S)
    client.pause_workflow(iid)
    assert _status(client, iid) == WorkflowStatus.SUSPENDED
    client.terminate_workflow(iid, output="bye")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.TERMINATED, state.to_json()
    assert state.serialized_output == json.dumps("bye")


# ---- purge ---------------------------------------------------------------------------


def echo_workflow(ctx: DaprWorkflowContext, value):
    return {"echo": value, "id": ctx.instance_id}


def echo_parent(ctx: DaprWorkflowContext, value):
    child = yield ctx.call_child_workflow(echo_workflow, input=value)
    return child


def event_workflow(ctx: DaprWorkflowContext, tag: str):
    value = yield ctx.wait_for_external_event("release")
    return {"tag": tag, "value": value}


def test_purge_completed_instance(client):
    iid = new_id("purge")
    client.schedule_new_workflow(echo_workflow, input="x", instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.COMPLETED
    client.purge_workflow(iid)
    assert client.get_workflow_state(iid) is None
    # a purged ID is free again
    client.schedule_new_workflow(echo_workflow, input="y", instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"echo": "y", "id": iid}


def test_purge_is_recursive(client):
    iid = new_id("purge-parent")
    client.schedule_new_workflow(echo_parent, input="z", instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.COMPLETED
    child_id = json.loads(state.serialized_output)["id"]
    assert client.get_workflow_state(child_id) is not None
    client.purge_workflow(iid)  # recursive=True by default
    assert client.get_workflow_state(iid) is None
    assert client.get_workflow_state(child_id) is None


def test_purge_running_instance_fails(client):
    iid = new_id("purge-running")
    client.schedule_new_workflow(event_workflow, input="r", instance_id=iid)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT_S)
    with pytest.raises(grpc.RpcError) as info:
        client.purge_workflow(iid)
    assert "not yet completed" in (info.value.details() or ""), info.value
    assert _status(client, iid) == WorkflowStatus.RUNNING  # nothing was deleted
    client.raise_workflow_event(iid, "release", data=1)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.COMPLETED
    client.purge_workflow(iid)
    assert client.get_workflow_state(iid) is None


# ---- instance ID reuse ----------------------------------------------------------------


def timer_workflow(ctx: DaprWorkflowContext, seconds: float):
    yield ctx.create_timer(timedelta(seconds=seconds))
    return seconds


def test_instance_id_reuse_after_completion(client):
    iid = new_id("reuse")
    assert client.schedule_new_workflow(echo_workflow, input=1, instance_id=iid) == iid
    first = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert first.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(first.serialized_output) == {"echo": 1, "id": iid}

    assert client.schedule_new_workflow(echo_workflow, input=2, instance_id=iid) == iid
    second = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert second.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(second.serialized_output) == {"echo": 2, "id": iid}
    assert second.serialized_input == "2"


def test_start_with_running_id_raises(client):
    iid = new_id("dup")
    client.schedule_new_workflow(event_workflow, input="first", instance_id=iid)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT_S)
    with pytest.raises(grpc.RpcError) as info:
        client.schedule_new_workflow(event_workflow, input="second", instance_id=iid)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS, info.value
    assert "already exists" in (info.value.details() or ""), info.value.details()
    # the running instance is untouched
    client.raise_workflow_event(iid, "release", data=7)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"tag": "first", "value": 7}


def test_instance_id_reuse_after_terminate_ignores_old_timer(client):
    """The terminated run's pending timer (same sequence id 1) must not fire into the new run."""
    iid = new_id("reuse-term")
    client.schedule_new_workflow(timer_workflow, input=3, instance_id=iid)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT_S)
    client.terminate_workflow(iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    assert state.runtime_status == WorkflowStatus.TERMINATED

    started = time.monotonic()
    client.schedule_new_workflow(timer_workflow, input=7, instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT_S)
    elapsed = time.monotonic() - started
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert json.loads(state.serialized_output) == 7
    assert elapsed >= 6.5, f"new run finished after {elapsed:.2f}s: the old run's 3 s timer fired into it"


def register(rt: WorkflowRuntime) -> None:
    for w in (
        waiting_child,
        parent_of_waiting_child,
        pausable_workflow,
        echo_workflow,
        echo_parent,
        event_workflow,
        timer_workflow,
    ):
        rt.register_workflow(w)
    for a in (child_side_effect, parent_side_effect):
        rt.register_activity(a)
