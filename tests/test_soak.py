"""Soak per output format (NDJSON, gzip, Parquet, Delta): 7 days (Parquet and Delta: 3, as each
of their hours costs a conversion, and Delta's a table commit too) at concurrency 8 with a fault on a random (seeded) 25 % of
first attempts. Nothing lost, nothing duplicated: every hour is
byte-identical to what the simulator served (in the format's own encoding; Delta: rows and
uuids read back by deltalake), every event is stored exactly once, and no hour with a
faulted first answer was committed from that answer.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from async_amp.extraction.results import RunSummary
from async_amp.hours import hour_range
from async_amp.output.manifest import hour_folder
from async_amp.output.stores import make_sink
from async_amp.output.stores.base import Sink
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import Fault, FaultPlan, RequestRecord, run_simulator

from .delta_helpers import (
    expected_rows_per_hour,
    expected_uuids,
    local_delta_sink,
    read_table,
    rows_per_hour,
)
from .helpers import DAY1, KEY, SECRET, make_config, run, small_dataset

pytestmark = pytest.mark.anyio

DAYS = 7
DELTA_DAYS = 3
PARQUET_DAYS = 3  # each hour converted by DuckDB: 7 days cost ~3 minutes of a loaded CI run
FIRST, LAST = DAY1, DAY1 + timedelta(days=DAYS) - timedelta(hours=1)
KINDS = tuple(f for f in Fault if f is not Fault.HTTP_400)  # 400 is final by design
FAULTS = FaultPlan.random(0.25, seed=25, kinds=KINDS)
# A stall must be given up after the read timeout and re-asked, so the timeout is short; but a
# healthy answer held up by a loaded machine must not burn the hour's attempts (0.5 s left it
# little room), and a timer that fires late must still find the stall going on: 2 s against a
# 30 s stall. A soak draws 1-3 stalls (each then costs 2 s of one of 8 slots).
SOAK_READ_TIMEOUT_S, SOAK_STALL_S = 2.0, 30.0
_UUID = re.compile(rb'"uuid":"([0-9a-f-]{36})"')


def assert_faulted_hours_were_retried(
    records: Sequence[RequestRecord], summary: RunSummary, days: int = DAYS
) -> int:
    """No hour was committed from a faulted answer (RESET_BEFORE_HEADERS aside: aiohttp
    re-sends that one itself), and about a quarter of first attempts were faulted."""
    faulted = {r.fault_hour or r.start for r in records if r.fault is not None}
    resets = {r.start for r in records if r.fault is Fault.RESET_BEFORE_HEADERS}
    retried = {h for h, r in summary.results.items() if r.attempts > 1}
    assert faulted - resets <= retried
    injected = sum(1 for r in records if r.fault is not None)
    assert injected >= 0.2 * days * 24
    return injected


@dataclass(frozen=True, slots=True)
class Soaked:
    """One soak run: what the simulator served and was asked, and how the run ended."""

    dataset: Dataset
    summary: RunSummary
    records: Sequence[RequestRecord]
    started: float

    def report(self, fmt: str, hours: int, events: int) -> None:
        """Check the faulted hours and print the soak figures, for docs/reliability.md
        (pytest -s)."""
        injected = assert_faulted_hours_were_retried(self.records, self.summary, hours // 24)
        print(
            f"SOAK {fmt}: {hours} hours, {injected} faults, {len(self.records)} requests, "
            f"{events} events once each, {time.monotonic() - self.started:.1f} s"
        )


async def soak(tmp_path: Path, fmt: str, last: datetime = LAST) -> Soaked:
    """FIRST to ``last`` at concurrency 8 through FAULTS into ``fmt``; the run must end 0."""
    dataset = small_dataset(events_per_hour=30, quiet_fraction=0.03, seed=7)
    dataset.warm(hour_range(FIRST, last))
    started = time.monotonic()
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=FAULTS, stall_s=SOAK_STALL_S
    ) as sim:
        config = make_config(
            sim.base_url,
            tmp_path,
            concurrency=8,
            expected_pages_per_hour=3,
            read_timeout_s=SOAK_READ_TIMEOUT_S,
            keep_gzip=fmt == "gzip",
        )
        sink: Sink | None = None
        if fmt == "parquet":
            config = replace(config, output=replace(config.output, format="parquet"))
            sink = make_sink(config, run_id="soak", environ={})
        elif fmt == "delta":
            sink = local_delta_sink(config)
        summary = await run(config, FIRST, last, sink=sink)
        records = sim.requests
    assert summary.exit_code == 0, summary.result("website").to_json("soak")
    return Soaked(dataset, summary, records, started)


@pytest.mark.parametrize("fmt", ["ndjson", "gzip"])
async def test_soak_7_days_25_percent_faulty_first_attempts(tmp_path: Path, fmt: str) -> None:
    soaked = await soak(tmp_path, fmt)
    dataset = soaked.dataset
    uuids: Counter[bytes] = Counter()
    for hour in hour_range(FIRST, LAST):
        folder = tmp_path / hour_folder("website", hour)
        manifest = json.loads((folder / "_manifest.json").read_bytes())
        pages = dataset.pages(hour)
        assert len(manifest["files"]) == len(pages), hour
        listed = {f["name"] for f in manifest["files"]}
        assert {p.name for p in folder.iterdir()} == {"_manifest.json"} | listed
        for page in pages:
            name = dataset.member_name(hour, page).split("/", 1)[1]
            data = (folder / (name if fmt == "gzip" else name.removesuffix(".gz"))).read_bytes()
            body = gzip.decompress(data) if fmt == "gzip" else data
            assert body == dataset.ndjson(hour, page), f"{hour} #{page}"
            uuids.update(_UUID.findall(body))
    assert sum(dataset.hour_event_count(h) for h in hour_range(FIRST, LAST)) == len(uuids)
    assert not [u for u, n in uuids.items() if n > 1]  # nothing stored twice
    soaked.report(fmt, DAYS * 24, len(uuids))


async def test_soak_3_days_25_percent_faulty_first_attempts_into_parquet(tmp_path: Path) -> None:
    last = FIRST + timedelta(days=PARQUET_DAYS) - timedelta(hours=1)
    soaked = await soak(tmp_path, "parquet", last)
    dataset = soaked.dataset
    uuids: Counter[str] = Counter()
    for hour in hour_range(FIRST, last):
        folder = tmp_path / hour_folder("website", hour)
        files = sorted(folder.glob("*.parquet"))
        assert len(files) == len(dataset.pages(hour)), hour
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        assert rows == dataset.hour_event_count(hour), hour
        for file in files:
            uuids.update(pq.read_table(file, columns=["uuid"])["uuid"].to_pylist())
    assert uuids == expected_uuids(dataset, FIRST, last)  # nothing lost, nothing twice
    soaked.report("parquet", PARQUET_DAYS * 24, len(uuids))


async def test_soak_3_days_25_percent_faulty_first_attempts_into_delta(tmp_path: Path) -> None:
    last = FIRST + timedelta(days=DELTA_DAYS) - timedelta(hours=1)
    soaked = await soak(tmp_path, "delta", last)
    table = read_table(str(tmp_path / "website"))
    assert rows_per_hour(table) == expected_rows_per_hour(soaked.dataset, FIRST, last)
    uuids = Counter(table["uuid"].to_pylist())
    assert uuids == expected_uuids(soaked.dataset, FIRST, last)  # nothing lost, nothing twice
    soaked.report("delta", DELTA_DAYS * 24, len(uuids))
