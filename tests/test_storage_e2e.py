"""The end-to-end scenarios that read the same whatever the remote storage, run once per sink:
Azure (a real Azurite) and S3 (moto's server, IAM enforced), through the real pipeline and
the simulated Export API.

- two days at concurrency 8 land byte-identical, one manifest per hour; a rerun resumes from
  one listing and asks Amplitude nothing;
- ``--force`` leaves no stale file;
- every recoverable fault on a first attempt ends in a byte-identical hour.

Each storage's own checks (what "byte-identical" means for its metadata, which calls a resume
may make) are its ``Storage`` below, built on the helpers of ``test_azure_e2e.py`` and
``test_s3_e2e.py``, which keep what only one storage has (interrupted CLI runs, user errors,
leases and uploads, memory).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from async_amp.hours import hour_range
from async_amp.output.stores.azure import PROBE_PREFIX
from async_amp.output.stores.base import Sink
from async_amp.output.stores.gcs import PROBE_FOLDER
from async_amp.output.stores.leases import LEASE_FOLDER
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import Fault, FaultPlan, run_simulator

from .azurite import Azurite
from .gcs import GcsFront, assert_gcs_bucket_matches, gcs_sink
from .helpers import DAY1, KEY, SECRET, last_hour_of, make_config, run, small_dataset
from .s3 import S3ServerProcess
from .test_azure_e2e import assert_container_matches, azure_sink
from .test_s3_e2e import Sent, assert_bucket_matches, s3_sink

pytestmark = pytest.mark.anyio

PROJECT = "website"
PREFIX = "amplitude"  # the [azure] and [s3] prefix default


@dataclass(frozen=True, slots=True)
class Storage:
    """One remote storage under test."""

    name: str
    # the production sink on it (recording every HTTP call it makes into ``record``)
    sink: Callable[[Sent | None], Awaitable[Sink]]
    # exactly these hours' files and nothing else, byte-identical: (files, bytes)
    matches: Callable[[Dataset, list[datetime], bool], Awaitable[tuple[int, int]]]
    # a resumed run's calls: one listing of the project, no manifest read, no write
    resumed_from_one_listing: Callable[[Sent], None]


def _azure(azurite: Azurite, container: str) -> Storage:
    async def sink(record: Sent | None) -> Sink:
        return azure_sink(azurite, container, record=record)

    async def matches(dataset: Dataset, hours: list[datetime], keep_gzip: bool) -> tuple[int, int]:
        checked = await assert_container_matches(
            azurite, container, dataset, hours, keep_gzip=keep_gzip
        )
        return checked.files, checked.bytes

    def resumed(sent: Sent) -> None:
        calls = [(m, parse_qs(urlsplit(url).query), urlsplit(url).path) for m, url in sent]
        probe = f"{PREFIX}/{PROBE_PREFIX}"
        listings = [q["prefix"][0] for m, q, _ in calls if q.get("comp") == ["list"]]
        assert [p for p in listings if not p.startswith(probe)] == [
            f"{PREFIX}/{PROJECT}/date=2026-11-0"
        ]
        touched = {path for _, q, path in calls if "restype" not in q}  # blob calls
        assert all(PROBE_PREFIX in path for path in touched), touched

    return Storage("Azurite", sink, matches, resumed)


def _s3(server: S3ServerProcess, bucket: str) -> Storage:
    async def sink(record: Sent | None) -> Sink:
        return await s3_sink(server, bucket, record=record)

    async def matches(dataset: Dataset, hours: list[datetime], keep_gzip: bool) -> tuple[int, int]:
        return await assert_bucket_matches(server, bucket, dataset, hours, keep_gzip=keep_gzip)

    def resumed(sent: Sent) -> None:
        calls = [
            (m, urlsplit(u).path.split("/", 2)[-1], parse_qs(urlsplit(u).query, True))
            for m, u in sent
        ]
        leases = f"{PREFIX}/{LEASE_FOLDER}/"
        listings = [q["prefix"][0] for m, _, q in calls if m == "GET" and "list-type" in q]
        assert [p for p in listings if p != leases] == [f"{PREFIX}/{PROJECT}/date=2026-11-0"]
        touched = {
            unquote(key)
            for m, key, q in calls
            if key and "uploads" not in q and "list-type" not in q
        }
        assert all(k.startswith(leases) for k in touched), touched

    return Storage("moto S3", sink, matches, resumed)


def _gcs(front: GcsFront, bucket: str) -> Storage:
    async def sink(record: Sent | None) -> Sink:
        if record is not None:  # the front records every call; a resume is judged from here on
            front.calls.clear()
        return gcs_sink(front, bucket)

    async def matches(dataset: Dataset, hours: list[datetime], keep_gzip: bool) -> tuple[int, int]:
        return await assert_gcs_bucket_matches(
            front.emulator_url, bucket, dataset, hours, keep_gzip=keep_gzip
        )

    def resumed(sent: Sent) -> None:
        calls = [(m, urlsplit(u).path, parse_qs(urlsplit(u).query)) for m, u in front.calls]
        probe = f"{PREFIX}/{PROBE_FOLDER}"
        listings = [q["prefix"][0] for m, p, q in calls if m == "GET" and p.endswith("/o")]
        assert [p for p in listings if not p.startswith(probe)] == [
            f"{PREFIX}/{PROJECT}/date=2026-11-0"
        ]
        touched = {
            q["name"][0] if m == "POST" else unquote(p)
            for m, p, q in calls
            if not (m == "GET" and p.endswith("/o"))
        }
        assert all(PROBE_FOLDER in name for name in touched), touched

    return Storage("fake-gcs-server", sink, matches, resumed)


@pytest.fixture(
    params=[
        pytest.param("azure", marks=pytest.mark.azure),
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("gcs", marks=pytest.mark.gcs),
    ]
)
def storage(request: pytest.FixtureRequest) -> Storage:
    if request.param == "azure":
        return _azure(
            request.getfixturevalue("azurite"), request.getfixturevalue("azure_container")
        )
    if request.param == "gcs":
        return _gcs(request.getfixturevalue("gcs_front"), request.getfixturevalue("gcs_bucket"))
    return _s3(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))


async def test_two_days_at_concurrency_8_byte_identical_and_resume_with_one_listing(
    storage: Storage, tmp_path: Path
) -> None:
    quiet = frozenset({DAY1.replace(hour=3), DAY1 + timedelta(days=1, hours=6)})
    dataset = small_dataset(events_per_hour=300, quiet_hours=quiet)
    last = last_hour_of(DAY1, days=2)
    hours = list(hour_range(DAY1, last))
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=8)
        summary = await run(config, DAY1, last, sink=await storage.sink(None))
        assert summary.exit_code == 0, summary.failed
        assert sim.request_count() == 48
        assert sim.max_in_flight_seen <= 8
        assert (summary.count("complete"), summary.count("empty")) == (46, 2)

        files, size = await storage.matches(dataset, hours, False)
        assert files == 46 * 3
        assert size == summary.bytes_written
        print(
            f"\n2 days into {storage.name}: {size / 1e6:.1f} MB in {summary.seconds:.2f} s "
            f"= {size / 1e6 / summary.seconds:.1f} MB/s end to end (concurrency 8)"
        )

        sim.reset_log()
        sent: Sent = []
        again = await run(config, DAY1, last, sink=await storage.sink(sent))
        assert sim.request_count() == 0  # nothing asked of Amplitude
        assert len(again.plan.done) == 48 and again.exit_code == 0

    storage.resumed_from_one_listing(sent)
    await storage.matches(dataset, hours, False)


async def test_force_reextraction_leaves_no_stale_file(storage: Storage, tmp_path: Path) -> None:
    first, last = DAY1 + timedelta(hours=9), DAY1 + timedelta(hours=10)
    hours = [first, last]
    async with run_simulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        await run(config, first, last, sink=await storage.sink(None))
    # Upstream now has 2 partitions per hour, other bytes, and the rerun keeps the gzip files:
    # both the third partition and every .json of the first run are stale.
    fewer = small_dataset(pages_per_hour=2, seed=5)
    async with run_simulator(fewer, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, keep_gzip=True)
        skipped = await run(config, first, last, sink=await storage.sink(None))
        assert sim.request_count() == 0 and len(skipped.plan.done) == 2
        forced = await run(config, first, last, sink=await storage.sink(None), force=True)
        assert sim.request_count() == 2 and forced.exit_code == 0
    files, _ = await storage.matches(fewer, hours, True)
    assert files == 4


async def test_every_fault_class_on_a_first_attempt_is_recovered(
    storage: Storage, tmp_path: Path
) -> None:
    """The local matrix of tests/test_extract.py, one hour per fault kind: every hour ends
    byte-identical with one manifest (and, on S3, no upload left), whatever its first attempt
    went through."""
    from .test_extract import RECOVERABLE

    hours = [DAY1 + timedelta(hours=h) for h in range(len(RECOVERABLE))]
    faults = dict(zip(hours, RECOVERABLE, strict=True))
    reset_hour = next(h for h, f in faults.items() if f is Fault.RESET_BEFORE_HEADERS)
    # aiohttp re-sends a GET once after a reset before headers: make that one happen twice
    plan = FaultPlan.chain(
        FaultPlan.on_first_attempts({reset_hour: Fault.RESET_BEFORE_HEADERS}, 2),
        FaultPlan.on_first_attempt({h: f for h, f in faults.items() if h != reset_hour}),
    )
    dataset = small_dataset()
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=plan, retry_after_s=1, stall_s=10
    ) as sim:
        config = make_config(sim.base_url, tmp_path, read_timeout_s=3.0)
        summary = await run(config, hours[0], hours[-1], sink=await storage.sink(None))
        for hour in hours:
            assert sim.request_count(hour=hour) == (3 if hour == reset_hour else 2), faults[hour]
    assert summary.exit_code == 0, summary.failed
    assert summary.retries == len(hours)
    await storage.matches(dataset, hours, False)
