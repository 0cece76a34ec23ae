"""`/metrics` read with a real Prometheus text-format parser (prometheus_client's), before
and after workflows run: the families an operator relies on exist and move."""

from __future__ import annotations

import urllib.request

from dapr.ext.workflow import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime
from prometheus_client.parser import text_string_to_metric_families

from compat_helpers import WAIT_S, new_id


def double(ctx: WorkflowActivityContext, value: int) -> int:
    return value * 2


def metered(ctx: DaprWorkflowContext, value: int):
    value = yield ctx.call_activity(double, input=value)
    return value


def register(runtime: WorkflowRuntime) -> None:
    runtime.register_workflow(metered, name="metered")
    runtime.register_activity(double, name="double")


def nodes_of(server) -> list:
    """Every node whose metrics to read: each node of a cluster (a shard's leader times the
    turns and activities it dispatches, and the shards' leaders are spread over the nodes);
    the server itself otherwise."""
    return list(getattr(server, "nodes", [server]))


def scrape_node(node) -> dict:
    """{family name: {(sample name, sorted labels): value}}"""
    url = f"http://127.0.0.1:{node.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    families = {}
    for family in text_string_to_metric_families(text):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families


def scrape(server) -> list[dict]:
    """The families of every node, in node order."""
    return [scrape_node(node) for node in nodes_of(server)]


def everywhere(scrapes: list[dict], family: str, sample: str, **labels) -> float:
    """The sum over the nodes: for what only the node doing the work records."""
    return sum(total(families, family, sample, **labels) for families in scrapes)


def total(families: dict, family: str, sample: str, **labels) -> float:
    """Sum of the family's samples named `sample` whose labels include `labels`."""
    return sum(
        value
        for (name, sample_labels), value in families.get(family, {}).items()
        if name == sample and all((k, v) in sample_labels for k, v in labels.items())
    )


def test_metric_families_exist_and_move_when_workflows_run(endure_server, runtime, client):
    before = scrape(endure_server)
    ids = [new_id("metered") for _ in range(5)]
    for i, instance_id in enumerate(ids):
        client.schedule_new_workflow(workflow=metered, input=i, instance_id=instance_id)
    for instance_id in ids:
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=WAIT_S)
        assert state is not None and state.runtime_status.name == "COMPLETED"
    after = scrape(endure_server)

    expected_families = [
        "endure_workflows_started",
        "endure_workflows_completed",
        "endure_instances",
        "endure_turn_duration_seconds",
        "endure_activity_duration_seconds",
        "endure_work_items_queued",
        "endure_work_items_in_flight",
        "endure_workers_connected",
        "endure_timers_pending",
        "endure_history_events_appended",
        "endure_raft_term",
        "endure_raft_role",
        "endure_raft_commit_index",
        "endure_raft_applied_index",
        "endure_raft_append_seconds",
        "endure_raft_log_syncs",
        "endure_grpc_requests",
        "endure_grpc_request_duration_seconds",
    ]
    missing = [name for name in expected_families if not any(name in node for node in after)]
    assert not missing, f"missing metric families: {missing}"
    # Raft gauges are per shard.
    terms = after[0]["endure_raft_term"]
    assert terms and all("shard" in dict(labels) for _, labels in terms), terms

    # Every replica applies every command, so any one node counts each start once.
    started = lambda f: total(f[0], "endure_workflows_started", "endure_workflows_started_total", workflow="metered")
    completed = lambda f: total(
        f[0], "endure_workflows_completed", "endure_workflows_completed_total", workflow="metered", status="COMPLETED"
    )
    assert started(after) - started(before) == 5
    assert completed(after) - completed(before) == 5
    appended = lambda f: everywhere(f, "endure_history_events_appended", "endure_history_events_appended_total")
    assert appended(after) > appended(before)
    turns = lambda f: everywhere(f, "endure_turn_duration_seconds", "endure_turn_duration_seconds_count")
    activities = lambda f: everywhere(f, "endure_activity_duration_seconds", "endure_activity_duration_seconds_count")
    assert turns(after) - turns(before) >= 10, "two turns per workflow at least"
    assert activities(after) - activities(before) >= 5
    requests = lambda f: everywhere(f, "endure_grpc_requests", "endure_grpc_requests_total", method="StartInstance", code="0")
    assert requests(after) - requests(before) >= 5
    # Histograms have explicit buckets (not summaries).
    timed = [node["endure_turn_duration_seconds"] for node in after if "endure_turn_duration_seconds" in node]
    assert any(name.endswith("_bucket") for samples in timed for name, _ in samples)
    # No instance ID is ever a label value.
    for node in after:
        for samples in node.values():
            for _, labels in samples:
                assert not any(instance_id in value for _, value in labels for instance_id in ids)
