"""Soak per output format: 7 days at concurrency 8 with a fault on a random (seeded) 25 % of
first attempts. Nothing lost, nothing duplicated: every hour is byte-identical to what the
simulator served (in the format's own encoding), every event is stored exactly once, and no
hour with a faulted first answer was committed from that answer.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from async_amp.hours import hour_range
from async_amp.manifest import hour_folder
from async_amp.testing.server import Fault, FaultPlan, run_simulator

from .helpers import DAY1, KEY, SECRET, make_config, run, small_dataset

pytestmark = pytest.mark.anyio

DAYS = 7
KINDS = tuple(f for f in Fault if f is not Fault.HTTP_400)  # 400 is final by design
_UUID = re.compile(rb'"uuid":"([0-9a-f-]{36})"')


def stored_ndjson(path: Path, fmt: str) -> bytes:
    """A data file's events as NDJSON, whatever the format stored them as."""
    data = path.read_bytes()
    return gzip.decompress(data) if fmt == "gzip" else data


@pytest.mark.parametrize("fmt", ["ndjson", "gzip"])
async def test_soak_7_days_25_percent_faulty_first_attempts(tmp_path: Path, fmt: str) -> None:
    dataset = small_dataset(events_per_hour=30, quiet_fraction=0.03, seed=7)
    first, last = DAY1, DAY1 + timedelta(days=DAYS) - timedelta(hours=1)
    faults = FaultPlan.random(0.25, seed=25, kinds=KINDS)
    dataset.warm(hour_range(first, last))  # no slow first answer mistaken for a stall
    started = time.monotonic()
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=faults, stall_s=3
    ) as sim:
        config = make_config(
            sim.base_url,
            tmp_path,
            concurrency=8,
            expected_pages_per_hour=3,
            read_timeout_s=0.5,
            keep_gzip=fmt == "gzip",
        )
        summary = await run(config, first, last)
        records = sim.requests
    assert summary.exit_code == 0, summary.to_json()

    uuids: Counter[bytes] = Counter()
    for hour in hour_range(first, last):
        folder = tmp_path / hour_folder("website", hour)
        manifest = json.loads((folder / "_manifest.json").read_bytes())
        pages = dataset.pages(hour)
        assert len(manifest["files"]) == len(pages), hour
        assert {p.name for p in folder.iterdir()} == {"_manifest.json"} | {
            f["name"] for f in manifest["files"]
        }
        for page in pages:
            name = dataset.member_name(hour, page).split("/", 1)[1]
            name = name if fmt == "gzip" else name.removesuffix(".gz")
            body = stored_ndjson(folder / name, fmt)
            assert body == dataset.ndjson(hour, page), f"{hour} #{page}"
            uuids.update(_UUID.findall(body))
    assert sum(dataset.hour_event_count(h) for h in hour_range(first, last)) == len(uuids)
    assert not [u for u, n in uuids.items() if n > 1]  # nothing stored twice

    faulted = {r.fault_hour or r.start for r in records if r.fault is not None}
    resets = {r.start for r in records if r.fault is Fault.RESET_BEFORE_HEADERS}
    retried = {h for h, r in summary.results.items() if r.attempts > 1}
    assert faulted - resets <= retried  # no faulted answer was committed
    injected = Counter(r.fault.value for r in records if r.fault is not None)
    assert sum(injected.values()) >= 0.2 * DAYS * 24
    print(  # the soak figures, for docs/reliability.md (pytest -s)
        f"SOAK {fmt}: {DAYS * 24} hours, {sum(injected.values())} faults of {len(injected)} "
        f"kinds, {len(retried)} hours recovered, {len(records)} requests, {len(uuids)} events "
        f"once each, {time.monotonic() - started:.1f} s"
    )
