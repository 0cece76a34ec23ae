"""Start and stop a real `endure` server process for compatibility tests.

Standard library only: it is imported by `conftest.py` (main suite venv) and run as a
script by `run_peer_suite.sh` (separate venv), so it must not import any SDK.

As a script:

    python3 endure_server.py run [--host-for-env localhost] -- COMMAND [ARGS...]

starts the server on free ports with a fresh data dir, waits until its gRPC port
accepts connections, runs COMMAND with DAPR_GRPC_ENDPOINT=<host>:<grpc_port> (plus
ENDURE_GRPC_PORT / ENDURE_HTTP_PORT / ENDURE_DATA_DIR) in its environment, stops the
server (SIGTERM) and exits with COMMAND's exit code. On failure it prints the tail of
the server log.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_BYTES = 64 * 1024

_LIVE: list["EndureServer"] = []


class ServerError(RuntimeError):
    """The server could not be started, or died before it became ready."""


def default_binary() -> str:
    """ENDURE_BIN, else $CARGO_TARGET_DIR/release/endure (CARGO_TARGET_DIR defaults to
    ~/.cache/endure-target)."""
    explicit = os.environ.get("ENDURE_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "endure-target"
    )
    return os.path.join(target, "release", "endure")


def free_port() -> int:
    """A port that was free a moment ago (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EndureServer:
    """One `endure serve` process; can be SIGKILLed and restarted on the same ports
    and data dir."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Optional[Path] = None,
        binary: Optional[str] = None,
        grpc_port: Optional[int] = None,
        http_port: Optional[int] = None,
        log_level: str = "info",
        extra_args: Sequence[str] = (),
        name: str = "endure server",
        tls_ca: Optional[Path] = None,
    ):
        self.binary = binary or default_binary()
        self.extra_args = list(extra_args)
        self.name = name
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / "endure.log"
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        while self.http_port == self.grpc_port:
            self.http_port = free_port()
        self.log_level = log_level
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        # With a CA, the node serves TLS (--tls-cert): readiness is asked over TLS.
        self.tls_ca = Path(tls_ca) if tls_ca else None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        return [
            self.binary,
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--grpc-addr",
            f"127.0.0.1:{self.grpc_port}",
            "--http-addr",
            f"127.0.0.1:{self.http_port}",
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> "EndureServer":
        self.spawn()
        self.wait_ready(time.monotonic() + timeout_s)
        return self

    def spawn(self) -> None:
        """Start the process without waiting for it (see `wait_ready`). A cluster spawns
        all its nodes first: a node is ready only once a majority of them runs."""
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError(f"{self.name} already running (pid {self.proc.pid})")
        if not os.path.isfile(self.binary) or not os.access(self.binary, os.X_OK):
            raise ServerError(
                f"endure binary not found or not executable: {self.binary} "
                "(set ENDURE_BIN or build it with `cargo build --release`)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._spawn()

    def wait_ready(self, deadline: float) -> None:
        """Wait until the spawned process is ready to serve (/readyz); respawn it while it
        fails with "address already in use"."""
        while True:
            try:
                self._wait_ready(deadline)
                return
            except _AddressInUse:
                # The port of a SIGKILLed predecessor can linger for a moment; retry.
                if time.monotonic() >= deadline:
                    raise ServerError(
                        f"{self.name} could not bind its ports in time\n" + self.log_tail()
                    )
                time.sleep(0.5)
                self._spawn()

    def _spawn(self) -> None:
        self.starts += 1
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(
                f"\n===== endure start #{self.starts} at {time.strftime('%H:%M:%S')}: "
                f"{' '.join(cmd)} =====\n".encode()
            )
        self._log_file = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # No preexec_fn: it forces a full fork that runs grpcio's after-fork hooks in a
            # process whose SDK threads are inside gRPC, which aborted the child now and
            # then ("Fatal Python error: Aborted"). Leftover servers are killed at exit.
        )
        if self not in _LIVE:
            _LIVE.append(self)

    def _ready(self) -> bool:
        """Whether GET /readyz answers 200 (a leader is known and serving)."""
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5) as raw:
                sock = raw
                if self.tls_ca is not None:
                    import ssl

                    context = ssl.create_default_context(cafile=str(self.tls_ca))
                    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def _wait_ready(self, deadline: float) -> None:
        start_offset = self._log_size_at_last_start()
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._close_log()
                text = self.log_text(start_offset)
                if "address already in use" in text.lower() or "addrinuse" in text.lower():
                    raise _AddressInUse()
                raise ServerError(
                    f"{self.name} exited with code {rc} before accepting connections on "
                    f"{self.endpoint}\n" + self.log_tail()
                )
            # Every port opens at start; /readyz answers 200 once the node can serve.
            if self._ready():
                return
            if time.monotonic() >= deadline:
                self._close_log()
                pid = self.proc.pid
                self._signal(signal.SIGKILL)
                raise ServerError(
                    f"{self.name} (pid {pid}) did not accept connections on {self.endpoint} "
                    f"in time\n" + self.log_tail()
                )
            time.sleep(0.1)

    def _log_size_at_last_start(self) -> int:
        # Everything after the last start banner belongs to the current process.
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return 0
        idx = data.rfind(b"===== endure start #")
        return max(idx, 0)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def _close_log(self) -> None:
        f = getattr(self, "_log_file", None)
        if f is not None:
            f.close()
            self._log_file = None

    def kill9(self) -> None:
        """SIGKILL the server and wait for it to be gone."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self._close_log()
        self._append_log(f"===== {self.name} pid {self.proc.pid} killed with SIGKILL =====\n")

    def terminate(self) -> None:
        """Send SIGTERM without waiting (`stop` waits)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> Optional[int]:
        """SIGTERM, wait up to timeout_s, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.terminate()
            try:
                rc = self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._append_log(f"===== {self.name} did not exit {timeout_s}s after SIGTERM; SIGKILL =====\n")
                self.proc.kill()
                rc = self.proc.wait()
        self._close_log()
        if self in _LIVE:
            _LIVE.remove(self)
        return rc

    def restart(self, timeout_s: float = READY_TIMEOUT_S) -> "EndureServer":
        """Start again on the same ports and data dir (stopping it first if it runs)."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        return self.start(timeout_s)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- logs ------------------------------------------------------------------------

    def _append_log(self, line: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(line)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_text(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, max_bytes: int = LOG_TAIL_BYTES, offset: int = 0) -> str:
        text = self.log_text(offset)
        if len(text) > max_bytes:
            text = "[... log truncated ...]\n" + text[-max_bytes:]
        return (
            f"----- {self.name} log ({self.log_path}) -----\n{text}\n"
            f"----- end of {self.name} log -----"
        )


class _AddressInUse(Exception):
    pass


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free a moment ago (all bound at once, then closed)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EndureCluster:
    """A Raft cluster of `size` `endure serve` processes on one machine (free gRPC, HTTP and
    Raft ports each; data dirs and logs under `base_dir`).

    Duck-types `EndureServer` for the test suite: `.endpoint`, `.grpc_port`, `.http_port`
    and `.data_dir` are those of `client_node`, a follower chosen at start; `worker_node`
    is the other follower (the SDK worker connects there, `.worker_endpoint`), so every
    request of the suite is forwarded to the leader and every work item relayed from it.
    `kill9()` SIGKILLs whichever node leads at that moment; `restart()` brings back the
    node killed last on the same ports, flags and data dir.
    """

    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        binary: Optional[str] = None,
        log_level: str = "info",
    ):
        if size < 3:
            raise ValueError("a cluster with followers for the worker and the client needs 3 nodes")
        self.base_dir = Path(base_dir)
        self.binary = binary or default_binary()
        ports = free_ports(3 * size)
        grpc_ports, http_ports, raft_ports = ports[:size], ports[size : 2 * size], ports[2 * size :]
        peers: list[str] = []
        for i in range(size):
            peers += ["--peer", f"{i + 1}=127.0.0.1:{raft_ports[i]}"]
        self.nodes: list[EndureServer] = []
        for i in range(size):
            node_id = i + 1
            self.nodes.append(
                EndureServer(
                    data_dir=self.base_dir / f"node{node_id}" / "data",
                    log_path=self.base_dir / f"node{node_id}.log",
                    binary=self.binary,
                    grpc_port=grpc_ports[i],
                    http_port=http_ports[i],
                    log_level=log_level,
                    extra_args=[
                        "--node-id",
                        str(node_id),
                        "--raft-addr",
                        f"127.0.0.1:{raft_ports[i]}",
                        *peers,
                    ],
                    name=f"endure node {node_id}",
                )
            )
        self.raft_ports = raft_ports
        self.worker_index: Optional[int] = None
        self.client_index: Optional[int] = None
        self.killed: list[int] = []  # indexes of the nodes kill9() hit, in order

    # ---- the nodes the SDK talks to -----------------------------------------------------

    @property
    def worker_node(self) -> EndureServer:
        assert self.worker_index is not None, "cluster not started"
        return self.nodes[self.worker_index]

    @property
    def client_node(self) -> EndureServer:
        assert self.client_index is not None, "cluster not started"
        return self.nodes[self.client_index]

    @property
    def endpoint(self) -> str:
        return self.client_node.endpoint

    @property
    def worker_endpoint(self) -> str:
        return self.worker_node.endpoint

    @property
    def grpc_port(self) -> int:
        return self.client_node.grpc_port

    @property
    def http_port(self) -> int:
        return self.client_node.http_port

    @property
    def data_dir(self) -> Path:
        return self.client_node.data_dir

    @property
    def log_path(self) -> Path:
        return self.base_dir

    @property
    def pid(self) -> Optional[int]:
        return self.client_node.pid

    def is_running(self) -> bool:
        return all(n.is_running() for n in self.nodes)

    # ---- Raft state, through `endure cluster status` ------------------------------------

    def status(self) -> list[dict]:
        """One dict per running node that answered (`nodeId`, `state`, `leaderId`, `term`,
        ...), as printed by `endure cluster status --output json`."""
        running = [n for n in self.nodes if n.is_running()]
        if not running:
            return []
        cmd = [
            self.binary,
            "cluster",
            "status",
            "--endpoint",
            ",".join(f"http://{n.endpoint}" for n in running),
            "--output",
            "json",
            "--timeout",
            "3",
        ]
        try:
            # Exits non-zero when a node does not answer, but still prints the others.
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
            data = json.loads(out)
        except (OSError, subprocess.SubprocessError, ValueError):
            return []
        if not isinstance(data, list):
            return []
        return [d for d in data if isinstance(d, dict) and "nodeId" in d and "error" not in d]

    def _index_of(self, node_id) -> Optional[int]:
        try:
            i = int(node_id) - 1
        except (TypeError, ValueError):
            return None
        return i if 0 <= i < len(self.nodes) else None

    def leader_index(self, statuses: Optional[list[dict]] = None) -> Optional[int]:
        """Index in `.nodes` of the node that says it leads in the newest term, or None
        (no leader right now, or an election in progress)."""
        statuses = self.status() if statuses is None else statuses
        if not statuses:
            return None
        top = max(d.get("term") or 0 for d in statuses)
        leaders = [d for d in statuses if d.get("state") == "Leader" and d.get("term") == top]
        if len(leaders) != 1:
            return None
        return self._index_of(leaders[0].get("nodeId"))

    def follower_indexes(self) -> list[int]:
        leader = self.leader_index()
        return [i for i, n in enumerate(self.nodes) if i != leader and n.is_running()]

    def wait_for_leader(self, timeout_s: float = READY_TIMEOUT_S) -> int:
        """Wait until a leader exists and every running node answers and names it;
        returns its index."""
        deadline = time.monotonic() + timeout_s
        last: list[dict] = []
        while True:
            for i, n in enumerate(self.nodes):
                if n.proc is not None and not n.is_running() and i not in self.killed:
                    raise ServerError(f"{n.name} exited with code {n.proc.poll()}\n" + n.log_tail())
            last = self.status()
            leader = self.leader_index(last)
            running = sum(1 for n in self.nodes if n.is_running())
            if leader is not None and len(last) == running:
                leader_id = leader + 1
                if all(d.get("leaderId") == leader_id for d in last):
                    return leader
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"no Raft leader known to every running node within {timeout_s:.0f}s; "
                    f"last status: {json.dumps(last)}\n" + self.log_tail()
                )
            time.sleep(0.2)

    # ---- lifecycle --------------------------------------------------------------------

    def start(self, timeout_s: float = 2 * READY_TIMEOUT_S) -> "EndureCluster":
        deadline = time.monotonic() + timeout_s
        try:
            # A node is ready only once a majority runs: spawn them all first.
            for n in self.nodes:
                n.spawn()
            for n in self.nodes:
                n.wait_ready(deadline)
            leader = self.wait_for_leader(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        followers = [i for i in range(len(self.nodes)) if i != leader]
        self.worker_index, self.client_index = followers[0], followers[1]
        self.worker_node.name += " (worker's node)"
        self.client_node.name += " (client's node)"
        for n in self.nodes:
            n._append_log(
                f"===== cluster up: leader node {leader + 1}, worker on node "
                f"{self.worker_index + 1}, client on node {self.client_index + 1} =====\n"
            )
        return self

    def kill9(self, timeout_s: float = READY_TIMEOUT_S, wait_for_new_leader: bool = True) -> int:
        """SIGKILL the node that leads now (waiting for one if an election is under way)
        and remember it for `restart()`. Returns its index.

        Then (unless `wait_for_new_leader=False`) wait until the survivors have elected a
        new leader: otherwise a `restart()` a second later races the election (timeout
        ~1 s), the old leader often wins again, and nothing ever fails over."""
        leader = self.wait_for_leader(timeout_s)
        self.nodes[leader].kill9()
        self.killed.append(leader)
        for i, n in enumerate(self.nodes):
            if i != leader:
                n._append_log(f"===== test harness: leader node {leader + 1} killed with SIGKILL =====\n")
        if wait_for_new_leader:
            started = time.monotonic()
            new = self.wait_for_leader(timeout_s)
            for n in self.nodes:
                if n.is_running():
                    n._append_log(
                        f"===== test harness: node {new + 1} leads {time.monotonic() - started:.2f}s "
                        f"after node {leader + 1} was killed =====\n"
                    )
        return leader

    def restart(self, timeout_s: float = 2 * READY_TIMEOUT_S) -> "EndureCluster":
        """Start the node killed last again (same ports, flags, data dir); wait until it
        serves gRPC and every node names the same leader."""
        if not self.killed:
            raise ServerError("restart(): no node of the cluster was killed")
        deadline = time.monotonic() + timeout_s
        node = self.nodes[self.killed[-1]]
        if node.is_running():
            node.stop()
        node.spawn()
        node.wait_ready(deadline)
        self.wait_for_leader(max(1.0, deadline - time.monotonic()))
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> list[Optional[int]]:
        """SIGTERM every node at once, then wait for each. Returns their exit codes."""
        for n in self.nodes:
            n.terminate()
        return [n.stop(timeout_s) for n in self.nodes]

    # ---- logs -------------------------------------------------------------------------

    def log_size(self) -> list[int]:
        return [n.log_size() for n in self.nodes]

    def _offsets(self, offset) -> list[int]:
        if isinstance(offset, (list, tuple)):
            return list(offset) + [0] * (len(self.nodes) - len(offset))
        return [offset] * len(self.nodes)

    def log_text(self, offset=0) -> str:
        return "\n".join(
            f"----- {n.name} -----\n{n.log_text(o)}"
            for n, o in zip(self.nodes, self._offsets(offset))
        )

    def log_tail(self, max_bytes: int = LOG_TAIL_BYTES, offset=0) -> str:
        """Every node's log tail, labelled (`offset`: one int, or one per node)."""
        return "\n".join(
            n.log_tail(max_bytes=max_bytes, offset=o)
            for n, o in zip(self.nodes, self._offsets(offset))
        )


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        try:
            server.stop(timeout_s=5)
        except Exception:
            pass


def _run(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("endure_server.py run: no command given", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="endure-peer-"))
    server = EndureServer(data_dir=base / "data", log_path=base / "endure.log")
    try:
        server.start()
    except ServerError as e:
        print(f"endure_server.py: {e}", file=sys.stderr)
        return 3
    print(
        f"endure_server.py: endure pid {server.pid} serving gRPC on {server.endpoint}, "
        f"HTTP on 127.0.0.1:{server.http_port}, data {server.data_dir}, log {server.log_path}",
        flush=True,
    )
    env = dict(os.environ)
    env["DAPR_GRPC_ENDPOINT"] = f"{args.host_for_env}:{server.grpc_port}"
    env["ENDURE_GRPC_PORT"] = str(server.grpc_port)
    env["ENDURE_HTTP_PORT"] = str(server.http_port)
    env["ENDURE_DATA_DIR"] = str(server.data_dir)
    try:
        rc = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        rc = 130
    alive = server.is_running()
    stop_rc = server.stop()
    if rc != 0 or not alive:
        if not alive:
            print(f"endure_server.py: endure died during the run (exit {stop_rc})", file=sys.stderr)
        print(server.log_tail(), file=sys.stderr)
        if rc == 0:
            rc = 4
    return rc


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start endure, run a command against it, stop endure")
    run.add_argument(
        "--host-for-env",
        default="127.0.0.1",
        help="host part written into DAPR_GRPC_ENDPOINT (the server binds 127.0.0.1)",
    )
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.cmd == "run":
        return _run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
