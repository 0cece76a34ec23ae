"""The Dapr workflow patterns (task chaining, fan-out/fan-in, async HTTP polling, monitor,
external system interaction / human approval, compensation), custom status, and the
errors a user meets, run with the real Dapr Python SDK against the real endure binary.

Activities run in this process (the WorkflowRuntime worker), so their side effects are
recorded in memory (`effects`) and asserted on directly.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import grpc
import pytest
from dapr.ext.workflow import (
    DaprWorkflowClient,
    DaprWorkflowContext,
    TaskFailedError,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
    when_all,
    when_any,
)

from compat_helpers import WAIT_S, SideEffects, new_id, wait_until

effects = SideEffects()

TERMINAL = (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED)


def _output(state):
    assert state is not None, "no state returned"
    return None if state.serialized_output is None else json.loads(state.serialized_output)


def _wait_done(client: DaprWorkflowClient, instance_id: str, timeout_s: int = WAIT_S):
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=timeout_s)
    assert state is not None, f"{instance_id}: wait_for_workflow_completion returned None"
    return state


# ---- task chaining ------------------------------------------------------------------


def chain_add_one(ctx: WorkflowActivityContext, value: int) -> int:
    effects.record(("chain", ctx.workflow_id), "add_one")
    return value + 1


def chain_double(ctx: WorkflowActivityContext, value: int) -> int:
    effects.record(("chain", ctx.workflow_id), "double")
    return value * 2


def chain_subtract_three(ctx: WorkflowActivityContext, value: int) -> int:
    effects.record(("chain", ctx.workflow_id), "subtract_three")
    return value - 3


def chaining_workflow(ctx: DaprWorkflowContext, start: int):
    a = yield ctx.call_activity(chain_add_one, input=start)
    b = yield ctx.call_activity(chain_double, input=a)
    c = yield ctx.call_activity(chain_subtract_three, input=b)
    return [a, b, c]


def test_task_chaining(client):
    iid = new_id("chain")
    assert client.schedule_new_workflow(chaining_workflow, input=5, instance_id=iid) == iid
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert _output(state) == [6, 12, 9]
    assert state.instance_id == iid
    assert state.name == "chaining_workflow"
    assert state.serialized_input == "5"
    assert state.serialized_custom_status is None
    assert state.failure_details is None
    assert state.created_at <= state.last_updated_at
    # each activity ran once, in order, and saw the right workflow ID
    assert effects.values(("chain", iid)) == ["add_one", "double", "subtract_three"]


# ---- fan-out / fan-in ---------------------------------------------------------------

FAN_OUT = 1000


def fan_square(ctx: WorkflowActivityContext, n: int) -> int:
    effects.record(("fan", ctx.workflow_id, n))
    return n * n


def fan_out_fan_in_workflow(ctx: DaprWorkflowContext, count: int):
    tasks = [ctx.call_activity(fan_square, input=i) for i in range(count)]
    results = yield when_all(tasks)
    return {"count": len(results), "sum": sum(results), "head": results[:3], "last": results[-1]}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fan_out_fan_in_1000_activities(client):
    iid = new_id("fan")
    client.schedule_new_workflow(fan_out_fan_in_workflow, input=FAN_OUT, instance_id=iid)
    state = _wait_done(client, iid, timeout_s=480)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    out = _output(state)
    assert out == {
        "count": FAN_OUT,
        "sum": sum(i * i for i in range(FAN_OUT)),
        "head": [0, 1, 4],
        "last": (FAN_OUT - 1) ** 2,
    }
    ran = effects.keys(lambda k: k[0] == "fan" and k[1] == iid)
    assert len(ran) == FAN_OUT, f"{len(ran)} distinct activities ran, expected {FAN_OUT}"


# ---- async HTTP API pattern: start, then poll the status --------------------------------


def poll_step(ctx: WorkflowActivityContext, value: int) -> int:
    return value * 10


def polling_workflow(ctx: DaprWorkflowContext, value: int):
    a = yield ctx.call_activity(poll_step, input=value)
    yield ctx.create_timer(timedelta(seconds=2))
    return a + 1


def test_async_status_polling(client):
    iid = new_id("poll")
    started = time.monotonic()
    client.schedule_new_workflow(polling_workflow, input=7, instance_id=iid)
    seen = []
    deadline = time.monotonic() + WAIT_S
    while True:
        state = client.get_workflow_state(iid)
        assert state is not None, "get_workflow_state returned None for a started workflow"
        seen.append(state.runtime_status)
        if state.runtime_status in TERMINAL:
            break
        assert time.monotonic() < deadline, f"not finished after {WAIT_S}s; statuses {seen}"
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert _output(state) == 71
    assert WorkflowStatus.RUNNING in seen, f"never saw RUNNING while polling: {seen}"
    assert set(seen) <= {WorkflowStatus.RUNNING, WorkflowStatus.COMPLETED}, seen
    # the durable 2 s timer must not fire early
    assert elapsed >= 1.9, f"workflow with a 2 s timer finished after {elapsed:.2f}s"


# ---- monitor (eternal workflow with continue-as-new) -------------------------------------

MONITOR_ITERATIONS = 4


def monitor_check(ctx: WorkflowActivityContext, iteration: int) -> str:
    effects.record(("monitor", ctx.workflow_id), iteration)
    return f"ok-{iteration}"


def monitor_workflow(ctx: DaprWorkflowContext, job: dict):
    status = yield ctx.call_activity(monitor_check, input=job["iteration"])
    history = job["history"] + [status]
    if job["iteration"] + 1 >= job["max"]:
        return {"iterations": job["iteration"] + 1, "history": history}
    yield ctx.create_timer(timedelta(milliseconds=500))
    ctx.continue_as_new({"iteration": job["iteration"] + 1, "max": job["max"], "history": history})


def test_monitor_continue_as_new(client):
    iid = new_id("monitor")
    first = {"iteration": 0, "max": MONITOR_ITERATIONS, "history": []}
    client.schedule_new_workflow(monitor_workflow, input=first, instance_id=iid)
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    expected_history = [f"ok-{i}" for i in range(MONITOR_ITERATIONS)]
    assert _output(state) == {"iterations": MONITOR_ITERATIONS, "history": expected_history}
    # the instance's input is the input of the latest run
    assert json.loads(state.serialized_input) == {
        "iteration": MONITOR_ITERATIONS - 1,
        "max": MONITOR_ITERATIONS,
        "history": expected_history[:-1],
    }
    # one check per iteration: no activity of an earlier run was re-executed
    assert effects.values(("monitor", iid)) == list(range(MONITOR_ITERATIONS))


# ---- external system interaction: human approval with a timeout ---------------------------


def request_approval(ctx: WorkflowActivityContext, order: dict) -> bool:
    effects.record(("approval-requested", ctx.workflow_id), order["id"])
    return True


def approval_workflow(ctx: DaprWorkflowContext, order: dict):
    yield ctx.call_activity(request_approval, input=order)
    approval = ctx.wait_for_external_event("approval_received")
    timeout = ctx.create_timer(timedelta(seconds=order["timeout_s"]))
    winner = yield when_any([approval, timeout])
    if winner == timeout:
        return {"order": order["id"], "status": "timed out"}
    decision = approval.get_result()
    return {
        "order": order["id"],
        "status": "approved" if decision["approved"] else "rejected",
        "by": decision["approver"],
    }


def test_human_approval_event_wins(client):
    iid = new_id("approve")
    started = time.monotonic()
    client.schedule_new_workflow(
        approval_workflow, input={"id": "order-1", "timeout_s": 120}, instance_id=iid
    )
    wait_until(
        lambda: effects.count(("approval-requested", iid)) == 1, what="approval request activity"
    )
    client.raise_workflow_event(
        iid, "approval_received", data={"approved": True, "approver": "alice"}
    )
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert _output(state) == {"order": "order-1", "status": "approved", "by": "alice"}
    assert time.monotonic() - started < 100, "the 120 s timer should not have been needed"


def test_human_approval_timer_wins(client):
    iid = new_id("approve-timeout")
    started = time.monotonic()
    client.schedule_new_workflow(
        approval_workflow, input={"id": "order-2", "timeout_s": 2}, instance_id=iid
    )
    state = _wait_done(client, iid)
    elapsed = time.monotonic() - started
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert _output(state) == {"order": "order-2", "status": "timed out"}
    assert elapsed >= 1.9, f"2 s approval timeout fired after {elapsed:.2f}s"
    assert effects.count(("approval-requested", iid)) == 1


# ---- compensation (saga) --------------------------------------------------------------


def book_flight(ctx: WorkflowActivityContext, trip: dict) -> str:
    effects.record(("flight-booked", ctx.workflow_id))
    return f"flight-{trip['id']}"


def book_hotel(ctx: WorkflowActivityContext, trip: dict) -> str:
    effects.record(("hotel-attempt", ctx.workflow_id))
    raise RuntimeError(f"no rooms in {trip['city']}")


def cancel_flight(ctx: WorkflowActivityContext, booking: str) -> str:
    effects.record(("flight-cancelled", ctx.workflow_id), booking)
    return f"cancelled {booking}"


def booking_workflow(ctx: DaprWorkflowContext, trip: dict):
    flight = yield ctx.call_activity(book_flight, input=trip)
    try:
        hotel = yield ctx.call_activity(book_hotel, input=trip)
    except TaskFailedError as e:
        undo = yield ctx.call_activity(cancel_flight, input=flight)
        return {
            "status": "compensated",
            "error": e.details.message,
            "error_type": e.details.error_type,
            "compensation": undo,
        }
    return {"status": "booked", "flight": flight, "hotel": hotel}


def test_compensation_after_failed_activity(client):
    iid = new_id("saga")
    client.schedule_new_workflow(
        booking_workflow, input={"id": "T1", "city": "Paris"}, instance_id=iid
    )
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert state.failure_details is None
    assert _output(state) == {
        "status": "compensated",
        "error": "no rooms in Paris",
        "error_type": "RuntimeError",
        "compensation": "cancelled flight-T1",
    }
    assert effects.count(("flight-booked", iid)) == 1
    assert effects.count(("hotel-attempt", iid)) == 1  # no retry policy: exactly one attempt
    assert effects.values(("flight-cancelled", iid)) == ["flight-T1"]


# ---- child workflows ------------------------------------------------------------------


def child_greet(ctx: WorkflowActivityContext, name: str) -> str:
    effects.record(("child-greet", ctx.workflow_id), name)
    return f"hello {name}"


def greeting_child(ctx: DaprWorkflowContext, name: str):
    greeting = yield ctx.call_activity(child_greet, input=name)
    return {"child": ctx.instance_id, "greeting": greeting}


def greeting_parent(ctx: DaprWorkflowContext, names: list):
    results = yield when_all([ctx.call_child_workflow(greeting_child, input=n) for n in names])
    return results


def test_child_workflows(client):
    iid = new_id("parent")
    names = ["ann", "bob", "cy"]
    client.schedule_new_workflow(greeting_parent, input=names, instance_id=iid)
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    out = _output(state)
    assert [r["greeting"] for r in out] == [f"hello {n}" for n in names]
    child_ids = [r["child"] for r in out]
    assert len(set(child_ids)) == 3
    for child_id, name in zip(child_ids, names):
        # default child IDs are "<parent>:<seq as 4 hex digits>"
        assert child_id.startswith(iid + ":"), child_id
        child = client.get_workflow_state(child_id)
        assert child is not None, f"child {child_id} not found"
        assert child.runtime_status == WorkflowStatus.COMPLETED
        assert child.name == "greeting_child"
        assert json.loads(child.serialized_input) == name
        assert effects.values(("child-greet", child_id)) == [name]


# ---- custom status ------------------------------------------------------------------


def custom_status_workflow(ctx: DaprWorkflowContext, _):
    ctx.set_custom_status("waiting-for-go")
    yield ctx.wait_for_external_event("go")
    ctx.set_custom_status(json.dumps({"phase": "done", "pct": 100}))
    return "finished"


def test_custom_status(client):
    iid = new_id("status")
    client.schedule_new_workflow(custom_status_workflow, instance_id=iid)
    state = wait_until(
        lambda: (s := client.get_workflow_state(iid)) and s.serialized_custom_status and s,
        what="first custom status",
    )
    assert state.serialized_custom_status == "waiting-for-go"  # a plain string is stored raw
    assert state.runtime_status == WorkflowStatus.RUNNING
    assert state.serialized_input is None  # no input given: unset, not "" or "null"
    client.raise_workflow_event(iid, "go")
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert json.loads(state.serialized_custom_status) == {"phase": "done", "pct": 100}
    assert _output(state) == "finished"


# ---- errors a user meets ------------------------------------------------------------------


def waiting_workflow(ctx: DaprWorkflowContext, _):
    value = yield ctx.wait_for_external_event("release")
    return value


def uncaught_failure_workflow(ctx: DaprWorkflowContext, trip: dict):
    yield ctx.call_activity(book_hotel, input=trip)
    return "unreachable"


def missing_activity_workflow(ctx: DaprWorkflowContext, _):
    yield ctx.call_activity("no_such_activity", input=1)
    return "unreachable"


def test_get_state_of_unknown_instance_is_none(client):
    assert client.get_workflow_state(new_id("nobody")) is None


def test_raise_event_to_unknown_instance_raises(client):
    with pytest.raises(grpc.RpcError) as info:
        client.raise_workflow_event(new_id("nobody"), "some_event", data={"x": 1})
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value
    assert "no such instance exists" in (info.value.details() or ""), info.value.details()


def test_terminate_unknown_instance_raises(client):
    with pytest.raises(grpc.RpcError) as info:
        client.terminate_workflow(new_id("nobody"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value


def test_wait_for_completion_times_out(client):
    iid = new_id("wait-timeout")
    client.schedule_new_workflow(waiting_workflow, instance_id=iid)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.wait_for_workflow_completion(iid, timeout_in_seconds=2)
    assert time.monotonic() - started >= 1.5, "the long poll returned before its deadline"
    assert client.get_workflow_state(iid).runtime_status == WorkflowStatus.RUNNING
    client.raise_workflow_event(iid, "release", data="let go")
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert _output(state) == "let go"


def test_uncaught_activity_failure_fails_workflow(client):
    iid = new_id("uncaught")
    client.schedule_new_workflow(
        uncaught_failure_workflow, input={"id": "T2", "city": "Oslo"}, instance_id=iid
    )
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.FAILED, state.to_json()
    fd = state.failure_details
    assert fd is not None, "FAILED workflow without failure details"
    assert fd.error_type == "TaskFailedError"
    assert fd.message.endswith("failed: no rooms in Oslo"), fd.message
    assert fd.stack_trace, "stack trace of the failure was not kept"
    assert state.serialized_output is None


def test_unregistered_workflow_fails(client):
    iid = new_id("unregistered")
    client.schedule_new_workflow("no_such_workflow", input=1, instance_id=iid)
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.FAILED, state.to_json()
    assert state.name == "no_such_workflow"
    assert state.failure_details is not None
    assert state.failure_details.error_type == "OrchestratorNotRegisteredError"


def test_unregistered_activity_fails_workflow(client):
    iid = new_id("no-activity")
    client.schedule_new_workflow(missing_activity_workflow, instance_id=iid)
    state = _wait_done(client, iid)
    assert state.runtime_status == WorkflowStatus.FAILED, state.to_json()
    assert "no_such_activity" in state.failure_details.message


def register(rt: WorkflowRuntime) -> None:
    for w in (
        chaining_workflow,
        fan_out_fan_in_workflow,
        polling_workflow,
        monitor_workflow,
        approval_workflow,
        booking_workflow,
        greeting_child,
        greeting_parent,
        custom_status_workflow,
        waiting_workflow,
        uncaught_failure_workflow,
        missing_activity_workflow,
    ):
        rt.register_workflow(w)
    for a in (
        chain_add_one,
        chain_double,
        chain_subtract_three,
        fan_square,
        poll_step,
        monitor_check,
        request_approval,
        book_flight,
        book_hotel,
        cancel_flight,
        child_greet,
    ):
        rt.register_activity(a)
