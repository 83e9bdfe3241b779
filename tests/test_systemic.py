"""Systemic failures stop the run early (docs/reliability.md, "When the run cannot go on"):
a full disk in every format, an Export API that is silent or resets every connection, a store
that goes away mid-run. Each stop is one STOPPED line, the summary, exit 1, no traceback; the
bounds are counted in requests and attempts, never in seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from async_amp.hours import hour_range
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import run_simulator

from .filesystems import mounted_tmpfs
from .helpers import (
    DAY1,
    KEY,
    SECRET,
    assert_output_matches,
    cli_extract,
    last_hour_of,
    make_config,
    run,
    small_dataset,
)
from .proxy import BackgroundProxy, Hitch, run_proxy

pytestmark = pytest.mark.anyio


def stopped_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "STOPPED" in line]


# --------------------------------------------------------------------------- a disk that fills up


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
@pytest.mark.parametrize("size", [150_000, 700_000], ids=["spool-full", "output-full"])
def test_disk_full_in_parquet_and_delta_stops_with_one_line_and_a_summary(
    tmp_path: Path, fmt: str, size: int
) -> None:
    """A small disk fills while the first member spools (no hour can start) or after some
    hours are committed (the Parquet writer or the Delta commit meets ENOSPC)."""
    dataset = small_dataset()
    with (
        mounted_tmpfs(tmp_path / "disk", size) as disk,
        BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
    ):
        out = disk.path / "data"
        summary = tmp_path / "summary.json"
        args = ("--start", "2026-11-01", "--end", "2026-11-01T23", "--concurrency", "2")
        done = cli_extract(
            sim.base_url,
            out,
            *args,
            "--format",
            fmt,
            "--summary-json",
            str(summary),
            logs=tmp_path / "logs",
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        stopped = stopped_lines(done.stdout)
        assert len(stopped) == 1, done.stdout + done.stderr
        assert re.fullmatch(
            r"  STOPPED website: No space left on device .*: \d+ of 24 hours complete; free "
            r"space and run again, completed hours are kept",
            stopped[0],
        ), stopped[0]
        assert "FAILED" not in done.stdout
        report = json.loads(summary.read_text())
        project = report["projects"]["website"]
        assert project["stopped"] == stopped[0].removeprefix("  STOPPED website: ")
        assert report["exit_code"] == 1
        complete = report["totals"]["complete"]
        assert f": {complete} of 24 hours complete;" in stopped[0]
        # no hour started once the disk was full: at most the two in flight when it filled up
        # (and the two committing, which gave their request slots back)
        assert sim.request_count() <= complete + 2 * 2


# --------------------------------------------------------------------------- a silent Export API


def test_a_silent_api_stops_a_30_day_backfill_within_three_read_timeouts(tmp_path: Path) -> None:
    """It takes every connection, reads the request, and never sends a byte."""
    with BackgroundProxy("http://127.0.0.1:9", faults=lambda n: Hitch.half_open()) as proxy:
        summary = tmp_path / "summary.json"
        done = cli_extract(
            proxy.base_url,
            tmp_path / "out",
            "--start",
            "2026-10-01",
            "--end",
            "2026-10-30T23",
            "--summary-json",
            str(summary),
            extra_env={"ASYNC_AMP_EXTRACT_READ_TIMEOUT_S": "0.5"},
        )
        connections = proxy.connections
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    url = f"{proxy.base_url}/api/2/export"
    assert stopped_lines(done.stdout) == [
        f"  STOPPED website: the Export API at {url} takes connections but sends no answer (no "
        "answer within read_timeout_s (0.5 s), on every hour asked); nothing was lost, run "
        "again later"
    ]
    assert "FAILED" not in done.stdout
    # the 4 requests in flight (default concurrency) time out together, then one probe at a
    # time: two more read timeouts, 720 hours or not
    assert connections == 4 + 2
    report = json.loads(summary.read_text())["projects"]["website"]
    assert report["requests"] == connections and report["failed"] == 0
    assert report["stopped"] == stopped_lines(done.stdout)[0].removeprefix("  STOPPED website: ")


async def test_an_api_that_resets_every_connection_stops_after_max_attempts_probes(
    tmp_path: Path,
) -> None:
    async with run_proxy("http://127.0.0.1:9", faults=lambda n: Hitch.close()) as proxy:
        config = make_config(proxy.base_url, tmp_path, concurrency=4, max_attempts=5)
        summary = await run(config, DAY1, last_hour_of(DAY1, days=30))
    assert summary.exit_code == 1 and not summary.failed
    assert summary.requests == 4 + 4  # the burst, then max_attempts - 1 probes
    assert proxy.connections <= 2 * summary.requests  # aiohttp tries a reset GET once more
    url = f"{proxy.base_url}/api/2/export"
    assert summary.stopped.startswith(
        f"the Export API at {url} resets every connection (request failed before a response: "
    ), summary.stopped
    assert summary.stopped.endswith("; nothing was lost, run again later")
    assert not list(tmp_path.rglob("_manifest.json"))


@asynccontextmanager
async def slow_to_start(
    upstream: str, slow: dict[datetime, int], delay_s: float
) -> AsyncIterator[tuple[str, Counter[datetime]]]:
    """A front for the simulator that keeps silent ``delay_s`` before the first byte of the
    first ``slow[hour]`` requests for ``hour`` (a big hour Amplitude is slow to start); yields
    its base URL and the requests per hour."""
    asked: Counter[datetime] = Counter()
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def handle(request: web.Request) -> web.StreamResponse:
            hour = datetime.strptime(request.query["start"], "%Y%m%dT%H").replace(tzinfo=UTC)
            asked[hour] += 1
            if asked[hour] <= slow.get(hour, 0):
                await asyncio.sleep(delay_s)
                raise web.HTTPServiceUnavailable  # the client gave up long ago
            headers = {"Authorization": request.headers["Authorization"]}
            async with session.get(upstream + request.path_qs, headers=headers) as answer:
                response = web.StreamResponse(status=answer.status)
                response.content_type = answer.content_type
                await response.prepare(request)
                async for chunk in answer.content.iter_chunked(64 * 1024):
                    await response.write(chunk)
                await response.write_eof()
                return response

        app = web.Application()
        app.router.add_get("/api/2/export", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield f"http://127.0.0.1:{port}", asked
        finally:
            await runner.cleanup()


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_big_hours_slow_to_start_keep_working_while_others_answer(
    tmp_path: Path, concurrency: int
) -> None:
    """Two hours are silent past the read timeout on their first two attempts each: they are
    asked again and complete; the run never stops, whatever the concurrency."""
    dataset = small_dataset()
    last = DAY1 + timedelta(hours=11)
    dataset.warm(hour_range(DAY1, last))  # the simulator's own first answers are quick
    slow = {DAY1 + timedelta(hours=2): 2, DAY1 + timedelta(hours=7): 2}
    async with (
        run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
        slow_to_start(sim.base_url, slow, delay_s=4.0) as (url, asked),
    ):
        config = make_config(url, tmp_path, concurrency=concurrency, read_timeout_s=1.0)
        summary = await run(config, DAY1, last)
    assert summary.exit_code == 0 and not summary.stopped, summary.stopped
    assert {hour: n for hour, n in asked.items() if n > 1} == {h: 3 for h in slow}
    assert summary.requests == 12 + 4
    assert_output_matches(tmp_path, dataset, DAY1, last)
