"""One `endure serve` on free ports with a fresh data dir, for the load scripts here."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    """The process's resident memory (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_ready(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the node did not become ready")


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


@dataclass
class Node:
    pid: int
    grpc_port: int
    http_port: int


@contextlib.contextmanager
def serve(binary: str, serve_args: list[str]):
    """Runs a node until the block ends (then SIGTERM); yields a `Node`."""
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        log = open(os.path.join(data, "endure.log"), "w")
        node = subprocess.Popen(
            [binary, "serve", "--data-dir", os.path.join(data, "db"),
             "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}",
             "--log-level", "warn", *serve_args],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            wait_ready(http_port, time.monotonic() + 30)
            yield Node(node.pid, grpc_port, http_port)
        finally:
            node.terminate()
            node.wait(timeout=20)
