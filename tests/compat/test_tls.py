"""A node serving TLS on its client ports (`--tls-cert`, `--tls-key`): the Dapr SDK with
DAPR_GRPC_ENDPOINT=https://... and the test CA in GRPC_DEFAULT_SSL_ROOTS_FILE_PATH runs a
workflow end to end; without the CA it cannot connect; the HTTP API answers over HTTPS.

The certificates are made by the test (the `test-certs` example of endure-tls, built in
the target directory). The SDK runs in a child process, because gRPC reads its root
certificates once per process. This module starts its own single node."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from compat_helpers import new_id
from endure_server import EndureServer, ServerError, default_binary

SDK_RUN = textwrap.dedent(
    """
    import json, sys
    from dapr.ext.workflow import DaprWorkflowClient, WorkflowRuntime, WorkflowStatus

    def double(ctx, value):
        return value * 2

    def doubling(ctx, value):
        doubled = yield ctx.call_activity(double, input=value)
        return doubled

    runtime = WorkflowRuntime()
    runtime.register_workflow(doubling)
    runtime.register_activity(double)
    runtime.start()
    client = DaprWorkflowClient()
    try:
        instance_id = client.schedule_new_workflow(doubling, input=21, instance_id=sys.argv[1])
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=30)
        print(json.dumps({"status": state.runtime_status.name, "output": state.serialized_output}))
    finally:
        client.close()
        runtime.shutdown()
    """
)


def certs_binary() -> Path:
    return Path(default_binary()).parent / "examples" / "test-certs"


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    base = tmp_path_factory.mktemp("endure-tls")
    certs = base / "certs"
    maker = certs_binary()
    if not maker.is_file():
        pytest.fail(
            f"{maker} is missing: build it with "
            "`cargo build --release -p endure-tls --features testing --example test-certs`",
            pytrace=False,
        )
    subprocess.run([str(maker), str(certs)], check=True)
    server = EndureServer(
        data_dir=base / "data",
        log_path=base / "endure.log",
        extra_args=["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem")],
        name="endure server with TLS",
        tls_ca=certs / "ca.pem",
    )
    try:
        server.start()
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server, certs
    finally:
        server.stop()


def run_sdk(server, instance_id: str, roots: Path | None, timeout: float = 60):
    env = dict(os.environ)
    env["DAPR_GRPC_ENDPOINT"] = f"https://127.0.0.1:{server.grpc_port}"
    env.pop("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", None)
    if roots is not None:
        env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(roots)
    return subprocess.run(
        [sys.executable, "-c", SDK_RUN, instance_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_sdk_over_https_runs_a_workflow(tls_node):
    server, certs = tls_node
    done = run_sdk(server, new_id("tls"), certs / "ca.pem")
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"status": "COMPLETED", "output": "42"}, result


def test_the_sdk_without_the_ca_cannot_connect(tls_node):
    server, certs = tls_node
    # The roots given are another CA's: the handshake fails, nothing is scheduled.
    instance_id = new_id("untrusted")
    try:
        failed = run_sdk(server, instance_id, certs / "other-ca.pem", timeout=15)
        assert failed.returncode != 0, failed.stdout
        said = failed.stderr
    except subprocess.TimeoutExpired as retrying:
        # The SDK's worker retries its connection for ever: also a refusal.
        said = retrying.stderr.decode() if isinstance(retrying.stderr, bytes) else retrying.stderr or ""
    assert "CERTIFICATE_VERIFY_FAILED" in said, said[-3000:]
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    url = f"https://127.0.0.1:{server.http_port}/v1.0/workflows/dapr/{instance_id}"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url, context=context, timeout=10)
    assert missing.value.code == 404


def test_the_http_api_answers_over_https_and_not_in_cleartext(tls_node):
    server, certs = tls_node
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with urllib.request.urlopen(
        f"https://127.0.0.1:{server.http_port}/readyz", context=context, timeout=10
    ) as reply:
        assert reply.status == 200
    # A cleartext request gets a TLS alert back (no HTTP status line) or a closed socket.
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/readyz", timeout=5)
