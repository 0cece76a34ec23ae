"""Benchmark: 3-activity chains through the real Dapr Python SDK against a running endure.

Measures
  1. end-to-end latency (schedule_new_workflow -> wait_for_workflow_completion returns) of
     one chain at a time, N times: p50 / p99;
  2. throughput: C chains started at once (from a thread pool), workflows completed per
     second from the first start to the last completion.

Run (server on the default endpoint, or set DAPR_GRPC_ENDPOINT):
    python bench/chain_bench.py --sequential 200 --concurrent 1000
The numbers belong with the machine and the command that produced them (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import dapr.ext.workflow as wf

runtime = wf.WorkflowRuntime()


@runtime.activity(name="step")
def step(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value + 1


@runtime.workflow(name="chain3")
def chain3(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    return value


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def run_one(client: wf.DaprWorkflowClient, timeout_s: int) -> float:
    instance_id = uuid.uuid4().hex
    started = time.perf_counter()
    client.schedule_new_workflow(workflow=chain3, input=0, instance_id=instance_id)
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=timeout_s)
    elapsed = time.perf_counter() - started
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state
    assert state.serialized_output == "3", state.serialized_output
    return elapsed


def sequential(client: wf.DaprWorkflowClient, count: int) -> None:
    for _ in range(5):  # warm-up: connections, first turns
        run_one(client, 60)
    samples = [run_one(client, 60) for _ in range(count)]
    print(
        f"sequential chains: n={count} p50={percentile(samples, 50) * 1000:.1f} ms "
        f"p99={percentile(samples, 99) * 1000:.1f} ms mean={statistics.mean(samples) * 1000:.1f} ms"
    )


def concurrent(client: wf.DaprWorkflowClient, count: int, threads: int) -> None:
    ids = [uuid.uuid4().hex for _ in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda i: client.schedule_new_workflow(workflow=chain3, input=0, instance_id=i), ids))
        states = list(pool.map(lambda i: client.wait_for_workflow_completion(i, timeout_in_seconds=600), ids))
    elapsed = time.perf_counter() - started
    done = sum(1 for s in states if s is not None and s.runtime_status == wf.WorkflowStatus.COMPLETED)
    assert done == count, f"{count - done} chains did not complete"
    print(f"concurrent chains: n={count} in {elapsed:.2f} s = {count / elapsed:.1f} workflows/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=64)
    args = parser.parse_args()
    runtime.start()
    try:
        client = wf.DaprWorkflowClient()
        if args.sequential:
            sequential(client, args.sequential)
        if args.concurrent:
            concurrent(client, args.concurrent, args.threads)
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    main()
