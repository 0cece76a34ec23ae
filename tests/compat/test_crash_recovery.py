"""kill -9 of the server while workflows run; restart on the same data dir; the SDK worker
reconnects by itself and every workflow must finish with exactly the right output.
Activities may run more than once (at-least-once), within reason.

With ENDURE_CLUSTER_NODES=3 the same test runs against a 3-node cluster: `kill9()` kills
the current leader (never the nodes the worker and the client talk to, unless one of them
leads by then) and waits for the survivors to elect a new one; `restart()` brings the old
leader back as a follower. The assertions are the same in both modes."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from dapr.ext.workflow import (
    DaprWorkflowContext,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
)

from compat_helpers import SideEffects, new_id, wait_until

effects = SideEffects()

WORKFLOWS = 20
STEPS = 6
STEP_TIMER = timedelta(milliseconds=500)
RECOVERY_S = 180
MAX_RUNS_PER_ACTIVITY = 3  # at-least-once; one crash should cause at most a re-run or two


def crash_step(ctx: WorkflowActivityContext, arg: dict) -> int:
    effects.record((ctx.workflow_id, arg["step"]), arg["value"])
    return arg["value"] * 3 + arg["step"]


def expected_chain(seed: int) -> list:
    values, value = [], seed
    for step in range(STEPS):
        value = value * 3 + step
        values.append(value)
    return values


def crash_chain_workflow(ctx: DaprWorkflowContext, seed: int):
    values, value = [], seed
    for step in range(STEPS):
        value = yield ctx.call_activity(crash_step, input={"step": step, "value": value})
        values.append(value)
        yield ctx.create_timer(STEP_TIMER)
    return {"seed": seed, "values": values}


def event_after_restart_workflow(ctx: DaprWorkflowContext, tag: str):
    value = yield ctx.wait_for_external_event("after_restart")
    return {"tag": tag, "value": value}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_kill9_mid_run_and_restart(endure_server, runtime, client):
    # one workflow that is already complete, and one that waits for an event, before the crash
    done_id = new_id("crash-done")
    client.schedule_new_workflow(crash_chain_workflow, input=1000, instance_id=done_id)
    done = client.wait_for_workflow_completion(done_id, timeout_in_seconds=60)
    assert done.runtime_status == WorkflowStatus.COMPLETED, done.to_json()
    waiting_id = new_id("crash-waiting")
    client.schedule_new_workflow(event_after_restart_workflow, input="w", instance_id=waiting_id)

    ids = {new_id(f"crash-{i:02d}"): i for i in range(WORKFLOWS)}
    for iid, seed in ids.items():
        client.schedule_new_workflow(crash_chain_workflow, input=seed, instance_id=iid)

    # let the chains make some progress, then crash while they are mid-way
    wait_until(
        lambda: sum(effects.count((iid, 1)) for iid in ids) >= WORKFLOWS // 2,
        timeout_s=60,
        what="half of the workflows to reach step 1",
    )
    finished_before = [iid for iid in ids if effects.count((iid, STEPS - 1)) > 0]
    assert len(finished_before) < WORKFLOWS, "every workflow finished before the crash"
    endure_server.kill9()
    time.sleep(1.0)
    endure_server.restart()

    # The client's channel reconnects by itself, but right after the restart gRPC may still
    # be in its reconnect backoff and fail fast with UNAVAILABLE: poll through that.
    again = wait_until(
        lambda: client.get_workflow_state(done_id),
        timeout_s=60,
        what="the restarted server to answer GetInstance",
    )
    # completed before the crash: still there, unchanged
    assert again.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(again.serialized_output) == {"seed": 1000, "values": expected_chain(1000)}

    # everything that was mid-run finishes with exactly the right output
    deadline = time.monotonic() + RECOVERY_S
    for iid, seed in ids.items():
        left = max(1, int(deadline - time.monotonic()))
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=left)
        assert state is not None, f"{iid} lost after restart"
        assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
        assert json.loads(state.serialized_output) == {
            "seed": seed,
            "values": expected_chain(seed),
        }, iid

    # the event wait survived the crash
    assert client.get_workflow_state(waiting_id).runtime_status == WorkflowStatus.RUNNING
    client.raise_workflow_event(waiting_id, "after_restart", data="hello")
    state = client.wait_for_workflow_completion(waiting_id, timeout_in_seconds=60)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.to_json()
    assert json.loads(state.serialized_output) == {"tag": "w", "value": "hello"}

    # the work survived and the side effects are sane
    reruns = {}
    for iid, seed in ids.items():
        chain = [seed] + expected_chain(seed)
        for step in range(STEPS):
            runs = effects.count((iid, step))
            assert 1 <= runs <= MAX_RUNS_PER_ACTIVITY, f"{iid} step {step} ran {runs} times"
            # every run of a step saw the right input (no stale or foreign inputs)
            assert set(effects.values((iid, step))) == {chain[step]}, (iid, step)
            if runs > 1:
                reruns[(iid, step)] = runs
    print(f"activities re-run after the crash: {reruns}")


def register(rt: WorkflowRuntime) -> None:
    rt.register_workflow(crash_chain_workflow)
    rt.register_workflow(event_after_restart_workflow)
    rt.register_activity(crash_step)
