"""Benchmark: time from kill -9 of the leader to the first new workflow completing.

Runs 3-activity chains one after another through the Python SDK (worker and client on a
follower), kills the leader's process with SIGKILL, and reports how long after the kill the
first chain that was *started after the kill* completed. Repeats --rounds times (each round
kills the current leader and then restarts it with deploy/local/cluster.sh).

    ENDURE_CLUSTER_DIR=/tmp/bench-cluster deploy/local/cluster.sh start
    python bench/failover_bench.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import uuid

import dapr.ext.workflow as wf

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "deploy", "local", "cluster.sh")
BASE_GRPC = int(os.environ.get("ENDURE_BASE_GRPC_PORT", "50000"))

def step(ctx: wf.WorkflowActivityContext, value: int) -> int:
    return value + 1


def chain3(ctx: wf.DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    value = yield ctx.call_activity(step, input=value)
    return value


def cluster_status() -> list[dict]:
    out = subprocess.run(["bash", SCRIPT, "status", "--output", "json"], capture_output=True, text=True)
    start = out.stdout.find("[")
    return json.loads(out.stdout[start:]) if start >= 0 else []


def leader_node() -> int:
    for _ in range(100):
        for node in cluster_status():
            if node.get("state") == "Leader":
                return int(node["nodeId"])
        time.sleep(0.1)
    raise RuntimeError("no leader")


def run_chain(client: wf.DaprWorkflowClient) -> bool:
    instance_id = uuid.uuid4().hex
    try:
        client.schedule_new_workflow(workflow=chain3, input=0, instance_id=instance_id)
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=30)
        return state is not None and state.serialized_output == "3"
    except Exception:
        return False


def one_round(client: wf.DaprWorkflowClient) -> float:
    for _ in range(5):
        assert run_chain(client)
    leader = leader_node()
    pid = int(open(os.path.join(os.environ["ENDURE_CLUSTER_DIR"], f"node-{leader}", "endure.pid")).read())
    os.kill(pid, 9)
    killed = time.perf_counter()
    while not run_chain(client):
        time.sleep(0.05)
    elapsed = time.perf_counter() - killed
    subprocess.run(["bash", SCRIPT, "restart", str(leader)], check=True, capture_output=True)
    return elapsed


def worker_round(port: int) -> None:
    """One round in its own process: the SDK registers a function in one runtime only."""
    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(port))
    runtime.register_activity(step, name="step")
    runtime.register_workflow(chain3, name="chain3")
    runtime.start()
    try:
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(port))
        print(f"RESULT {one_round(client):.3f}", flush=True)
    finally:
        runtime.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-on-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.round_on_port:
        worker_round(args.round_on_port)
        return
    samples = []
    for _ in range(args.rounds):
        # Worker and client on a follower of the current leader, so the kill hits the leader.
        leader = leader_node()
        follower = next(n for n in (1, 2, 3) if n != leader)
        out = subprocess.run(
            ["python", __file__, "--round-on-port", str(BASE_GRPC + follower)],
            capture_output=True, text=True, timeout=300,
        )
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"round failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        samples.append(float(line.split()[1]))
        print(f"kill -9 of the leader -> first new chain completed: {samples[-1]:.2f} s", flush=True)
    samples.sort()
    print(f"rounds={len(samples)} min={samples[0]:.2f} s median={samples[len(samples) // 2]:.2f} s max={samples[-1]:.2f} s")


if __name__ == "__main__":
    main()
