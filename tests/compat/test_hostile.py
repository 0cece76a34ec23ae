"""Hostile input against the real binary: malformed HTTP/2, huge headers, slow-loris
clients, thousands of idle connections, truncated and invalid protobuf, invalid UTF-8 in
IDs, timestamps out of range. The node must answer with errors (or close the connection),
stay up, keep serving other clients, and every workflow already running must complete.

The attacks go to the node the client uses (in cluster mode: a follower, which forwards).
"""

from __future__ import annotations

import resource
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from dapr.ext.workflow import DaprWorkflowClient, DaprWorkflowContext, WorkflowStatus

from compat_helpers import new_id

HELLO = "/TaskHubSidecarService/Hello"
START = "/TaskHubSidecarService/StartInstance"
RAISE = "/TaskHubSidecarService/RaiseEvent"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def approval(ctx: DaprWorkflowContext, _input):
    answer = yield ctx.wait_for_external_event("go")
    return f"approved {answer}"


def register(runtime) -> None:
    runtime.register_workflow(approval)


# ---- helpers ---------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def timestamp(seconds: int, nanos: int) -> bytes:
    encoded = b""
    if seconds:
        encoded += b"\x08" + varint(seconds & 0xFFFFFFFFFFFFFFFF)
    if nanos:
        encoded += b"\x10" + varint(nanos & 0xFFFFFFFFFFFFFFFF)
    return encoded


def raw_call(port: int, method: str, body: bytes, timeout: float = 10.0):
    """A unary gRPC call with `body` as the encoded request, bytes in and out; returns the
    status code (grpc.StatusCode) and details."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(body, timeout=timeout)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            return error.code(), error.details()


def serving(server) -> None:
    """The node answers a gRPC call and its HTTP readiness probe."""
    code, details = raw_call(server.grpc_port, HELLO, b"")
    assert code == grpc.StatusCode.OK, details
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/readyz", timeout=5) as r:
        assert r.status == 200


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> tuple[bool, bytes]:
    """Reads until the peer closes the connection or `timeout` passes: whether it closed,
    and what it sent before."""
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return True, received
            received += chunk
    except ConnectionResetError:
        return True, received
    except socket.timeout:
        pass
    return False, received


def h2_frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None):
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


@pytest.fixture(scope="module")
def waiting(endure_server, runtime):
    """Workflows started before the attacks, each waiting for its event."""
    client = DaprWorkflowClient()
    ids = [new_id("hostile") for _ in range(5)]
    for instance_id in ids:
        client.schedule_new_workflow(approval, input=None, instance_id=instance_id)
    for instance_id in ids:
        state = client.wait_for_workflow_start(instance_id, timeout_in_seconds=30)
        assert state.runtime_status == WorkflowStatus.RUNNING
    return ids


# ---- the attacks -----------------------------------------------------------------------


def test_malformed_http2_closes_the_connection_and_nothing_else(endure_server, waiting):
    port = endure_server.grpc_port
    attacks = {
        "garbage instead of the preface": b"\x00\xff" * 64,
        "HTTP/1 to the gRPC port": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "headers with broken HPACK": PREFACE + h2_frame(4, 0, 0, b"")
        + h2_frame(1, 0x5, 1, b"\xff\xff\xff\xff\xff\xff"),
        "a frame over the maximum size": PREFACE + h2_frame(4, 0, 0, b"")
        + h2_frame(0, 0, 1, b"", length=0xFFFFFF),
        "DATA on stream 0": PREFACE + h2_frame(4, 0, 0, b"") + h2_frame(0, 0, 0, b"x" * 8),
        "SETTINGS with a bad length": PREFACE + h2_frame(4, 0, 0, b"\x00" * 5),
    }
    for name, payload in attacks.items():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(payload)
            closed, _ = closed_by_peer(sock)
            assert closed, f"{name}: the connection was left open"
        serving(endure_server)


def test_huge_headers_are_refused(endure_server, waiting):
    # A request head is at most 64 KiB on either port.
    for size in (100 * 1024, 1024 * 1024):
        with socket.create_connection(("127.0.0.1", endure_server.http_port), timeout=5) as s:
            request = (b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size
                       + b"\r\n\r\n")
            try:
                s.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused while we were still sending: fine
            closed, answer = closed_by_peer(s)
            assert closed, f"a {size}-byte header left the connection open"
            assert answer == b"" or answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), \
                answer[:80]
    # gRPC metadata of 100 KiB: refused by the server (the client's own limit is higher).
    options = [("grpc.max_metadata_size", 4 * 1024 * 1024)]
    with grpc.insecure_channel(f"127.0.0.1:{endure_server.grpc_port}", options) as channel:
        call = channel.unary_unary(HELLO, request_serializer=None, response_deserializer=None)
        call(b"", metadata=[("x-small", "a" * 1024)], timeout=10)  # a normal call works
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", metadata=[("x-big", "a" * (100 * 1024))], timeout=10)
        assert refused.value.code() != grpc.StatusCode.DEADLINE_EXCEEDED, refused.value
    serving(endure_server)


def test_slow_loris_clients_do_not_starve_others(endure_server, waiting):
    stop = threading.Event()
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", endure_server.http_port), timeout=5)
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)

    def drip():
        while not stop.wait(1):
            for s in socks:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        for _ in range(5):
            started = time.monotonic()
            serving(endure_server)
            assert time.monotonic() - started < 3
            time.sleep(1)
    finally:
        stop.set()
        dripper.join()
        for s in socks:
            s.close()


def test_thousands_of_idle_connections_leave_the_node_serving(endure_server, waiting):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    idle = []
    try:
        # 7,000 on the gRPC port, where every one is accepted ...
        for _ in range(7_000):
            idle.append(socket.create_connection(("127.0.0.1", endure_server.grpc_port),
                                                 timeout=5))
        # ... and 3,000 on the HTTP port, whose 1,024 places are only taken by clients that
        # have spoken.
        for _ in range(3_000):
            idle.append(socket.create_connection(("127.0.0.1", endure_server.http_port),
                                                 timeout=5))
        # New clients are served at once while all of them are open.
        started = time.monotonic()
        serving(endure_server)
        assert time.monotonic() - started < 5
        # The idle ones are closed after the 10 s handshake timeout.
        time.sleep(12)
        closed = 0
        for s in idle[::100]:
            s.setblocking(False)
            try:
                closed += s.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed == len(idle[::100]), f"{closed} of {len(idle[::100])} sampled closed"
        serving(endure_server)
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_bad_protobuf_and_bad_values_get_errors(endure_server, waiting):
    port = endure_server.grpc_port
    invalid_utf8 = b"\xff\xfe\xfd"
    cases = {
        "truncated message": (START, field(1, b"abc")[:-2]),
        "a length past the end": (START, b"\x0a\x7f" + b"x" * 5),
        "invalid UTF-8 in the ID": (START, field(1, invalid_utf8) + field(2, b"approval")),
        "invalid UTF-8 in the name": (START, field(1, b"x") + field(2, invalid_utf8)),
        "invalid UTF-8 in an event name": (RAISE, field(1, b"x") + field(2, invalid_utf8)),
        "a wire type that does not exist": (START, b"\x0f\x01"),
    }
    for name, (method, body) in cases.items():
        code, details = raw_call(port, method, body)
        assert code != grpc.StatusCode.OK, name
        assert code != grpc.StatusCode.UNAVAILABLE, (name, details)
    # Timestamps out of range: a clear refusal or a start that is stored as given, never a
    # crash; nothing here may take the node down.
    for seconds, nanos in [(2**63 - 1, 0), (-(2**63), 0), (253_402_300_800, 0),
                           (1, -1), (1, 2_000_000_000), (-62_135_596_801, 0)]:
        instance_id = new_id("ts")
        body = (field(1, instance_id.encode()) + field(2, b"approval")
                + field(5, timestamp(seconds, nanos)))
        code, details = raw_call(port, START, body)
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), \
            (seconds, nanos, code, details)
    # The HTTP API: bad percent-encoding and invalid UTF-8 in the path.
    for path in ["/v1.0/workflows/dapr/%ff%fe/start", "/v1.0/workflows/dapr/approval/start"
                 "?instanceID=%ff", "/v1.0/workflows/dapr/%zz"]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{endure_server.http_port}{path}", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                status = r.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert 400 <= status < 500, (path, status)
    serving(endure_server)


def test_the_workflows_running_before_the_attacks_complete(endure_server, waiting):
    client = DaprWorkflowClient()
    for instance_id in waiting:
        client.raise_workflow_event(instance_id, "go", data="yes")
    for instance_id in waiting:
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        assert state.runtime_status == WorkflowStatus.COMPLETED
        assert state.serialized_output == '"approved yes"'
    nodes = getattr(endure_server, "nodes", [endure_server])
    assert all(node.is_running() for node in nodes), "a node died"
