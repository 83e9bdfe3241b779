"""Systemic failures stop the run early (docs/reliability.md, "When the run cannot go on"):
a full disk in every format, an Export API that is silent or resets every connection, a store
that goes away mid-run. Each stop is one STOPPED line, the summary, exit 1, no traceback; the
bounds are counted in requests and attempts, never in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from async_amp.config import AzureConfig, GcsConfig, S3Config
from async_amp.errors import StorageError
from async_amp.extraction.guard import RunGuard
from async_amp.extraction.results import RunSummary
from async_amp.hours import hour_range
from async_amp.output.stores.azure import AzureSink
from async_amp.output.stores.base import Sink
from async_amp.output.stores.gcs import GcsSink
from async_amp.output.stores.s3 import S3Sink
from async_amp.output.stores.shared import TIMEOUT_RETRIES
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.faults import RequestInfo
from async_amp.simulator.server import run_simulator
from tools.azurite import START_TIMEOUT_S, AzuriteProcess, dev_connection_string
from tools.gcsserver import GcsEmulatorProcess
from tools.s3server import S3ServerProcess

from .azurite import AZURITE_BIN, Azurite, azurite_proxy
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
from .s3 import admin_client

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


# --------------------------------------------------------------------------- the store goes away


def stop_at(number: int, action: Callable[[], None]) -> Callable[[RequestInfo], None]:
    """A simulator plan that injects no fault: ``action`` when request ``number`` arrives."""
    seen = [0]

    def plan(info: RequestInfo) -> None:
        seen[0] += 1
        if seen[0] == number:
            action()

    return plan


async def extract_while_the_store_goes(
    tmp_path: Path, sink: Sink, stop: Callable[[], None]
) -> tuple[RunSummary, Counter[datetime]]:
    """24 hours at concurrency 2 into ``sink``; ``stop()`` when the 6th request arrives.
    Returns the summary and the requests per hour the simulator saw."""
    async with run_simulator(
        small_dataset(), api_key=KEY, secret_key=SECRET, faults=stop_at(6, stop)
    ) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=2)
        summary = await run(config, DAY1, last_hour_of(DAY1), sink=sink)
        asked = Counter(r.start for r in sim.requests if r.start is not None)
    return summary, asked


STALL = r"the store answered no call for \d+ s \(last: .+\)"  # a store that hangs
GONE = r"the store failed 5 times in a row \(last: .+\)"  # a store that refuses


def assert_the_store_stop(summary: RunSummary, asked: Counter[datetime], cause: str) -> None:
    assert summary.exit_code == 1 and not summary.failed, summary.failed
    assert re.fullmatch(
        cause + r": \d+ of 24 hours complete; run again once it answers, completed hours are kept",
        summary.stopped,
    ), summary.stopped
    # the 5 requests before the store went, the one that stopped it, and at most the other
    # request in flight and the two hours waiting for their commit (concurrency 2): once a
    # store call failed no download starts until the store answers a listing
    assert summary.requests == sum(asked.values()) <= 6 + 3, asked
    assert max(asked.values()) == 1, asked  # no hour downloaded again: it waits for the store


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stalled"])
async def test_azurite_gone_mid_run_stops_within_a_bounded_number_of_attempts(
    tmp_path: Path, how: signal.Signals
) -> None:
    """Azurite is killed (connections refused) or stopped (SIGSTOP: connections hang)."""
    with AzuriteProcess(AZURITE_BIN, start_timeout_s=START_TIMEOUT_S) as process:
        assert process.endpoint is not None and process.pid is not None
        pid = process.pid
        env = {"AZURE_STORAGE_CONNECTION_STRING": process.endpoint.connection_string}
        azure = AzureConfig(container="gone", retries=1, retry_backoff_s=0.05, read_timeout_s=2)
        sink = AzureSink.from_config(azure, run_id="gone", environ=env)
        try:
            summary, asked = await extract_while_the_store_goes(
                tmp_path, sink, lambda: os.kill(pid, how)
            )
        finally:
            os.kill(pid, signal.SIGCONT)
    assert_the_store_stop(summary, asked, GONE if how == signal.SIGKILL else STALL)


@pytest.fixture
async def s3_gone() -> AsyncIterator[tuple[S3ServerProcess, int]]:
    """A moto server of its own (the tests kill or stop it) with the bucket ``gone``."""
    with S3ServerProcess() as server:
        assert server.pid is not None
        async with admin_client(server) as admin:
            await admin.create_bucket(Bucket="gone")
        try:
            yield server, server.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGCONT)


def gone_sink(server: S3ServerProcess, **settings: Any) -> S3Sink:
    config = S3Config(
        bucket="gone", endpoint_url=server.endpoint_url, addressing_style="path", **settings
    )
    return S3Sink.from_config(config, run_id="gone", environ=server.admin.environ())


@pytest.mark.s3
async def test_the_s3_server_killed_mid_run_stops_within_a_bounded_number_of_attempts(
    tmp_path: Path, s3_gone: tuple[S3ServerProcess, int]
) -> None:
    server, pid = s3_gone
    summary, asked = await extract_while_the_store_goes(
        tmp_path, gone_sink(server, retries=1), lambda: os.kill(pid, signal.SIGKILL)
    )
    assert_the_store_stop(summary, asked, GONE)


@pytest.mark.s3
async def test_a_stalled_s3_server_stops_the_run_and_a_timed_out_call_is_tried_once_more(
    tmp_path: Path, s3_gone: tuple[S3ServerProcess, int]
) -> None:
    """The S3 server is SIGSTOPped: connections are taken, nothing answers, no byte of a
    part is read. Every call times out; each is sent twice at most (1 + TIMEOUT_RETRIES)
    although ``retries`` allows four; the run stops once the store answered nothing for 4
    read timeouts, and asks it nothing more meanwhile but one listing at a time."""
    server, pid = s3_gone
    sink = gone_sink(server, retries=3, read_timeout_s=1.0)
    attempts: Counter[str] = Counter()  # botocore's amz-sdk-request header: which try, of how many
    calls: Counter[str] = Counter()  # the store calls made after the stall, by operation
    stopped = []

    def count(request: Any, **_: Any) -> None:
        if stopped:
            header = request.headers.get("amz-sdk-request")
            attempts[header.decode() if isinstance(header, bytes) else header] += 1

    def call(model: Any, **_: Any) -> None:
        if stopped:
            calls[model.name] += 1

    events = (await sink.client()).meta.events
    events.register("before-send.s3", count)
    events.register("before-call.s3", call)

    def stall() -> None:
        stopped.append(True)
        os.kill(pid, signal.SIGSTOP)

    summary, asked = await extract_while_the_store_goes(tmp_path, sink, stall)
    assert_the_store_stop(summary, asked, STALL)
    tries = {int(h.split("attempt=")[1].split(";")[0]) for h in attempts}
    assert tries == set(range(1, 2 + TIMEOUT_RETRIES)), attempts  # never a third try
    assert all(h.endswith("max=4") for h in attempts if "max=" in h), attempts  # 4 allowed
    # a listing asks whether the store answers, one at a time, each costing two timeouts at
    # most: 2 in the window of 4 timeouts (a third is cut short by the stop)
    assert calls["ListObjectsV2"] <= 3, calls
    # discarded uploads are not aborted, nor the lease deleted, on a store that answers
    # nothing (each call would wait two timeouts): the next run's prepare() does it
    assert "AbortMultipartUpload" not in calls, calls
    # the calls in flight when the store stopped (two hours committing, two staging), the
    # listings, and nothing else: no commit tried again, no part of a new download
    assert sum(calls.values()) <= 2 * 8 + 3, calls


@pytest.mark.gcs
async def test_a_stalled_gcs_server_stops_the_run_and_no_download_waits_on_it(
    tmp_path: Path,
) -> None:
    """fake-gcs-server is SIGSTOPped. Small files are held back until their commit, so
    downloads never touched the store: they went on while the commits waited (24 export
    requests for 24 hours). Now at most twice the concurrency of hours are downloading or
    waiting for their commit, none starts once a store call failed, and the run stops once
    the store answered nothing for 4 read timeouts."""
    with GcsEmulatorProcess() as server:
        assert server.pid is not None
        pid = server.pid
        server.create_bucket("stalled")
        config = GcsConfig(
            bucket="stalled", endpoint_url=server.endpoint_url, anonymous=True, read_timeout_s=1.0
        )
        sink = GcsSink.from_config(config, run_id="stalled", environ={})
        calls: Counter[str] = Counter()  # the store calls made after the stall, by kind
        request = sink.client.request

        async def counted(method: str, url: str, **kw: Any) -> Any:
            if "upload_id=" in url:
                calls[f"{method} upload session"] += 1
            elif "/upload/" in url:
                calls[f"{method} new upload session"] += 1
            else:
                calls[f"{method} {'listing' if url.endswith('/o') else 'object'}"] += 1
            return await request(method, url, **kw)

        def stall() -> None:
            calls.clear()
            sink.client.request = counted  # type: ignore[method-assign]
            os.kill(pid, signal.SIGSTOP)

        try:
            summary, asked = await extract_while_the_store_goes(tmp_path, sink, stall)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert_the_store_stop(summary, asked, STALL)
    assert calls["GET listing"] <= 3, calls  # one at a time, two timeouts each at most
    # the discarded upload sessions are not cancelled on a store that answers nothing (each
    # call would wait two timeouts): GCS forgets them
    assert "DELETE upload session" not in calls, calls
    # the commits in flight when the store stopped (4 hours at most, each failing at its
    # first call that times out), the listings, and nothing else
    assert sum(calls.values()) <= 4 * 8 + 3, calls


async def test_a_suspect_store_is_asked_one_listing_at_a_time_and_a_silent_one_stops() -> None:
    """The guard alone: after a failed store call every waiter (a download to start, a commit
    to try again) waits while one of them asks the store (a listing); an answer lets them all
    go; a store that answers nothing for the stall window stops the run, the listing still
    out cut short."""
    asked: list[str] = []

    async def listing() -> set[datetime]:
        asked.append("listing")
        if len(asked) == 1:
            raise StorageError("S3 did not answer in time to list s3://b/x")
        if len(asked) == 3:
            await anyio.sleep_forever()  # a stalled store
        return set()

    guard = RunGuard(
        max_probes=4,
        max_store_failures=10,
        backoff_base_s=0.0,
        backoff_max_s=0.0,
        store_probe=listing,
        stall_window_s=0.5,
    )

    async def wait_for_the_store(went: list[bool]) -> None:
        went.append(await guard.store_answers())

    went: list[bool] = []
    assert await guard.store_answers()  # nothing failed: no listing
    guard.store_failed(StorageError("S3 did not answer in time to upload a part of s3://b/y"))
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(wait_for_the_store, went)
    assert went == [True] * 3 and asked == ["listing"] * 2  # failed, then answered
    assert not guard.stopped

    went.clear()
    guard.store_failed(StorageError("S3 did not answer in time to delete s3://b/z"))
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(wait_for_the_store, went)
    assert went == [False] * 3 and len(asked) == 3  # one listing, cut short by the stop
    assert guard.stop is not None and guard.stop.storage is not None
    assert guard.stop.storage.line(2, 24) == (
        "the store answered no call for 0.5 s (last: S3 did not answer in time to delete "
        "s3://b/z): 2 of 24 hours complete; run again once it answers, completed hours are kept"
    )


async def test_a_commit_the_store_fails_is_tried_again_without_downloading_again(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    """Azure answers 500 to the first three commits of a file (Put Block List): each hour is
    committed from what it already staged, and no archive is asked for twice."""
    dataset = small_dataset()
    last = DAY1 + timedelta(hours=5)
    refused = [0]

    async def intercept(request: web.Request) -> web.StreamResponse | None:
        if request.query.get("comp") == "blocklist" and refused[0] < 3:
            refused[0] += 1
            return web.Response(status=500, text="InternalError")
        return None

    async with (
        azurite_proxy(azurite, intercept) as endpoint,
        run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
    ):
        env = {"AZURE_STORAGE_CONNECTION_STRING": dev_connection_string(endpoint)}
        azure = AzureConfig(container=azure_container, retries=0)
        sink = AzureSink.from_config(azure, run_id="again", environ=env)
        config = make_config(sim.base_url, tmp_path, concurrency=2)
        summary = await run(config, DAY1, last, sink=sink)
        asked = Counter(r.start for r in sim.requests if r.start is not None)
    assert refused[0] == 3
    assert summary.exit_code == 0 and not summary.stopped, summary.stopped
    assert asked == dict.fromkeys(hour_range(DAY1, last), 1)
    async with azurite.service_client() as service:
        container = service.get_container_client(azure_container)
        names = [b.name async for b in container.list_blobs()]
    assert sum(name.endswith("/_manifest.json") for name in names) == 6
