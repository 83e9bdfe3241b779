"""Odd values and odd key names, served by the real simulator and read back from each format.

A typed column holds a value only when it holds it exactly; anything else (times out of range
or special, nanoseconds, a date alone, numbers beyond the column, NaN and infinities) leaves
the column null and is kept, verbatim, in ``_extra``. Only the exact documented key fills a
column: every other key, whatever its spelling, goes to ``_extra`` under its own name. No
hour fails, no Delta statistic raises. Expected values are worked out here from the lines the
simulator served, by the plain-Python oracle of docs/schema.md (``parquet_oracle``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from async_amp.config import Config
from async_amp.output.manifest import MANIFEST_NAME, hour_folder
from async_amp.output.stores import make_sink
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import run_simulator

from .delta_helpers import local_delta_sink
from .helpers import DAY1, KEY, SECRET, make_config, run
from .parquet_oracle import actual_rows, expected_row

pytestmark = pytest.mark.anyio

HOUR = DAY1 + timedelta(hours=10)

# (key, JSON text of the value): each line is one uuid plus one or more of these
ODD_VALUES: list[list[tuple[str, str]]] = [
    [("event_time", '"0000-01-01 00:00:00"'), ("client_event_time", '"10000-01-01 00:00:00"')],
    [("event_time", '"infinity"'), ("client_event_time", '"-infinity"')],
    [("event_time", '"epoch"'), ("processed_time", '"2026-11-01 10:00:00.1234567"')],
    [("event_time", '"2026-11-01"'), ("user_creation_time", '"2026-11-01 24:00:00"')],
    [("event_time", '"0001-01-01 00:00:00+01:00"'), ("server_upload_time", '"today"')],
    [
        ("event_time", '"0001-01-01 00:00:00"'),
        ("client_event_time", '"9999-12-31 23:59:59.999999"'),
    ],
    [("event_time", '"2026-11-01T12:00:00+02:00"'), ("processed_time", '"2026-11-01 10:00:00Z"')],
    [("amplitude_id", "9223372036854775808"), ("event_id", "-9223372036854775808")],
    [("session_id", "1e3"), ("app", "-0"), ("event_id", "123456789012345678901234567890")],
    [("location_lat", "1e400"), ("location_lng", "-1e400"), ("sample_rate", "1e-400")],
    # (1e-400 is 0.0 once parsed, by DuckDB and Python alike: stored as 0.0)
    [("location_lat", "NaN"), ("location_lng", "Infinity"), ("sample_rate", "-Infinity")],
    [("location_lat", "0.0"), ("location_lng", "-0e5"), ("sample_rate", "9007199254740993")],
    [("paying", '"true"'), ("is_attribution_event", "1")],
]

# keys that look like a column, a query's own names, or SQL: each is only data
ODD_KEYS: list[list[tuple[str, str]]] = [
    [("t.uuid", '"evil-uuid"'), ("t.event_time", '"2026-11-01 10:00:00"')],
    [("UUID", '"upper"'), ("Event_Type", '"Case"'), ("EVENT_TIME", '"2026-11-01 10:00:00"')],
    [("", '"empty key"'), (" ", "1"), ("a.b", "2"), ("with space", "3")],
    [('quo\\"te', '"q"'), ("it's", '"a"'), ("back\\\\slash", "4"), ("semi;--", '"x"')],
    [("_aa_k0", '"raw name"'), ("_aa_t1", "5"), ("_aa_spool_path", '"p"'), ("_aa_v", "6")],
    [("_extra", '{"a":1}'), ("_export_hour", '"h"'), ("_source_file", '"f"')],
    [("date", '"2026-01-01"'), ("hour", "99"), ("uuid ", '"spaced"'), ("$insert_id ", "7")],
    [("a/b~c", "8"), ("ünï😀", '"u"'), ("\\u0000nul", "9"), ("new\\nline", "10")],
]


def crafted_lines(groups: list[list[tuple[str, str]]], tag: str) -> list[bytes]:
    """One line per group, each with a uuid of its own and the group's pairs as written."""
    lines = []
    for number, pairs in enumerate(groups):
        body = ",".join(f'"{key}":{value}' for key, value in pairs)
        lines.append(f'{{"uuid":"{tag}-{number}","event_type":"odd",{body}}}'.encode())
    return lines


def odd_dataset(lines: list[bytes]) -> Dataset:
    return Dataset(events_per_hour=30, pages_per_hour=2, crafted={HOUR: b"\n".join(lines) + b"\n"})


def served(dataset: Dataset) -> tuple[str, list[dict[str, Any]]]:
    """The member holding the crafted lines and every line it held, parsed."""
    page = dataset.pages(HOUR)[0]
    lines = dataset.ndjson(HOUR, page).splitlines()
    return dataset.member_name(HOUR, page), [json.loads(line) for line in lines]


def formats_config(base_url: str, out: Path, fmt: str) -> Config:
    config = make_config(base_url, out, max_attempts=2)
    return replace(config, output=replace(config.output, format=fmt))


async def extract_into(fmt: str, dataset: Dataset, out: Path) -> Any:
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = formats_config(sim.base_url, out, fmt)
        sink = (
            local_delta_sink(config)
            if fmt == "delta"
            else make_sink(config, run_id="test-run", environ={})
        )
        summary = await run(config, HOUR, HOUR, sink=sink)
    assert summary.exit_code == 0, summary.to_json()
    assert summary.count("complete") == 1
    return summary


def read_rows(fmt: str, out: Path, member: str) -> pa.Table:
    """The crafted member's rows, as the format's own readers give them."""
    if fmt == "parquet":
        folder = out / hour_folder("website", HOUR)
        manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
        entry = next(f for f in manifest["files"] if f["source"] == member)
        return pq.read_table(folder / entry["name"])
    table = DeltaTable(str(out / "website")).to_pyarrow_table()
    table = table.filter(pa.compute.equal(table["_source_file"], member))
    return table.drop_columns(["date", "hour"])


def assert_like_oracle(
    table: pa.Table, lines: list[dict[str, Any]], member: str, groups: list[list[tuple[str, str]]]
) -> None:
    """Every row is what the oracle makes of its line; each odd value that missed its column
    is in ``_extra`` as the same JSON value (a number's spelling may change: ``1e3`` is
    kept as ``1000.0``; strings, integers beyond int64, NaN and infinities as written)."""
    got = actual_rows(table)
    assert len(got) == len(lines)
    by_uuid = {row["uuid"]: row for row in got}
    texts = dict(zip(table["uuid"].to_pylist(), table["_extra"].to_pylist(), strict=True))
    for obj in lines:
        want = expected_row(obj, HOUR, member)
        row = by_uuid[obj["uuid"]]
        for column, value in want.items():
            if column == "_extra" and value is not None:  # NaN != NaN: keys here, text below
                assert row["_extra"].keys() == value.keys(), obj["uuid"]
                continue
            same = value == row[column] or (value != value and row[column] != row[column])
            assert same, (obj["uuid"], column, value, row[column])
    tag = next(u for u in by_uuid if u.endswith("-0")).removesuffix("-0")
    for number, pairs in enumerate(groups):
        uuid = f"{tag}-{number}"
        for key_text, value in pairs:
            key = json.loads(f'"{key_text}"')
            if key in (by_uuid[uuid]["_extra"] or {}):  # the same JSON value (1e3: 1000.0)
                kept = json.loads(texts[uuid])[key]
                assert repr(kept) == repr(json.loads(value)), (uuid, key, texts[uuid])


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
async def test_odd_values_are_stored_exactly_or_kept_verbatim_in_extra(
    tmp_path: Path, fmt: str
) -> None:
    dataset = odd_dataset(crafted_lines(ODD_VALUES, "value"))
    member, lines = served(dataset)
    await extract_into(fmt, dataset, tmp_path)
    table = read_rows(fmt, tmp_path, member)
    assert_like_oracle(table, lines, member, ODD_VALUES)
    rows = {r["uuid"]: r for r in actual_rows(table)}
    # what a column holds exactly is stored; what it cannot is null, the text in _extra
    assert rows["value-5"]["event_time"] == datetime(1, 1, 1, tzinfo=UTC)
    assert rows["value-5"]["client_event_time"] == datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)
    assert rows["value-6"]["event_time"] == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert rows["value-7"]["event_id"] == -(2**63)
    assert rows["value-11"]["location_lat"] == 0.0
    for uuid, column, text in [
        ("value-0", "event_time", '"0000-01-01 00:00:00"'),
        ("value-1", "event_time", '"infinity"'),
        ("value-2", "event_time", '"epoch"'),
        ("value-2", "processed_time", '"2026-11-01 10:00:00.1234567"'),
        ("value-3", "event_time", '"2026-11-01"'),
        ("value-7", "amplitude_id", "9223372036854775808"),
        ("value-9", "location_lat", "1e400"),
        ("value-10", "location_lat", "NaN"),
        ("value-10", "sample_rate", "-Infinity"),
    ]:
        assert rows[uuid][column] is None, (uuid, column)
        extra = table["_extra"].to_pylist()[table["uuid"].to_pylist().index(uuid)]
        assert f'"{column}":{text}' in str(extra), (uuid, extra)
    if fmt == "delta":  # the statistics hold the extremes, and readers filter on them
        frame = pl.scan_delta(str(tmp_path / "website")).filter(
            pl.col("client_event_time") > datetime(9000, 1, 1, tzinfo=UTC)
        )
        assert frame.select("uuid").collect()["uuid"].to_list() == ["value-5"]
        con = duckdb.connect()
        con.register("events", DeltaTable(str(tmp_path / "website")).to_pyarrow_dataset())
        nulls = con.sql("SELECT count(*) FROM events WHERE event_time IS NULL").fetchall()[0]
        assert nulls == (
            sum(1 for o in lines if expected_row(o, HOUR, member)["event_time"] is None),
        )


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
async def test_key_names_are_data_never_code(tmp_path: Path, fmt: str) -> None:
    groups = ODD_KEYS
    dataset = odd_dataset(crafted_lines(groups, "key"))
    member, lines = served(dataset)
    await extract_into(fmt, dataset, tmp_path)
    table = read_rows(fmt, tmp_path, member)
    assert_like_oracle(table, lines, member, groups)
    rows = {r["uuid"]: r for r in actual_rows(table)}
    # no normal row lost its uuid, no odd key filled a column
    assert all(r["uuid"] for r in rows.values())
    assert rows["key-0"]["event_time"] is None
    assert rows["key-0"]["_extra"] == {"t.uuid": "evil-uuid", "t.event_time": "2026-11-01 10:00:00"}
    assert rows["key-1"]["_extra"] == {
        "UUID": "upper",
        "Event_Type": "Case",
        "EVENT_TIME": "2026-11-01 10:00:00",
    }
    assert rows["key-1"]["event_type"] == "odd"
    assert rows["key-2"]["_extra"] == {"": "empty key", " ": 1, "a.b": 2, "with space": 3}
    assert rows["key-5"]["_extra"] == {"_extra": {"a": 1}, "_export_hour": "h", "_source_file": "f"}
    assert rows["key-7"]["_extra"]["\x00nul"] == 9
    assert rows["key-7"]["_extra"]["new\nline"] == 10


@pytest.mark.parametrize("fmt", ["ndjson", "gzip"])
async def test_files_formats_keep_odd_lines_byte_for_byte(tmp_path: Path, fmt: str) -> None:
    dataset = odd_dataset(crafted_lines(ODD_VALUES + ODD_KEYS, "both"))
    page = dataset.pages(HOUR)[0]
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, keep_gzip=fmt == "gzip")
        summary = await run(config, HOUR, HOUR)
    assert summary.exit_code == 0
    folder = tmp_path / hour_folder("website", HOUR)
    name = dataset.member_name(HOUR, page).split("/", 1)[1]
    stored = (folder / (name if fmt == "gzip" else name.removesuffix(".gz"))).read_bytes()
    assert stored == (dataset.gz(HOUR, page) if fmt == "gzip" else dataset.ndjson(HOUR, page))
