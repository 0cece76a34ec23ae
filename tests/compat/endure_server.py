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
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

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


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the server if the test process dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


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
    ):
        self.binary = binary or default_binary()
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / "endure.log"
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        while self.http_port == self.grpc_port:
            self.http_port = free_port()
        self.log_level = log_level
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

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
        ]

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> "EndureServer":
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError(f"endure already running (pid {self.proc.pid})")
        if not os.path.isfile(self.binary) or not os.access(self.binary, os.X_OK):
            raise ServerError(
                f"endure binary not found or not executable: {self.binary} "
                "(set ENDURE_BIN or build it with `cargo build --release`)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        while True:
            self._spawn()
            try:
                self._wait_ready(deadline)
                return self
            except _AddressInUse:
                # The port of a SIGKILLed predecessor can linger for a moment; retry.
                if time.monotonic() >= deadline:
                    raise ServerError(
                        f"endure could not bind its ports within {timeout_s:.0f}s\n"
                        + self.log_tail()
                    )
                time.sleep(0.5)

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
            preexec_fn=_die_with_parent,
        )
        if self not in _LIVE:
            _LIVE.append(self)

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
                    f"endure exited with code {rc} before accepting connections on "
                    f"{self.endpoint}\n" + self.log_tail()
                )
            try:
                with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                self._close_log()
                pid = self.proc.pid
                self._signal(signal.SIGKILL)
                raise ServerError(
                    f"endure (pid {pid}) did not accept connections on {self.endpoint} "
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
        self._append_log(f"===== endure pid {self.proc.pid} killed with SIGKILL =====\n")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> Optional[int]:
        """SIGTERM, wait up to timeout_s, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._append_log(f"===== endure did not exit {timeout_s}s after SIGTERM; SIGKILL =====\n")
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
        return f"----- endure log ({self.log_path}) -----\n{text}\n----- end of endure log -----"


class _AddressInUse(Exception):
    pass


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
