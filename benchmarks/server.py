"""The simulated Export API in its own process, for the benchmarks.

    python -m benchmarks.server --spec '{"data": {...}, "latency": {...}, ...}'

Serves ``DataSpec(**spec["data"]).dataset()`` (gz partitions from the on-disk cache) with the
``Latency`` model in ``spec["latency"]`` on a free loopback port, prints one JSON line
``{"url": ..., "pid": ...}`` once it listens, and runs until SIGTERM or SIGINT.

It runs in a process of its own so that its CPU work (building and sending ZIP bodies) does
not share the GIL of the process under test; on a 2-core machine it still shares the cores,
which is why the runner reports its CPU time per run.

Besides the Export API path it answers three control routes (no auth, loopback only):

- ``POST /_bench/warm`` ``{"windows": [["YYYY-MM-DDTHH", "YYYY-MM-DDTHH"], ...]}``: build the
  ZIP body of each window into the simulator's ZIP cache now, so no run pays for it; answers
  each body's size (0 for a window with no data, which is answered 404).
- ``POST /_bench/reset``: forget the request log, attempt counters and the in-flight maximum.
- ``GET /_bench/stats``: requests by status, bytes sent, the in-flight maximum and every
  request's ``[start, end, status, bytes sent]`` since the last reset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import web

try:
    from async_amp.simulator import ExportSimulator, Latency, hours_between
except ModuleNotFoundError:  # a --rev/--reference from before async_amp/testing was renamed
    from async_amp.testing import (  # type: ignore[import-not-found,no-redef]
        ExportSimulator,
        Latency,
        hours_between,
    )

from .common import API_KEY, SECRET_KEY, DataSpec, parse_hour


def build(spec: dict[str, Any]) -> ExportSimulator:
    dataset = DataSpec.from_json(spec["data"]).dataset()
    latency = Latency(**spec["latency"]) if spec.get("latency") else None
    sim = ExportSimulator(
        dataset,
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        latency=latency,
        retry_after_s=int(spec.get("retry_after_s", 1)),
        zip_cache_bytes=int(spec.get("zip_cache_bytes", 256 * 1024 * 1024)),
        chunk_bytes=int(spec.get("chunk_bytes", 256 * 1024)),
    )

    async def warm(request: web.Request) -> web.Response:
        payload = await request.json()
        began = time.monotonic()
        sizes: list[int] = []
        for first, last in payload["windows"]:
            start, end = parse_hour(first), parse_hour(last)
            # the API answers 404 for a window without data: nothing to build
            if not any(dataset.pages(h) for h in hours_between(start, end)):
                sizes.append(0)
                continue
            body = await sim._body(start, end, None)
            sizes.append(body.size)
        return web.json_response({"sizes": sizes, "seconds": time.monotonic() - began})

    async def reset(_: web.Request) -> web.Response:
        sim.reset_log(attempts=True)
        sim.max_in_flight_seen = 0
        return web.json_response({"ok": True})

    async def stats(_: web.Request) -> web.Response:
        records = sim.requests
        statuses = Counter(str(r.status) for r in records)
        return web.json_response(
            {
                "requests": len(records),
                "status": dict(statuses),
                "bytes_sent": sum(r.bytes_sent for r in records),
                "max_in_flight_seen": sim.max_in_flight_seen,
                "log": [
                    [
                        r.start and f"{r.start:%Y-%m-%dT%H}",
                        r.end and f"{r.end:%Y-%m-%dT%H}",
                        r.status,
                        r.bytes_sent,
                    ]
                    for r in records
                ],
            }
        )

    sim.app.router.add_post("/_bench/warm", warm)
    sim.app.router.add_post("/_bench/reset", reset)
    sim.app.router.add_get("/_bench/stats", stats)
    return sim


async def serve(spec: dict[str, Any]) -> None:
    sim = build(spec)
    await sim.start("127.0.0.1", 0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"url": sim.base_url, "pid": os.getpid()}), flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server", description=__doc__)
    parser.add_argument("--spec", required=True, help="JSON: data, latency, zip_cache_bytes")
    args = parser.parse_args(argv)
    asyncio.run(serve(json.loads(args.spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
