"""The network between the tool and the Export API fails: a fault-injecting TCP proxy sits in
between (trickle, reset mid-body, half-open connection, latency spikes), a loopback port
refuses every connection, TLS fails, the endpoint blips, and the keys are revoked mid-run.

Each test checks what the user is promised: the output of the hours that finish is
byte-identical to the simulator's, nothing partial is visible, and a run that cannot finish
says why in one line with the documented exit code.
"""

from __future__ import annotations

import json
import logging
import random
import socket
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_amp.config import Config
from async_amp.errors import (
    ConnectFailedError,
    CredentialsError,
    RetryableHTTPError,
    StorageConflictError,
    StorageError,
)
from async_amp.extraction.guard import RunGuard
from async_amp.extraction.limiter import AdaptiveLimiter
from async_amp.extraction.pipeline import Extractor
from async_amp.extraction.results import RunSummary
from async_amp.hours import hour_range
from async_amp.output.stores.local import LocalSink
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import run_simulator
from async_amp.source.export_api import AiohttpExportSource, RateFloor
from tests.proxy import Hitch, HitchFn, run_proxy

from .helpers import (
    DAY1,
    KEY,
    NOW,
    SECRET,
    assert_output_matches,
    cli_extract,
    last_hour_of,
    make_config,
    run,
    small_dataset,
)

pytestmark = pytest.mark.anyio


def refused_port() -> int:
    """A loopback port nothing listens on: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_connections(count: int, hitch: Hitch) -> HitchFn:
    return lambda number: hitch if number <= count else None


async def extract_watching(
    config: Config,
    out: Path,
    first: Any,
    last: Any,
    on_connect_failure: Callable[[int], Any] | None = None,
) -> RunSummary:
    """An extraction whose source reports each connect failure (to heal a blip on cue)."""
    sink = LocalSink(out, run_id="blip", fsync=False)
    source = AiohttpExportSource(
        config.amplitude.url,
        KEY,
        SECRET,
        read_timeout_s=config.extract.read_timeout_s,
        connect_timeout_s=config.extract.connect_timeout_s,
    )
    failures = [0]

    class Watched:
        def export(self, a: Any, b: Any) -> Any:
            return self._export(a, b)

        @asynccontextmanager
        async def _export(self, a: Any, b: Any) -> Any:
            try:
                async with source.export(a, b) as body:
                    yield body
            except ConnectFailedError:
                failures[0] += 1
                if on_connect_failure is not None:
                    await on_connect_failure(failures[0])
                raise

    await sink.prepare()
    try:
        async with source:
            extractor = Extractor(
                config, Watched(), sink, run_id="blip", now=NOW, rng=random.Random(3)
            )
            return await extractor.run(await extractor.plan(first, last, force=False))
    finally:
        await sink.aclose()


# --------------------------------------------------------------------------- the TCP proxy


@pytest.mark.parametrize(
    ("hitch", "why"),
    [
        (Hitch.reset(after_bytes=3000), "broke off"),
        (Hitch.half_open(), "no answer"),
        (Hitch.trickle(bytes_per_s=2048), "trickled"),
        (Hitch.latency(delay_s=2.0), "no answer"),  # a spike longer than read_timeout_s
    ],
    ids=["reset-mid-body", "half-open", "trickle", "latency-over-timeout"],
)
async def test_each_proxy_fault_on_first_connections_is_recovered(
    tmp_path: Path, hitch: Hitch, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = small_dataset()
    last = DAY1 + timedelta(hours=3)
    dataset.warm(hour_range(DAY1, last))  # no slow first answer: only the proxy is slow
    async with (
        run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
        run_proxy(sim.base_url, faults=first_connections(2, hitch)) as proxy,
    ):
        config = make_config(proxy.base_url, tmp_path, concurrency=4, read_timeout_s=1.0)
        with caplog.at_level(logging.INFO, logger="async_amp"):
            summary = await run(config, DAY1, last)
    assert summary.exit_code == 0, summary.failed
    assert len(proxy.hitched) == 2
    reasons = [r.reason for r in caplog.records if r.__dict__["event"] == "hour.retry"]
    assert len(reasons) == 2 and all(why in r for r in reasons), reasons
    assert_output_matches(tmp_path, dataset, DAY1, last)


async def test_a_latency_spike_under_the_read_timeout_costs_nothing(tmp_path: Path) -> None:
    dataset = small_dataset()
    last = DAY1 + timedelta(hours=3)
    async with (
        run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
        run_proxy(sim.base_url, faults=lambda n: Hitch.latency(0.2)) as proxy,
    ):
        # every 0.2 s spike is far under the (patient) read timeout: a loaded machine's delays
        # must not turn one into a retry either
        summary = await run(make_config(proxy.base_url, tmp_path), DAY1, last)
        assert sim.request_count() == 4
    assert summary.exit_code == 0 and summary.retries == 0
    assert_output_matches(tmp_path, dataset, DAY1, last)


async def test_a_trickle_that_never_clears_fails_the_hour_with_that_reason(
    tmp_path: Path,
) -> None:
    async with (
        run_simulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim,
        run_proxy(sim.base_url, faults=lambda n: Hitch.trickle(1024)) as proxy,
    ):
        config = make_config(proxy.base_url, tmp_path, read_timeout_s=0.4, max_attempts=2)
        summary = await run(config, DAY1, DAY1)
    assert summary.exit_code == 1
    (failed,) = summary.failed
    assert failed.attempts == 2
    assert "trickled at" in failed.error and "min_rate_kib_s = 16" in failed.error
    assert not list(tmp_path.rglob("*.json"))  # nothing of the hour is visible


async def test_min_rate_zero_lets_a_slow_response_finish(tmp_path: Path) -> None:
    dataset = small_dataset(events_per_hour=8, pages_per_hour=1)
    async with (
        run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
        run_proxy(sim.base_url, faults=lambda n: Hitch.trickle(4096)) as proxy,
    ):
        config = make_config(proxy.base_url, tmp_path, read_timeout_s=0.3, min_rate_kib_s=0)
        summary = await run(config, DAY1, DAY1)
    assert summary.exit_code == 0 and summary.retries == 0
    assert_output_matches(tmp_path, dataset, DAY1, DAY1)


def test_rate_floor_judges_whole_windows_and_ignores_time_spent_handing_on() -> None:
    floor = RateFloor(min_bytes_per_s=1024, window_s=2.0, now=0.0)
    floor.observe(500, 1.0)  # a window is not judged before it is whole
    floor.observe(2000, 2.0)  # 2500 bytes in 2 s: fast enough, a new window starts
    floor.pause(10.0)  # the decoder was busy for 10 s: not the network's fault
    floor.observe(1500, 13.0)  # 1500 bytes in 1 s of waiting
    with pytest.raises(RetryableHTTPError) as info:
        floor.observe(100, 14.0)  # 1600 bytes in 2 s: 800 B/s, under 1 KiB/s
    assert str(info.value) == (
        "the response trickled at 0.8 KiB/s for 2 s after 4100 bytes (below min_rate_kib_s = 1)"
    )


# --------------------------------------------------------------------------- unreachable


async def test_a_dead_endpoint_stops_a_30_day_backfill_after_a_bounded_number_of_requests(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{refused_port()}"
    config = make_config(url, tmp_path, concurrency=8, max_attempts=5)
    summary = await run(config, DAY1, DAY1 + timedelta(days=30) - timedelta(hours=1))
    assert len(summary.plan.to_fetch) > 500
    # the requests in flight when the breaker opened, then one probe at a time
    assert summary.requests <= 8 + 4
    assert summary.exit_code == 1
    assert summary.stopped == (
        f"cannot reach the Export API at {url}/api/2/export: connection refused "
        f"({url.removeprefix('http://')}); nothing was lost, run again later"
    )
    assert not summary.failed  # no hour burnt its attempts: all left for the rerun
    assert not list(tmp_path.rglob("_manifest.json"))


async def test_tls_failure_is_a_dead_endpoint_too(tmp_path: Path) -> None:
    async with run_simulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        url = sim.base_url.replace("http://", "https://")  # TLS against a plain-HTTP server
        summary = await run(make_config(url, tmp_path, max_attempts=3), DAY1, last_hour_of(DAY1))
        assert sim.request_count() == 0
    assert summary.exit_code == 1
    assert summary.stopped.startswith(f"cannot reach the Export API at {url}/api/2/export: TLS")
    assert summary.stopped.endswith("; nothing was lost, run again later")


async def test_an_endpoint_that_blips_recovers_silently(tmp_path: Path) -> None:
    dataset = small_dataset()
    last = last_hour_of(DAY1)
    async with (
        run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
        run_proxy(sim.base_url) as proxy,
    ):
        await proxy.refuse()

        async def heal(failures: int) -> None:
            if failures == 3:  # the burst in flight, then the first probe: back up
                await proxy.accept()

        config = make_config(proxy.base_url, tmp_path, concurrency=2, max_attempts=4)
        summary = await extract_watching(config, tmp_path, DAY1, last, heal)
    assert summary.exit_code == 0 and not summary.stopped and not summary.failed
    assert summary.requests == 24 + 3
    assert_output_matches(tmp_path, dataset, DAY1, last)


async def test_the_breaker_lets_one_probe_out_and_closes_on_any_answer() -> None:
    guard = RunGuard(max_probes=2, backoff_base_s=0.0, backoff_max_s=0.0)
    slots = AdaptiveLimiter(2)

    async def admit() -> str:
        admission, _ = await guard.admit(slots.acquire, slots.release)
        return admission

    assert await admit() == "go"
    slots.release()
    error = ConnectFailedError("connection refused (h:1)")
    guard.connect_failed(error)  # opens
    guard.connect_failed(error)  # another request of the burst: not a probe
    assert guard.is_open and not guard.stopped
    assert await admit() == "probe"
    waiting: list[str] = []

    async def wait() -> None:
        waiting.append(await admit())
        slots.release()  # a slot is given back by the task that holds it

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.01)
        assert waiting == []  # held back while the probe is out, without a slot
        assert slots.in_flight == 1
        guard.connected(probe=True)
    assert waiting == ["go"] and not guard.is_open
    slots.release()
    guard.connect_failed(error)
    assert await admit() == "probe"
    slots.release()
    guard.connect_failed(error, probe=True)
    assert await admit() == "probe"
    slots.release()
    guard.connect_failed(error, probe=True)
    assert guard.stopped and await admit() == "stop"
    assert slots.in_flight == 0
    assert guard.stop is not None
    line = guard.stop.line(url="https://amplitude.com/api/2/export", done=3, total=24)
    assert line == (
        "cannot reach the Export API at https://amplitude.com/api/2/export: "
        "connection refused (h:1); nothing was lost, run again later"
    )


# --------------------------------------------------------------------------- revoked keys


async def test_keys_revoked_mid_run_stop_at_once_and_keep_finished_hours(tmp_path: Path) -> None:
    dataset = small_dataset()
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, revoke_keys_after=6) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=1)
        with pytest.raises(CredentialsError, match=r"Amplitude refused the keys \(HTTP 401\)"):
            await run(config, DAY1, last_hour_of(DAY1, days=3))
        refused = sim.request_count(status=401)
        assert sim.request_count(status=200) == 6
        assert refused == 1  # no retry, no other hour asked
    done = sorted(p.parent for p in tmp_path.rglob("_manifest.json"))
    assert len(done) == 6
    for folder in done:  # each finished hour is whole
        manifest = json.loads((folder / "_manifest.json").read_text())
        assert {f["name"] for f in manifest["files"]} == {
            p.name for p in folder.iterdir() if p.name != "_manifest.json"
        }
    assert not (tmp_path / ".async-amp-staging").exists()


def test_cli_revoked_keys_exit_2_with_the_credentials_line(tmp_path: Path) -> None:
    with BackgroundSimulator(
        small_dataset(), api_key=KEY, secret_key=SECRET, revoke_keys_after=4
    ) as sim:
        done = cli_extract(
            sim.base_url,
            tmp_path / "out",
            "--start",
            "2026-11-01",
            "--end",
            "2026-11-02",
            "--concurrency",
            "1",
        )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("async-amp: error: Amplitude refused the keys (HTTP 401)")
    assert KEY not in done.stderr and SECRET not in done.stderr
    assert len(list((tmp_path / "out").rglob("_manifest.json"))) == 4


def test_cli_dead_endpoint_exit_1_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{refused_port()}"
    done = cli_extract(url, tmp_path / "out", "--start", "2026-11-01", "--end", "2026-11-24")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "FAILED" not in done.stdout
    stopped = [line for line in done.stdout.splitlines() if "STOPPED" in line]
    assert stopped == [
        f"  STOPPED website: cannot reach the Export API at {url}/api/2/export: connection "
        f"refused ({url.removeprefix('http://')}); nothing was lost, run again later"
    ]


def test_a_store_that_refuses_a_raced_commit_is_not_a_store_gone() -> None:
    """Two runs committing one Azure blob: the loser's InvalidBlockList is an answer, so any
    number of them leave the guard running; plain store failures still stop it."""
    guard = RunGuard(max_probes=2, backoff_base_s=0.0, backoff_max_s=0.0, max_store_failures=3)
    for _ in range(10):
        guard.store_failed(StorageConflictError("InvalidBlockList: another run committed it"))
    assert not guard.stopped
    for _ in range(3):
        guard.store_failed(StorageError("cannot reach the store"))
    assert guard.stopped
