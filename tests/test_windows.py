"""Request windows: one request may cover several hours; each hour is still checked and
committed on its own, a short hour is re-asked alone, and a 400 splits a window."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from async_amp.extraction.plan import chop
from async_amp.extraction.schedule import AUTO_MAX_WINDOW_BYTES, Observed, auto_window
from async_amp.simulator.server import Fault, FaultPlan, Injection, RequestInfo, run_simulator

from .helpers import (
    DAY1,
    KEY,
    SECRET,
    assert_output_matches,
    last_hour_of,
    make_config,
    run,
    small_dataset,
)

pytestmark = pytest.mark.anyio


def test_chop_cuts_consecutive_runs_only() -> None:
    hours = [DAY1 + timedelta(hours=h) for h in (0, 1, 2, 3, 4, 7, 8, 20)]
    windows = chop(hours, 3)
    assert [[h.hour for h in w] for w in windows] == [[0, 1, 2], [3, 4], [7, 8], [20]]


async def test_fixed_windows_make_fewer_requests_and_identical_output(tmp_path: Path) -> None:
    dataset = small_dataset(quiet_hours=frozenset({DAY1 + timedelta(hours=2)}))
    last = last_hour_of(DAY1)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        summary = await run(make_config(sim.base_url, tmp_path, window_hours=6), DAY1, last)
        windows = sorted((r.start, r.end) for r in sim.requests)
    assert summary.exit_code == 0
    assert len(windows) == 4
    assert all(end - start == timedelta(hours=5) for start, end in windows)
    assert_output_matches(tmp_path, dataset, DAY1, last)
    assert summary.count("empty") == 1 and summary.count("complete") == 23


async def test_a_short_hour_inside_a_window_is_reasked_alone(tmp_path: Path) -> None:
    dataset = small_dataset()
    bad = DAY1 + timedelta(hours=4)

    def plan(info: RequestInfo) -> Injection | None:
        if info.attempt == 1 and info.start <= bad <= info.end and info.start != info.end:
            return Injection(Fault.MISSING_PARTITION, hour=bad)
        return None

    last = DAY1 + timedelta(hours=5)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        config = make_config(sim.base_url, tmp_path, window_hours=6, expected_pages_per_hour=3)
        summary = await run(config, DAY1, last)
        asked = [(r.start, r.end) for r in sim.requests]
    assert summary.exit_code == 0
    assert asked == [(DAY1, last), (bad, bad)]
    assert_output_matches(tmp_path, dataset, DAY1, last)


async def test_a_broken_window_is_retried_whole(tmp_path: Path) -> None:
    dataset = small_dataset()
    last = DAY1 + timedelta(hours=5)
    faults = FaultPlan.on_first_attempt({DAY1 + timedelta(hours=3): Fault.CUT_BODY})
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=faults) as sim:
        summary = await run(make_config(sim.base_url, tmp_path, window_hours=6), DAY1, last)
        assert sim.request_count() == 2
    assert summary.exit_code == 0
    assert_output_matches(tmp_path, dataset, DAY1, last)


async def test_400_on_a_window_splits_it_down_to_hours(tmp_path: Path) -> None:
    dataset = small_dataset(events_per_hour=100, variation=0.0)
    last = DAY1 + timedelta(hours=7)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, max_export_events=250) as sim:
        summary = await run(make_config(sim.base_url, tmp_path, window_hours=8), DAY1, last)
        statuses = [(r.end - r.start, r.status) for r in sim.requests if r.start and r.end]
    assert summary.exit_code == 0
    assert (timedelta(hours=7), 400) in statuses
    assert all(s == 200 for span, s in statuses if span <= timedelta(hours=1))
    assert_output_matches(tmp_path, dataset, DAY1, last)


async def test_auto_uses_wide_windows_for_a_quiet_project(tmp_path: Path) -> None:
    dataset = small_dataset(events_per_hour=5, pages_per_hour=1)
    last = last_hour_of(DAY1, days=3)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, window_hours="auto", concurrency=4)
        summary = await run(config, DAY1, last)
        requests = sim.request_count()
    assert summary.exit_code == 0
    assert requests == 4 + 4  # four single-hour probes, then one window per slot
    assert_output_matches(tmp_path, dataset, DAY1, last)


def test_auto_stays_hourly_when_hours_are_big() -> None:
    big = [Observed(1, AUTO_MAX_WINDOW_BYTES), Observed(1, AUTO_MAX_WINDOW_BYTES * 2)]
    assert auto_window(400, slots=4, observed=big) == 1
    small = [Observed(1, 1000)] * 4
    assert auto_window(400, slots=4, observed=small) == 100
    assert auto_window(10_000, slots=4, observed=small) == 168
    assert auto_window(400, slots=4, observed=[]) == 24
