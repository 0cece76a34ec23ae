"""Flood: gRPC clients offer a node ten times the starts it can commit, open loop, and the
node's memory is sampled while they do.

    python3 bench/flood.py --binary ENDURE_BIN [--seconds 30] [--times 10]
        [--capacity-seconds 10] [--serve-arg=--max-pending-proposals=256 ...]

Needs h2load (Debian's nghttp2-client). Starts one `endure serve` on free ports with a fresh
data dir, then:

1. capacity: h2load sends StartInstance calls (gRPC over HTTP/2, generated IDs, a start
   time in 2100 so no worker is needed and each call is one commit) closed loop, 8
   connections x 64 streams, for `--capacity-seconds`; committed calls per second is the
   capacity.
2. flood: h2load sends at `--times` x that rate, open loop (`--rps` per connection, 100
   connections x 1000 streams each, so requests do not wait for answers to go out), for
   `--seconds`. Every second the node's RSS is sampled.

The counts come from the node's own /metrics (endure_grpc_requests_total by code), not
from h2load, which sees every gRPC answer as HTTP 200. Prints one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time

from node import metrics, rss_kib, serve

# gRPC codes a flood may be answered with: OK, and RESOURCE_EXHAUSTED from a limit.
EXPECTED_CODES = {"0", "8"}

PATH = "/TaskHubSidecarService/StartInstance"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def start_request() -> bytes:
    """One gRPC frame of CreateInstanceRequest{name: "flood", scheduledStartTimestamp: 2100}."""
    timestamp = b"\x08" + varint(4_102_444_800)
    message = b"\x12\x05flood" + b"\x2a" + varint(len(timestamp)) + timestamp
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_counts(port: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    pattern = re.compile(r'^endure_grpc_requests_total\{(.*)\} (\d+)')
    for line in metrics(port).splitlines():
        match = pattern.match(line)
        if match and 'method="StartInstance"' in match.group(1):
            code = re.search(r'code="([^"]+)"', match.group(1))
            counts[code.group(1) if code else "?"] = int(match.group(2))
    return counts


def h2load(port: int, body: str, seconds: int, clients: int, streams: int,
           rps: int | None) -> str:
    command = ["h2load", "-D", str(seconds), "-c", str(clients), "-m", str(streams),
               "-t", "1", "-d", body, "-H", "content-type: application/grpc",
               "-H", "te: trailers", f"http://127.0.0.1:{port}{PATH}"]
    if rps:
        command[1:1] = ["--rps", str(rps)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def ok(counts: dict[str, int]) -> int:
    return counts.get("OK", 0) + counts.get("0", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--times", type=float, default=10.0)
    parser.add_argument("--capacity-seconds", type=int, default=10)
    parser.add_argument("--serve-arg", action="append", default=[])
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".bin") as body, \
            serve(args.binary, args.serve_arg) as node:
        body.write(start_request())
        body.flush()
        before = grpc_counts(node.http_port)
        h2load(node.grpc_port, body.name, args.capacity_seconds, 8, 64, None)
        after = grpc_counts(node.http_port)
        capacity = (ok(after) - ok(before)) / args.capacity_seconds
        if capacity <= 0:
            raise SystemExit(f"nothing committed in the capacity run: {after}")
        clients = 100
        offered = capacity * args.times
        rps = max(1, round(offered / clients))
        samples = []
        stop = threading.Event()

        def sample():
            started = time.monotonic()
            while not stop.wait(1):
                samples.append({"t": round(time.monotonic() - started),
                                "rss_mib": round(rss_kib(node.pid) / 1024, 1)})
                print(json.dumps(samples[-1]), flush=True)

        sampler = threading.Thread(target=sample)
        sampler.start()
        flood_from = grpc_counts(node.http_port)
        started = time.monotonic()
        report = h2load(node.grpc_port, body.name, args.seconds, clients, 1000, rps)
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        flood_to = grpc_counts(node.http_port)
        answered = {code: flood_to.get(code, 0) - flood_from.get(code, 0) for code in flood_to}
        sent = re.search(r"finished in [^,]+, ([\d.]+) req/s", report)
        rss = [s["rss_mib"] for s in samples]
        print(json.dumps({
            "serve_args": args.serve_arg,
            "capacity_per_s": round(capacity),
            "offered_per_s": rps * clients,
            "h2load_req_per_s": float(sent.group(1)) if sent else None,
            "seconds": round(elapsed, 1),
            "answers_per_s": {code: round(n / elapsed) for code, n in answered.items()},
            "rss_mib_first": rss[0] if rss else None,
            "rss_mib_max": max(rss) if rss else None,
            "rss_mib_last": rss[-1] if rss else None,
        }))
        # h2load resets the streams still sending when its time is up; tonic answers
        # those UNKNOWN (2, "error reading a body"). Up to 1 % of them is that.
        total = sum(answered.values())
        unexpected = {code: n for code, n in answered.items()
                      if code not in EXPECTED_CODES and n > 0
                      and not (code == "2" and n <= total / 100)}
        if unexpected:
            print(f"answers other than OK and RESOURCE_EXHAUSTED: {unexpected}", file=sys.stderr)
            return 1
        if not ok(answered) or not answered.get("8"):
            print("a flood of 10x must see both commits and refusals", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
