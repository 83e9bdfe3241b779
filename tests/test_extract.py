"""End to end against the simulated Export API over real sockets, into the local sink."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from async_amp.errors import CredentialsError, StorageError
from async_amp.output.manifest import Manifest, hour_folder
from async_amp.output.stores.base import HourStaging
from async_amp.output.stores.local import LocalSink
from async_amp.simulator.server import Fault, FaultPlan, run_simulator

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


async def test_two_days_at_concurrency_8_are_byte_identical_and_resume_with_zero_requests(
    tmp_path: Path,
) -> None:
    quiet = frozenset({DAY1.replace(hour=3), DAY1 + timedelta(days=1, hours=6)})
    dataset = small_dataset(quiet_hours=quiet)
    last = last_hour_of(DAY1, days=2)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=8)
        summary = await run(config, DAY1, last)
        assert summary.exit_code == 0
        assert sim.request_count() == 48  # one request per hour
        assert all(r.start == r.end for r in sim.requests)  # each covers exactly one hour
        assert sim.max_in_flight_seen <= 8
        assert summary.count("empty") == 2 and summary.count("complete") == 46
        files = assert_output_matches(tmp_path, dataset, DAY1, last)
        assert files == 46 * 3
        sim.reset_log()
        again = await run(config, DAY1, last)
        assert sim.request_count() == 0
        assert len(again.plan.done) == 48 and again.exit_code == 0
    assert not (tmp_path / ".async-amp-staging").exists()


async def test_keep_gzip_stores_original_member_bytes(tmp_path: Path) -> None:
    dataset = small_dataset()
    last = DAY1 + timedelta(hours=3)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        summary = await run(make_config(sim.base_url, tmp_path, keep_gzip=True), DAY1, last)
    assert summary.exit_code == 0
    assert_output_matches(tmp_path, dataset, DAY1, last, keep_gzip=True)


async def test_a_fault_on_every_third_hour_first_attempt_still_ends_identical(
    tmp_path: Path,
) -> None:
    dataset = small_dataset()
    last = last_hour_of(DAY1)
    kinds = [Fault.HTTP_500, Fault.CUT_BODY, Fault.CORRUPT_GZIP, Fault.ZIP_TRUNCATED]
    hours = [DAY1 + timedelta(hours=h) for h in range(0, 24, 3)]
    faults = FaultPlan.on_first_attempt({h: kinds[i % len(kinds)] for i, h in enumerate(hours)})
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=faults) as sim:
        summary = await run(make_config(sim.base_url, tmp_path), DAY1, last)
        assert sim.request_count() == 24 + len(hours)
    assert summary.exit_code == 0
    assert summary.retries == len(hours)
    assert_output_matches(tmp_path, dataset, DAY1, last)
    attempts = {
        h: json.loads((tmp_path / hour_folder("website", h) / "_manifest.json").read_text())[
            "attempts"
        ]
        for h in hours
    }
    assert set(attempts.values()) == {2}


RECOVERABLE = [
    Fault.HTTP_500,
    Fault.HTTP_502,
    Fault.HTTP_503,
    Fault.HTTP_504,
    Fault.HTTP_429,
    Fault.RESET_BEFORE_HEADERS,
    Fault.CUT_BODY,
    Fault.ZIP_TRUNCATED,
    Fault.CORRUPT_GZIP,
    Fault.STALL,
    Fault.UNSAFE_NAME,
    Fault.HTML_200,
    Fault.EMPTY_ZIP,
    Fault.FOREIGN_MEMBER,
    Fault.DUPLICATE_MEMBER,
]


@pytest.mark.parametrize("fault", RECOVERABLE, ids=lambda f: f.value)
async def test_each_fault_class_is_recovered(tmp_path: Path, fault: Fault) -> None:
    dataset = small_dataset()
    hour = DAY1 + timedelta(hours=10)
    # aiohttp itself re-sends a GET once when the server drops it before answering, so a reset
    # must happen twice for async-amp's own retry to be the one that recovers it.
    tries = 2 if fault is Fault.RESET_BEFORE_HEADERS else 1
    plan = FaultPlan.on_first_attempts({hour: fault}, tries)
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=plan, retry_after_s=1, stall_s=10
    ) as sim:
        # a read timeout short of the 10 s stall only where the stall is the fault: elsewhere a
        # loaded machine would time out a healthy answer and the request counts would be off
        timeouts = {"read_timeout_s": 3.0} if fault is Fault.STALL else {}
        config = make_config(sim.base_url, tmp_path, **timeouts)
        summary = await run(config, hour - timedelta(hours=1), hour + timedelta(hours=1))
        assert sim.request_count(hour=hour) == tries + 1
        assert sim.request_count() == tries + 3
    assert summary.retries == 1
    assert summary.exit_code == 0, summary.failed
    assert_output_matches(tmp_path, dataset, hour - timedelta(hours=1), hour + timedelta(hours=1))
    assert not any(tmp_path.rglob("evil*"))


async def test_retry_after_is_honoured_not_shortened(tmp_path: Path) -> None:
    dataset = small_dataset()
    hour = DAY1 + timedelta(hours=10)
    plan = FaultPlan.on_first_attempt({hour: Fault.HTTP_429})
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=plan, retry_after_s=2
    ) as sim:
        summary = await run(make_config(sim.base_url, tmp_path), hour, hour)
        first, second = sim.requests
    assert summary.exit_code == 0 and summary.throttled == 1
    assert second.at - first.at >= 2.0


@pytest.mark.parametrize("fault", [Fault.HTTP_500, Fault.CORRUPT_GZIP, Fault.STALL])
async def test_a_fault_that_never_clears_fails_the_hour_without_a_manifest(
    tmp_path: Path, fault: Fault
) -> None:
    dataset = small_dataset()
    bad = DAY1 + timedelta(hours=2)
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=FaultPlan.always({bad: fault}), stall_s=5
    ) as sim:
        # the stall outlasts a short read timeout; the other faults need none (patient default)
        timeouts = {"read_timeout_s": 0.3} if fault is Fault.STALL else {}
        config = make_config(sim.base_url, tmp_path, max_attempts=3, **timeouts)
        summary = await run(config, DAY1, DAY1 + timedelta(hours=3))
        assert sim.request_count(hour=bad) == 3
    assert summary.exit_code == 1
    assert [r.hour for r in summary.failed] == [bad]
    assert summary.failed[0].attempts == 3
    assert not (tmp_path / hour_folder("website", bad)).exists()
    assert summary.count("complete") == 3


async def test_missing_partition_is_requeued_then_recovered(tmp_path: Path) -> None:
    dataset = small_dataset()
    hour = DAY1 + timedelta(hours=7)
    plan = FaultPlan.on_first_attempt({hour: Fault.MISSING_PARTITION})
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        config = make_config(sim.base_url, tmp_path, expected_pages_per_hour=3)
        summary = await run(config, hour, hour)
        assert sim.request_count() == 2
    assert summary.exit_code == 0
    assert_output_matches(tmp_path, dataset, hour, hour)


async def test_a_genuinely_short_hour_is_accepted_after_two_identical_attempts(
    tmp_path: Path,
) -> None:
    dataset = small_dataset(pages_per_hour=2)
    hour = DAY1 + timedelta(hours=7)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, expected_pages_per_hour=3)
        summary = await run(config, hour, hour)
        assert sim.request_count() == 2
    assert summary.exit_code == 0
    manifest = json.loads((tmp_path / hour_folder("website", hour) / "_manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["attempts"] == 2
    assert "2 of 3 pages, partition #2 absent" in manifest["warnings"][0]


async def test_hours_inside_the_availability_lag_are_not_fetched(tmp_path: Path) -> None:
    dataset = small_dataset()
    now = DAY1 + timedelta(hours=10, minutes=30)  # hour 07 ended at 08:00, +2 h = 10:00
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        summary = await run(make_config(sim.base_url, tmp_path), DAY1, last_hour_of(DAY1), now=now)
        fetched = sorted(r.start for r in sim.requests if r.start is not None)
    assert fetched[-1] == DAY1 + timedelta(hours=7)
    assert len(summary.plan.not_available) == 16
    assert summary.exit_code == 0
    assert not (tmp_path / hour_folder("website", DAY1 + timedelta(hours=8))).exists()


async def test_404_is_empty_hour_with_a_manifest(tmp_path: Path) -> None:
    hour = DAY1 + timedelta(hours=4)
    dataset = small_dataset(quiet_hours=frozenset({hour}))
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        summary = await run(make_config(sim.base_url, tmp_path), hour, hour)
        assert sim.request_count(status=404) == 1
    manifest = json.loads((tmp_path / hour_folder("website", hour) / "_manifest.json").read_text())
    assert manifest["status"] == "empty" and manifest["files"] == []
    assert summary.count("empty") == 1


@pytest.mark.parametrize(("key", "secret"), [("wrong", SECRET), (KEY, "wrong")])
async def test_rejected_keys_stop_the_run_at_once(tmp_path: Path, key: str, secret: str) -> None:
    dataset = small_dataset()
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=2)
        with pytest.raises(CredentialsError, match="AMP_API_KEY") as info:
            await run(config, DAY1, last_hour_of(DAY1, days=3), key=key, secret=secret)
        assert sim.request_count() <= 4  # stopped at once, not 72 requests
    assert "wrong" not in str(info.value) and SECRET not in str(info.value)


async def test_force_reextracts_and_leaves_no_stale_partition(tmp_path: Path) -> None:
    hour = DAY1 + timedelta(hours=9)
    async with run_simulator(
        small_dataset(pages_per_hour=3), api_key=KEY, secret_key=SECRET
    ) as sim:
        await run(make_config(sim.base_url, tmp_path), hour, hour)
    fewer = small_dataset(pages_per_hour=2, seed=5)
    async with run_simulator(fewer, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        skipped = await run(config, hour, hour)
        assert sim.request_count() == 0 and len(skipped.plan.done) == 1
        await run(config, hour, hour, force=True)
        assert sim.request_count() == 1
    assert_output_matches(tmp_path, fewer, hour, hour)


async def test_export_over_4gb_fails_the_hour_with_a_clear_message(tmp_path: Path) -> None:
    hour = DAY1 + timedelta(hours=1)
    plan = FaultPlan.always({hour: Fault.HTTP_400})
    async with run_simulator(small_dataset(), api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        summary = await run(make_config(sim.base_url, tmp_path), hour, hour)
        assert sim.request_count() == 1  # not retried: it will not get smaller
    assert summary.exit_code == 1
    assert "4 GB" in summary.failed[0].error


class _FlakyCommitSink(LocalSink):
    """A real local sink whose first commit of each hour fails, as a storage outage would."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, run_id="flaky", fsync=False)
        self.failed: set[object] = set()

    def stage(self, project: str, hour: datetime) -> HourStaging:
        staging = super().stage(project, hour)
        original = staging.commit

        async def commit(manifest: Manifest) -> None:
            if hour not in self.failed:
                self.failed.add(hour)
                raise StorageError(f"simulated outage committing {hour:%H}")
            await original(manifest)

        staging.commit = commit  # type: ignore[method-assign]
        return staging


async def test_a_failed_commit_is_retried_not_lost(tmp_path: Path) -> None:
    dataset = small_dataset()
    last = DAY1 + timedelta(hours=3)
    sink = _FlakyCommitSink(tmp_path)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        summary = await run(make_config(sim.base_url, tmp_path), DAY1, last, sink=sink)
        assert sim.request_count() == 4  # committed again from what was staged: no download
    assert summary.exit_code == 0
    assert len(sink.failed) == 4
    assert_output_matches(tmp_path, dataset, DAY1, last)
