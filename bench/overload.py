"""Overload: clients ask a node for far more workflow starts than it can commit, and the
node's memory is sampled while they do.

    python3 bench/overload.py --binary ENDURE_BIN [--seconds 30] [--connections 400]
        [--serve-arg=--max-pending-proposals=256 ...]

Starts one `endure serve` on free ports with a fresh data dir, then runs `--connections`
HTTP/1.1 keep-alive clients in one asyncio loop, each posting starts
(`POST /v1.0/workflows/dapr/bench/start?instanceID=...`, no worker connected, so each
start is one commit) back to back for `--seconds`. Every second it prints the node's RSS
(/proc/PID/status VmRSS) and the answers so far: 202 (committed), 429 (refused by a
limit, with Retry-After), other. Prints one JSON summary at the end. The clients never
back off: that is the point.

Needs aiohttp (the compatibility venv has it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time

import aiohttp

from node import rss_kib, serve


async def client(session, base: str, prefix: str, stop: float, counts: collections.Counter):
    n = 0
    while time.monotonic() < stop:
        n += 1
        url = f"{base}/v1.0/workflows/dapr/bench/start?instanceID={prefix}-{n}"
        try:
            async with session.post(url, data=b"") as reply:
                await reply.read()
                counts[reply.status] += 1
        except aiohttp.ClientError:
            counts["error"] += 1


async def run(args, pid: int, http_port: int) -> dict:
    base = f"http://127.0.0.1:{http_port}"
    counts: collections.Counter = collections.Counter()
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=60)
    samples = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stop = time.monotonic() + args.seconds
        tasks = [
            asyncio.create_task(client(session, base, f"c{i}", stop, counts))
            for i in range(args.connections)
        ]
        started = time.monotonic()
        while time.monotonic() < stop:
            await asyncio.sleep(1)
            sample = {"t": round(time.monotonic() - started), "rss_mib": round(rss_kib(pid) / 1024, 1),
                      **{str(k): v for k, v in counts.items()}}
            samples.append(sample)
            print(json.dumps(sample), flush=True)
        await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    rss = [s["rss_mib"] for s in samples]
    return {
        "serve_args": args.serve_arg,
        "connections": args.connections,
        "seconds": round(elapsed, 1),
        "committed_per_s": round(counts[202] / elapsed),
        "refused_429_per_s": round(counts[429] / elapsed),
        "other": {str(k): v for k, v in counts.items() if k not in (202, 429)},
        "rss_mib_first": rss[0] if rss else None,
        "rss_mib_max": max(rss) if rss else None,
        "rss_mib_last": rss[-1] if rss else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--serve-arg", action="append", default=[])
    args = parser.parse_args()
    with serve(args.binary, args.serve_arg) as node:
        summary = asyncio.run(run(args, node.pid, node.http_port))
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
