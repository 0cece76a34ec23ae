"""Fixtures for the Dapr Workflow compatibility suite.

Each test module gets its own `endure` server (fresh data dir, free ports) and its own
`WorkflowRuntime` (the worker, running in this process). A module declares

    def register(runtime: WorkflowRuntime) -> None: ...

to register its workflows and activities; the `runtime` fixture calls it before
starting the worker.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from endure_server import EndureServer, ServerError

RUNTIME_START_TIMEOUT_S = 45.0


def point_sdk_at(endpoint: str) -> None:
    """Make the Dapr SDK talk to `endpoint`.

    `dapr.conf.settings` copies the environment once, when `dapr.conf` is first imported
    (at collection time), so setting DAPR_GRPC_ENDPOINT later in os.environ alone has
    no effect on DaprWorkflowClient()/WorkflowRuntime(). Set both.
    """
    os.environ["DAPR_GRPC_ENDPOINT"] = endpoint
    from dapr.conf import settings

    settings.DAPR_GRPC_ENDPOINT = endpoint


# ---- server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def endure_server(tmp_path_factory):
    """A running endure server; `.endpoint`, `.grpc_port`, `.http_port`, `.data_dir`,
    `.kill9()`, `.restart()`. Stopped with SIGTERM after the module."""
    base: Path = tmp_path_factory.mktemp("endure")
    server = EndureServer(data_dir=base / "data", log_path=base / "endure.log")
    try:
        server.start()
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)
    previous = os.environ.get("DAPR_GRPC_ENDPOINT")
    point_sdk_at(server.endpoint)
    try:
        yield server
    finally:
        rc = server.stop()
        if previous is None:
            os.environ.pop("DAPR_GRPC_ENDPOINT", None)
        else:
            os.environ["DAPR_GRPC_ENDPOINT"] = previous
        # A crash during the module (as opposed to our SIGTERM/SIGKILL) is a failure too.
        if rc not in (0, None, -15, 143):
            print(f"endure exited with code {rc} on SIGTERM\n{server.log_tail()}")


# ---- SDK worker and client -----------------------------------------------------------


def start_runtime(runtime, timeout_s: float = RUNTIME_START_TIMEOUT_S) -> None:
    """WorkflowRuntime.start() blocks until the GetWorkItems stream is up and retries a
    failing Hello forever; bound it so a broken server fails the test instead of hanging."""
    errors: list = []

    def _start():
        try:
            runtime.start()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=_start, name="runtime-start", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        runtime.shutdown()  # unblocks start()
        t.join(10)
        raise RuntimeError(
            f"WorkflowRuntime.start() did not finish within {timeout_s}s "
            "(Hello or GetWorkItems never succeeded)"
        )
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def runtime(endure_server, request):
    """The module's WorkflowRuntime, started against `endure_server`."""
    from dapr.ext.workflow import WorkflowRuntime

    register = getattr(request.module, "register", None)
    if register is None:
        pytest.fail(f"{request.module.__name__} has no register(runtime) function")
    rt = WorkflowRuntime()  # endpoint from DAPR_GRPC_ENDPOINT (see point_sdk_at)
    register(rt)
    try:
        start_runtime(rt)
    except Exception as e:
        pytest.fail(f"{e}\n{endure_server.log_tail()}", pytrace=False)
    try:
        yield rt
    finally:
        rt.shutdown()


@pytest.fixture(scope="module")
def client(endure_server, runtime):
    """A DaprWorkflowClient for the module's server (the worker is already running)."""
    from dapr.ext.workflow import DaprWorkflowClient

    c = DaprWorkflowClient()
    try:
        yield c
    finally:
        c.close()


# ---- server log on failure -------------------------------------------------------------

_LOG_OFFSETS_KEY = pytest.StashKey[dict]()


def _servers_of(item) -> list:
    servers = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, EndureServer):
            servers.append(value)
    from endure_server import _LIVE

    for s in _LIVE:
        if s not in servers:
            servers.append(s)
    return servers


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    from endure_server import _LIVE

    item.stash[_LOG_OFFSETS_KEY] = {id(s): s.log_size() for s in _LIVE}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    offsets = item.stash.get(_LOG_OFFSETS_KEY, {})
    for server in _servers_of(item):
        offset = offsets.get(id(server), 0)
        report.sections.append(
            (
                f"endure server log since test start ({server.log_path})",
                server.log_tail(offset=offset),
            )
        )
