"""A node started with an API token (`--api-token-file`): the Dapr SDK with DAPR_API_TOKEN
set runs workflows end to end; without it, or with a wrong one, every call is refused with
UNAUTHENTICATED and nothing is created. The HTTP API asks for the same header (401), while
/healthz and /readyz stay open.

This module starts its own node (single, whatever the cluster mode), since the shared one
runs without a token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
from dapr.conf import settings
from dapr.ext.workflow import (
    DaprWorkflowClient,
    DaprWorkflowContext,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
)

from compat_helpers import new_id
from conftest import start_runtime
from endure_server import EndureServer, ServerError

TOKEN = "compat-token-8f3a1c"


def double(ctx: WorkflowActivityContext, value: int) -> int:
    return value * 2


def doubling_workflow(ctx: DaprWorkflowContext, value: int):
    doubled = yield ctx.call_activity(double, input=value)
    return doubled


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A node that requires TOKEN, with the SDK's token setting restored afterwards."""
    base = tmp_path_factory.mktemp("endure-token")
    token_file = base / "api-token"
    token_file.write_text(TOKEN + "\n")
    server = EndureServer(
        data_dir=base / "data",
        log_path=base / "endure.log",
        extra_args=["--api-token-file", str(token_file)],
        name="endure server with a token",
    )
    try:
        server.start()
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)
    previous = settings.DAPR_API_TOKEN
    try:
        yield server
    finally:
        settings.DAPR_API_TOKEN = previous
        server.stop()


def _host_port(server) -> tuple[str, str]:
    return "127.0.0.1", str(server.grpc_port)


def test_the_sdk_with_the_token_runs_workflows(guarded):
    settings.DAPR_API_TOKEN = TOKEN
    host, port = _host_port(guarded)
    runtime = WorkflowRuntime(host=host, port=port)
    runtime.register_workflow(doubling_workflow)
    runtime.register_activity(double)
    start_runtime(runtime)
    client = DaprWorkflowClient(host=host, port=port)
    try:
        instance_id = client.schedule_new_workflow(
            doubling_workflow, input=21, instance_id=new_id("token")
        )
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=30)
        assert state is not None
        assert state.runtime_status == WorkflowStatus.COMPLETED
        assert json.loads(state.serialized_output) == 42
    finally:
        client.close()
        runtime.shutdown()


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_the_sdk_without_the_token_is_refused_and_creates_nothing(guarded, token):
    settings.DAPR_API_TOKEN = token
    host, port = _host_port(guarded)
    client = DaprWorkflowClient(host=host, port=port)
    instance_id = new_id("refused")
    try:
        with pytest.raises(grpc.RpcError) as refused:
            client.schedule_new_workflow(doubling_workflow, input=1, instance_id=instance_id)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
        assert "dapr-api-token" in refused.value.details()
        assert (token or "") == "" or token not in refused.value.details()
    finally:
        client.close()
    # With the token, the instance is not there: the refused call changed nothing.
    settings.DAPR_API_TOKEN = TOKEN
    client = DaprWorkflowClient(host=host, port=port)
    try:
        assert client.get_workflow_state(instance_id) is None
    finally:
        client.close()


def _http(server, path: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_http_api_asks_for_the_same_token(guarded):
    path = "/v1.0/workflows/dapr/no-such-instance"
    assert _http(guarded, path) == 401
    assert _http(guarded, path, {"dapr-api-token": "wrong"}) == 401
    # With the token the request reaches the API, which answers for the missing instance.
    assert _http(guarded, path, {"dapr-api-token": TOKEN}) == 404
    assert _http(guarded, "/healthz") == 200
    assert _http(guarded, "/readyz") == 200
