"""Days of odd records through faults, into Parquet and Delta: nothing lost, nothing twice.

Two days of small hours, a fault on a seeded 25 % of first attempts (every kind but a stall and
"over 4 GB"), and in every hour crafted lines: odd values, odd key names and lines that cannot
become rows. At the end every line the simulator served is found exactly once: as a row whose
columns and ``_extra`` are what the oracle of docs/schema.md makes of it, or byte for byte in
its hour's quarantine. Expected answers come from the lines as served, split here.

The issue's seven days are ``soak(..., days=7)``: ``python -m benchmarks.soak_values`` (minutes,
so not in the suite, which two days already cover kind by kind).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from async_amp.hours import hour_range
from async_amp.output.manifest import MANIFEST_NAME, QUARANTINE_NAME, hour_folder
from async_amp.output.stores import make_sink
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.faults import Fault, FaultPlan
from async_amp.simulator.server import run_simulator

from .delta_helpers import local_delta_sink
from .helpers import DAY1, KEY, SECRET, make_config, run
from .parquet_oracle import actual_rows, expected_row
from .test_deadletters import BAD
from .test_values import ODD_KEYS, ODD_VALUES, crafted_lines

pytestmark = pytest.mark.anyio

DAYS = 2
FIRST = DAY1
KINDS = tuple(f for f in Fault if f not in (Fault.STALL, Fault.HTTP_400))


def odd_lines(hour: datetime) -> bytes:
    """This hour's crafted lines: a few odd values and keys (uuids unique to the hour) and
    a few bad lines, with an empty line among them."""
    index = hour.day * 24 + hour.hour
    tag = f"{hour:%d%H}"
    values = crafted_lines([ODD_VALUES[index % len(ODD_VALUES)]], f"{tag}-v")
    keys = crafted_lines([ODD_KEYS[index % len(ODD_KEYS)]], f"{tag}-k")
    bad = [BAD[index % len(BAD)], BAD[(index + 4) % len(BAD)]]
    return b"\n".join([values[0], bad[0], b"", keys[0], bad[1]]) + b"\n"


def last_hour(days: int) -> datetime:
    return FIRST + timedelta(days=days) - timedelta(hours=1)


def dataset(days: int) -> Dataset:
    return Dataset(
        events_per_hour=12,
        pages_per_hour=2,
        crafted={h: odd_lines(h) for h in hour_range(FIRST, last_hour(days))},
    )


def served(
    ds: Dataset, days: int
) -> tuple[dict[str, tuple[datetime, str, dict[str, Any]]], dict[datetime, bytes]]:
    """Every row the simulator's lines must become (by uuid: hour, member, object) and each
    hour's quarantine as it must read."""
    rows: dict[str, tuple[datetime, str, dict[str, Any]]] = {}
    quarantine: dict[datetime, bytes] = {}
    for hour in hour_range(FIRST, last_hour(days)):
        for page in ds.pages(hour):
            member = ds.member_name(hour, page)
            for line in ds.ndjson(hour, page).split(b"\n"):
                if line in BAD:
                    quarantine[hour] = quarantine.get(hour, b"") + line + b"\n"
                elif line:
                    obj = json.loads(line)
                    assert obj["uuid"] not in rows
                    rows[obj["uuid"]] = (hour, member, obj)
    return rows, quarantine


def assert_rows(
    got: list[dict[str, Any]], want: dict[str, tuple[datetime, str, dict[str, Any]]]
) -> None:
    counts = Counter(row["uuid"] for row in got)
    assert counts == Counter(list(want)), "rows lost or duplicated"
    for row in got:
        hour, member, obj = want[row["uuid"]]
        expected = expected_row(obj, hour, member)
        for column, value in expected.items():
            if column == "_extra" and value is not None:  # NaN never equals itself
                assert row["_extra"].keys() == value.keys(), row["uuid"]
                continue
            same = value == row[column] or (value != value and row[column] != row[column])
            assert same, (row["uuid"], column, value, row[column])


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
async def test_days_of_odd_records_through_faults_are_whole_and_once(
    tmp_path: Path, fmt: str
) -> None:
    await soak(tmp_path, fmt, days=DAYS)


@dataclass(frozen=True, slots=True)
class Soaked:
    """What a soak did, once it proved every line whole and once."""

    hours: int
    requests: int
    faulted: int
    rows: int
    quarantined: int


async def soak(tmp_path: Path, fmt: str, *, days: int) -> Soaked:
    """``days`` of odd records through faults into ``fmt`` at ``tmp_path``, every line then
    found once (``AssertionError`` otherwise)."""
    ds = dataset(days)
    want, quarantine = served(ds, days)
    first, last = FIRST, last_hour(days)
    faults = FaultPlan.random(0.25, seed=20, kinds=KINDS)
    async with run_simulator(
        ds, api_key=KEY, secret_key=SECRET, faults=faults, retry_after_s=0
    ) as sim:
        config = make_config(sim.base_url, tmp_path, expected_pages_per_hour=2, max_attempts=6)
        config = replace(config, output=replace(config.output, format=fmt))
        sink = (
            local_delta_sink(config)
            if fmt == "delta"
            else make_sink(config, run_id="test-run", environ={})
        )
        summary = await run(config, first, last, sink=sink)
        faulted = sum(1 for r in sim.requests if r.fault is not None)
    assert summary.exit_code == 0, summary.failed
    assert summary.count("complete") == days * 24
    assert faulted > days * 24 // 8  # the faults did happen, and were recovered
    assert sum(r.quarantined for r in summary.results.values()) == sum(
        q.count(b"\n") for q in quarantine.values()
    )
    if fmt == "parquet":
        tables = []
        for hour in hour_range(first, last):
            folder = tmp_path / hour_folder("website", hour)
            manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
            tables += [
                pq.read_table(folder / f["name"])
                for f in manifest["files"]
                if f["name"].endswith(".parquet")
            ]
            assert (folder / QUARANTINE_NAME).read_bytes() == quarantine[hour], hour
        table = pa.concat_tables(tables)
    else:
        table = (
            DeltaTable(str(tmp_path / "website")).to_pyarrow_table().drop_columns(["date", "hour"])
        )
        for hour in hour_range(first, last):
            folder = tmp_path / "website" / "_async_amp" / hour_folder("", hour).lstrip("/")
            assert (folder / QUARANTINE_NAME).read_bytes() == quarantine[hour], hour
    assert_rows(actual_rows(table), want)
    lines = sum(q.count(b"\n") for q in quarantine.values())
    return Soaked(days * 24, summary.requests, faulted, table.num_rows, lines)
