"""Fixtures for the Dapr Workflow compatibility suite.

Each test module gets its own `endure` server (fresh data dir, free ports) and its own
`WorkflowRuntime` (the worker, running in this process). A module declares

    def register(runtime: WorkflowRuntime) -> None: ...

to register its workflows and activities; the `runtime` fixture calls it before
starting the worker.

With ENDURE_CLUSTER_NODES=3 in the environment, `endure_server` is instead a 3-node Raft
cluster (`endure_server.EndureCluster`): the worker connects to one follower
(`worker_endpoint`), the client (and HTTP calls, via `http_port`) to the other follower
(`endpoint`), and `kill9()` kills whichever node leads at that moment.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from endure_server import EndureCluster, EndureServer, ServerError

RUNTIME_START_TIMEOUT_S = 45.0


def cluster_nodes() -> int:
    """ENDURE_CLUSTER_NODES: 0/1/unset = one `endure serve`; 3 = a 3-node cluster."""
    raw = os.environ.get("ENDURE_CLUSTER_NODES", "").strip()
    if raw in ("", "0", "1"):
        return 1
    if raw != "3":
        raise pytest.UsageError(f"ENDURE_CLUSTER_NODES={raw!r}: only 1 or 3 is supported")
    return 3


CLUSTER_MODE = cluster_nodes() > 1


def pytest_report_header(config):
    if CLUSTER_MODE:
        return "endure: 3-node cluster (worker and client on two different followers)"
    return "endure: single node"


def _host_port(endpoint: str) -> tuple[str, str]:
    host, _, port = endpoint.rpartition(":")
    return host, port


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
    `.kill9()`, `.restart()`. Stopped with SIGTERM after the module.

    In cluster mode an `EndureCluster`: the same attributes are the client node's, plus
    `.worker_endpoint`, `.nodes`, `leader_index()`; `kill9()` kills the current leader."""
    base: Path = tmp_path_factory.mktemp("endure")
    # e.g. ENDURE_COMPAT_LOG_LEVEL=info,endure=debug to see every dispatch in the logs
    log_level = os.environ.get("ENDURE_COMPAT_LOG_LEVEL") or "info"
    if CLUSTER_MODE:
        server = EndureCluster(base_dir=base, size=cluster_nodes(), log_level=log_level)
    else:
        server = EndureServer(
            data_dir=base / "data", log_path=base / "endure.log", log_level=log_level
        )
    try:
        server.start()
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)
    previous = os.environ.get("DAPR_GRPC_ENDPOINT")
    point_sdk_at(server.endpoint)
    try:
        yield server
    finally:
        rcs = server.stop()
        if previous is None:
            os.environ.pop("DAPR_GRPC_ENDPOINT", None)
        else:
            os.environ["DAPR_GRPC_ENDPOINT"] = previous
        # A crash during the module (as opposed to our SIGTERM/SIGKILL) is a failure too.
        nodes = server.nodes if isinstance(server, EndureCluster) else [server]
        if not isinstance(rcs, list):
            rcs = [rcs]
        for node, rc in zip(nodes, rcs):
            if rc not in (0, None, -15, 143):
                print(f"{node.name} exited with code {rc} on SIGTERM\n{node.log_tail()}")


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
    if isinstance(endure_server, EndureCluster):
        # Explicit host/port: the SDK's default endpoint is read once (see point_sdk_at),
        # and the worker must sit on a different node than the client.
        host, port = _host_port(endure_server.worker_endpoint)
        rt = WorkflowRuntime(host=host, port=port)
    else:
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

    if isinstance(endure_server, EndureCluster):
        host, port = _host_port(endure_server.endpoint)  # the client node, not the worker's
        c = DaprWorkflowClient(host=host, port=port)
    else:
        c = DaprWorkflowClient()
    try:
        yield c
    finally:
        c.close()


# ---- server log on failure -------------------------------------------------------------

_LOG_OFFSETS_KEY = pytest.StashKey[dict]()


def _servers_of(item) -> list:
    """Every endure process of the test: one server, or each node of a cluster."""
    servers = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, EndureServer):
            servers.append(value)
        elif isinstance(value, EndureCluster):
            servers.extend(value.nodes)
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
                f"{server.name} log since test start ({server.log_path})",
                server.log_tail(offset=offset),
            )
        )
