"""A year of hourly data in the day layout: files and row groups after nightly compaction,
statistics in the log for every column readers filter on, an hour replaced on a compacted day,
checkpoints read by deltalake and polars, plain-encoded.

The year is built cheaply, once for the module. Its last ``NIGHTS`` days go the way every day
goes: 24 hourly commits (``replace_hour``, one run's writer), then the nightly
``compact_day``. The days before are put in as what that leaves, one sorted file of one row
group per day (the first day's rows, sorted once, moved to each day), in
``CHECKPOINT_INTERVAL`` commits so that the log reaches its first checkpoint (8,760 hourly
commits take minutes on the shared 2-core machine; a day's commits and compaction are the
code under test either way). The hourly commits run end to end (extraction included) in
``test_delta.py`` and ``test_delta_runs.py``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from async_amp.output.columnar.schema import COLUMNS, EXTRA
from async_amp.output.delta.base import NO_HOOK, TableLocation
from async_amp.output.delta.checkpoint import Checkpoints
from async_amp.output.delta.compact import compact_day
from async_amp.output.delta.files import FILE_SCHEMA, put_file, table_schema
from async_amp.output.delta.layout import CHECKPOINT_INTERVAL, SORT_KEY, STATS_COLUMNS
from async_amp.output.delta.table import Writers, ensure_table, replace_hour

DAYS = 365
NIGHTS = 2
EVENTS = 2  # an hour
FIRST = datetime(2025, 11, 1, tzinfo=UTC)
JSON_COLUMNS = {c.name for c in (*COLUMNS, EXTRA) if c.kind == "json"}


def _value(field: pa.Field, at: datetime, i: int) -> Any:
    """A value of ``field``'s type for row ``i`` of hour ``at`` (every column holds some)."""
    kind = field.type
    if field.name == "uuid":
        return f"{at:%Y%m%d%H}-{i}-{field.name}"
    if field.name in ("_export_hour",):
        return at
    if field.name == "hour":
        return at.hour
    if field.name == "event_type":
        return ("Page Viewed", "Clicked")[i % 2]
    if pa.types.is_timestamp(kind):
        return at + timedelta(minutes=i)
    if pa.types.is_integer(kind):
        return at.hour * 100 + i
    if pa.types.is_floating(kind):
        return i + 0.5
    if pa.types.is_boolean(kind):
        return bool(i % 2)
    if field.name in JSON_COLUMNS:
        return json.dumps({"n": i})
    return f"{field.name}-{at:%H}-{i}"


def hour_rows(at: datetime, tag: str = "", n: int = EVENTS) -> pa.Table:
    columns = {f.name: pa.array([_value(f, at, i) for i in range(n)], f.type) for f in FILE_SCHEMA}
    columns["uuid"] = pa.array([f"{tag}{at:%Y%m%d%H}-{i}" for i in range(n)])
    return pa.table(columns, schema=FILE_SCHEMA)


def year_rows(days: int) -> pa.Table:
    """``hour_rows`` of every hour of the first ``days`` days, each day sorted by
    ``SORT_KEY`` (as ``compact_day`` leaves it): the first day's rows, sorted once, moved."""
    first = pa.concat_tables(hour_rows(FIRST + timedelta(hours=h)) for h in range(24))
    first = first.sort_by([(k, "ascending") for k in SORT_KEY])
    rows = pa.concat_tables([first] * days).combine_chunks()
    day_us = 86_400 * 1_000_000
    shift = pa.array(
        [d * day_us for d in range(days) for _ in range(first.num_rows)], pa.duration("us")
    )
    for index, field in enumerate(rows.schema):
        if pa.types.is_timestamp(field.type):
            rows = rows.set_column(index, field, pc.add(rows[field.name], shift))
    at = pc.strftime(rows["_export_hour"], format="%Y%m%d%H")
    # the number after the hour in each uuid of the first day (``YYYYMMDDHH-i``)
    sequence = pc.utf8_slice_codeunits(first["uuid"], 11).to_pylist() * days
    uuid = pc.binary_join_element_wise(at, pa.array(sequence, pa.string()), "-")
    return rows.set_column(rows.schema.get_field_index("uuid"), "uuid", uuid)


def put_hour(location: TableLocation, spool: Path, at: datetime, tag: str = "") -> Any:
    local = spool / f"{tag}{at:%Y%m%d%H}.parquet"
    pq.write_table(hour_rows(at, tag), local)
    return put_file(location, local, at)


def build_year(tmp_path: Path) -> TableLocation:
    location = TableLocation(str(tmp_path / "t"))
    spool = tmp_path / "spool"
    spool.mkdir()
    table = ensure_table(location, table_schema(), "year")
    checkpoints = Checkpoints()

    def commit(files: list[Any]) -> None:
        table.update_incremental()
        table.create_write_transaction(
            [f.add_action() for f in files],
            "append",
            table.schema(),
            partition_by=["date"],
            post_commithook_properties=NO_HOOK,
        )
        checkpoints.after_commit(location, table.version() + 1, interval=CHECKPOINT_INTERVAL)

    built = DAYS - NIGHTS
    rows = year_rows(built)
    per_day = rows.num_rows // built
    days: list[Any] = []
    for d in range(built):
        local = spool / f"{d}.parquet"
        pq.write_table(rows.slice(d * per_day, per_day), local)
        days.append(put_file(location, local, FIRST + timedelta(days=d)))
    size = -(-built // CHECKPOINT_INTERVAL)
    for start in range(0, built, size):
        commit(days[start : start + size])
    writers = Writers()  # the last days: a run's 24 hourly commits, then the nightly job
    for d in range(built, DAYS):
        day = FIRST + timedelta(days=d)
        for h in range(24):
            at = day + timedelta(hours=h)
            files = [put_hour(location, spool, at)]
            replace_hour(location, at, files, schema=table_schema(), metadata={}, writers=writers)
        assert len(DeltaTable(location.uri).file_uris()) == d + 24
        compact_day(location, day.date(), retention_hours=0)
    writers.close()
    return location


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> TableLocation:
    return build_year(tmp_path_factory.mktemp("year"))


def test_a_compacted_year_is_one_file_a_day_of_one_row_group_sorted(year: TableLocation) -> None:
    table = DeltaTable(year.uri)
    live = table.file_uris()
    assert len(live) == DAYS <= 400  # Direct Lake's smallest guardrail is 1,000 files
    assert table.metadata().partition_columns == ["date"]
    adds = pa.table(table.get_add_actions(flatten=True))
    nights = (FIRST + timedelta(days=DAYS - NIGHTS)).date()
    days = adds["partition.date"].to_pylist()
    compacted = [
        f"{year.uri}/{p}"
        for p, d in zip(adds["path"].to_pylist(), days, strict=True)
        if d >= nights
    ]
    assert len(compacted) == NIGHTS
    for uri in [*live[:: DAYS // 12], *compacted]:  # a file a month, and the nights'
        meta = pq.ParquetFile(uri).metadata
        assert (meta.num_rows, meta.num_row_groups) == (24 * EVENTS, 1)
        read = pq.read_table(uri, columns=["event_type", "event_time"])
        keys = list(
            zip(read["event_type"].to_pylist(), read["event_time"].to_pylist(), strict=True)
        )
        assert keys == sorted(keys)
    assert table.to_pyarrow_dataset().count_rows() == DAYS * 24 * EVENTS


def test_the_log_holds_min_max_and_null_counts_of_every_non_json_column(
    year: TableLocation,
) -> None:
    table = DeltaTable(year.uri)
    expected = {f.name for f in FILE_SCHEMA} - JSON_COLUMNS
    assert expected == set(STATS_COLUMNS)
    assert table.metadata().configuration["delta.dataSkippingStatsColumns"].split(",") == list(
        STATS_COLUMNS
    )
    adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    for add in adds:
        day = add["partition.date"]
        for name in expected:
            assert add[f"null_count.{name}"] == 0, name
            low, high = add[f"min.{name}"], add[f"max.{name}"]
            assert low is not None and high is not None, (day, name)
        assert add["min.hour"] == 0 and add["max.hour"] == 23
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        assert add["min._export_hour"] == start
        assert add["max._export_hour"] == start + timedelta(hours=23)
        for name in JSON_COLUMNS:  # no bounds for JSON text
            assert f"min.{name}" not in add and f"max.{name}" not in add


def test_checkpoints_are_plain_and_read_by_deltalake_and_polars(year: TableLocation) -> None:
    log = Path(year.uri) / "_delta_log"
    checkpoints = sorted(log.glob("*.checkpoint.parquet"))
    assert checkpoints
    for path in checkpoints[-3:]:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                column = meta.row_group(g).column(c)
                assert set(column.encodings) <= {"PLAIN", "RLE"}, column.path_in_schema
                assert column.dictionary_page_offset is None
                assert not column.has_column_index and not column.has_offset_index
    last = json.loads((log / "_last_checkpoint").read_text())
    newest = int(checkpoints[-1].name.split(".")[0])
    assert last["version"] == newest and last["sizeInBytes"] == checkpoints[-1].stat().st_size
    version = DeltaTable(year.uri).version()
    assert version - newest < CHECKPOINT_INTERVAL
    # read from the newest checkpoint and the JSON commits after it
    rows = pl.scan_delta(year.uri).filter(pl.col("date") == date(2026, 3, 1)).collect()
    assert rows.height == 24 * EVENTS and sorted(set(rows["hour"].to_list())) == list(range(24))


def test_an_hour_replaced_on_a_compacted_day_is_old_or_new_never_half(
    year: TableLocation, tmp_path: Path
) -> None:
    at = FIRST + timedelta(days=100, hours=7)
    before = DeltaTable(year.uri).version()
    version = replace_hour(
        year, at, [put_hour(year, tmp_path, at, tag="new-")], schema=table_schema(), metadata={}
    )
    assert version == before + 1
    day = pl.col("date") == at.date()
    for v, tag in ((before, ""), (version, "new-")):
        rows = pl.read_delta(year.uri, version=v).filter(day)
        assert rows.height == 24 * EVENTS
        hour = rows.filter(pl.col("hour") == 7)["uuid"].to_list()
        assert sorted(hour) == [f"{tag}{at:%Y%m%d%H}-{i}" for i in range(EVENTS)]
        others = rows.filter(pl.col("hour") != 7)["uuid"].to_list()
        assert len(others) == 23 * EVENTS and not any(u.startswith("new-") for u in others)
    # the day is two files now (the rest of the day rewritten, and the new hour): the next
    # nightly run makes it one again
    files = pa.table(DeltaTable(year.uri).get_add_actions(flatten=True)).to_pylist()
    assert sum(1 for f in files if f["partition.date"] == at.date()) == 2
    compact_day(year, at.date(), retention_hours=0)
    assert len(DeltaTable(year.uri).file_uris()) == DAYS
