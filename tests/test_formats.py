"""The NDJSON -> Arrow/Parquet converter, checked row by row against a plain-Python oracle."""

from __future__ import annotations

import contextlib
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from async_amp.errors import ArchiveError
from async_amp.output.columnar import (
    EVENT_SCHEMA,
    JSON_TYPE,
    iter_event_batches,
    plain_schema,
    write_parquet,
)
from async_amp.output.columnar.staging import DuplicateFilter
from async_amp.simulator.dataset import Dataset
from tools.docgen import render_schema

from .parquet_oracle import actual_rows, assert_rows_match, expected_row

HOUR = datetime(2026, 11, 2, 14, tzinfo=UTC)
SOURCE = "187520/187520_2026-11-02_14#0.json.gz"


def assert_rows(lines: list[dict[str, Any]], table: pa.Table) -> None:
    assert_rows_match(lines, table, export_hour=HOUR, source=SOURCE)


def convert(data: bytes, tmp_path: Path, **kw: Any) -> pa.Table:
    path = tmp_path / "member.ndjson"
    path.write_bytes(data)
    batches = list(iter_event_batches(path, export_hour=HOUR, source_file=SOURCE, **kw))
    return pa.Table.from_batches(batches, schema=EVENT_SCHEMA)


def test_simulated_hour_converts_row_for_row(tmp_path: Path) -> None:
    ds = Dataset(events_per_hour=400, pages_per_hour=1)
    data = ds.ndjson(HOUR, 0)
    table = convert(data, tmp_path)
    assert table.schema == EVENT_SCHEMA
    lines = [json.loads(line) for line in data.splitlines()]
    assert_rows(lines, table)
    odd = sum(expected_row(obj, HOUR, SOURCE)["_extra"] is not None for obj in lines)
    assert 0 < odd < len(lines) // 50  # the simulator's odd records, all kept in _extra
    assert len(table) - table.column("_extra").null_count == odd


ODD = [
    # numbers inside strings, a string session_id, a number user_id, -1 sessions
    {"uuid": "a", "session_id": "1793627999910", "user_id": 12345, "app": "187520"},
    {"uuid": "b", "session_id": -1, "event_id": 7.0, "amplitude_id": 2**64, "sample_rate": 1},
    {"uuid": "c", "paying": "true", "is_attribution_event": 1, "location_lat": "52.5"},
    {"uuid": "d", "location_lat": 52.520008, "location_lng": -13, "paying": True},
    {"uuid": "e", "event_time": "2026-11-02 13:59:59.910197", "user_creation_time": "never"},
    {"uuid": "f", "event_time": "2026-11-02T15:59:59+02:00", "processed_time": 1793627999},
    {"uuid": "g", "new_field": {"x": [1, [2, [3]]]}, "another": "v", "nothing": None},
    {"uuid": "h", "event_properties": {}, "user_properties": {"é": "ünïcødé 😀", "q": '"\\'}},
    {"uuid": "i", "event_properties": {"long": "x" * 200_000, "big": 123456789012345678901234}},
    {"uuid": "j", "groups": [], "data": "just text", "plan": 5, "amplitude_attribution_ids": None},
    {"uuid": 'k"\\\u0001', "city": "Z\u00fcrich\n", "event_type": "[Amplitude] Page Viewed"},
    {"uuid": "l", "amplitude_id": 9_007_199_254_740_993, "sample_rate": 9_007_199_254_740_993},
    {"uuid": "m", "$insert_id": None, "$schema": 12, "$insert_key": "k", "region": True},
    {"uuid": "n", "version_name": 1.5, "dma": ["x"], "country": {"name": "DE"}},
    {},
]


def test_odd_records_keep_every_value(tmp_path: Path) -> None:
    data = b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in ODD)
    table = convert(data, tmp_path)
    assert_rows(ODD, table)
    extra = actual_rows(table)
    assert extra[0]["_extra"] == {"session_id": "1793627999910", "user_id": 12345, "app": "187520"}
    assert extra[6]["_extra"] == {"new_field": {"x": [1, [2, [3]]]}, "another": "v"}
    assert extra[5]["event_time"] == datetime(2026, 11, 2, 13, 59, 59, tzinfo=UTC)


def test_compact_and_spaced_json_agree(tmp_path: Path) -> None:
    compact = b"".join(json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in ODD)
    spaced = b"".join(json.dumps(o, indent=None).encode() + b"  \r\n" for o in ODD)
    assert_rows(ODD, convert(compact, tmp_path))
    assert_rows(ODD, convert(spaced, tmp_path))


@pytest.mark.parametrize(
    ("data", "line", "why"),
    [
        (b'{"uuid":"a"}\n{"uuid":"b",\n{"uuid":"c"}\n', 2, "not JSON"),
        (b'{"uuid":"a"}\n \r\n{"uuid":"c"}\n', 2, "only white space"),
        (b'{"uuid":"a"}\n{"uuid":"b"}\n[1, 2]\n', 3, "not an object"),
        (b'{"uuid":"a"}\n"text"\n', 2, "not an object"),
        (b'{"uuid":"a"}\n{"uuid":"b"} trailing\n', 2, "not JSON"),
    ],
)
def test_a_line_that_is_not_a_json_object_names_member_and_line(
    tmp_path: Path, data: bytes, line: int, why: str
) -> None:
    with pytest.raises(ArchiveError) as info:
        convert(data, tmp_path)
    message = str(info.value)
    assert SOURCE in message
    assert f"line {line}:" in message
    assert why in message


def test_an_empty_line_is_no_event_and_no_row(tmp_path: Path) -> None:
    table = convert(b'\n{"uuid":"a"}\n\n\n{"uuid":"b"}\n\n', tmp_path)
    assert table.column("uuid").to_pylist() == ["a", "b"]


def test_a_last_line_without_newline_is_a_row(tmp_path: Path) -> None:
    table = convert(b'{"uuid":"a"}\n{"uuid":"b"}', tmp_path)
    assert table.column("uuid").to_pylist() == ["a", "b"]


def test_batches_are_bounded_and_chunks_equal_a_file(tmp_path: Path) -> None:
    ds = Dataset(events_per_hour=3000, pages_per_hour=1)
    data = ds.ndjson(HOUR, 0)
    from_file = convert(data, tmp_path, batch_rows=500)
    pieces = [data[i : i + 7777] for i in range(0, len(data), 7777)]
    batches = list(
        iter_event_batches(
            iter(pieces), export_hour=HOUR, source_file=SOURCE, batch_rows=500, spool_dir=tmp_path
        )
    )
    assert max(b.num_rows for b in batches) <= 500
    assert pa.Table.from_batches(batches).equals(from_file)
    assert list(tmp_path.glob("async-amp-*")) == []  # the spool is gone


def test_parquet_is_deterministic_typed_and_bounded(tmp_path: Path) -> None:
    ds = Dataset(events_per_hour=3000, pages_per_hour=1)
    path = tmp_path / "m.ndjson"
    path.write_bytes(ds.ndjson(HOUR, 0))
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        facts = write_parquet(
            iter_event_batches(path, export_hour=HOUR, source_file=SOURCE, batch_rows=700),
            buf,
            row_group_rows=1000,
        )
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    lines = ds.event_count(HOUR, 0)
    assert facts.rows == lines
    assert facts.bytes == len(outs[0])
    file = pq.ParquetFile(io.BytesIO(outs[0]))
    assert facts.extra_rows == lines - file.read(columns=["_extra"]).column(0).null_count > 0
    assert file.schema_arrow == EVENT_SCHEMA
    sizes = [file.metadata.row_group(i).num_rows for i in range(file.metadata.num_row_groups)]
    assert sizes == [1000] * (lines // 1000) + [lines % 1000]
    logical = {c.name: str(c.logical_type) for c in file.schema}
    assert logical["event_properties"] == "JSON"
    assert "isAdjustedToUTC=true" in logical["event_time"]
    first = file.read().slice(0, 1).to_pylist()[0]
    line = json.loads(ds.ndjson(HOUR, 0).split(b"\n", 1)[0])
    assert first["uuid"] == line["uuid"]
    assert first["insert_id"] == line["$insert_id"]
    assert first["session_id"] == line["session_id"]
    assert first["event_time"].tzinfo is not None
    assert first["_export_hour"] == HOUR


def test_plain_schema_only_drops_the_json_extension() -> None:
    plain = plain_schema()
    assert plain.names == EVENT_SCHEMA.names
    for a, b in zip(plain, EVENT_SCHEMA, strict=True):
        assert a.type == (pa.utf8() if b.type == JSON_TYPE else b.type)
    assert EVENT_SCHEMA.field("event_time").type == pa.timestamp("us", tz="UTC")


def test_export_hour_is_the_given_hour(tmp_path: Path) -> None:
    table = convert(b'{"uuid":"a","event_time":"2026-11-02 13:00:00.000000"}\n', tmp_path)
    assert table.column("_export_hour").to_pylist() == [HOUR]
    assert table.column("event_time").to_pylist() == [HOUR - timedelta(hours=1)]


def test_docs_schema_table_is_generated_from_the_declaration() -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
    current = doc.read_text(encoding="utf-8")
    assert render_schema(current) == current, "docs/schema.md is out of date: run 'make docs'"
    table = current.split("<!-- columns -->", 1)[1]
    documented = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert documented[: len(EVENT_SCHEMA)] == EVENT_SCHEMA.names


def test_a_failed_write_hands_its_engine_back(tmp_path: Path) -> None:
    path = tmp_path / "m.ndjson"
    path.write_bytes(Dataset(events_per_hour=200, pages_per_hour=1).ndjson(HOUR, 0))

    class DiskFull:
        def write(self, data: bytes) -> None:
            raise OSError("No space left on device")

    for _ in range(2 * (os.cpu_count() or 1) + 1):  # more failures than there are engines
        with (
            pytest.raises(OSError, match="No space"),
            contextlib.closing(
                iter_event_batches(path, export_hour=HOUR, source_file=SOURCE)
            ) as batches,
        ):
            write_parquet(batches, DiskFull())
    assert convert(path.read_bytes(), tmp_path).num_rows > 0  # an engine was still free


@pytest.mark.parametrize("drop", [False, True])
def test_duplicate_filter_is_exact_across_batches_widths_and_nulls(drop: bool) -> None:
    values = [f"{i % 700:08x}-0000-4000-8000-{i % 700:012x}" for i in range(1000)]
    values[5] = values[6] = None  # type: ignore[call-overload]
    values[10] = "short"
    values[11] = "short"  # same value, another width than the rest
    values[12] = "Short"
    batches = [pa.RecordBatch.from_pydict({"uuid": values[i : i + 97]}) for i in range(0, 1000, 97)]
    seen: set[str] = set()
    want_kept = []
    for v in values:
        if v is None or v not in seen:
            want_kept.append(v)
        if v is not None:
            seen.add(v)
    repeats = len(values) - len(want_kept)
    check = DuplicateFilter(drop=drop)
    kept = [v for b in batches for v in check(b).column("uuid").to_pylist()]
    check.count()
    assert check.duplicates == repeats == 296
    assert kept == (want_kept if drop else values)
    assert check.dropped == (repeats if drop else 0)


def test_duplicate_counting_tells_canonical_uuids_from_look_alikes() -> None:
    base = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    values = [
        base,
        base.upper(),  # not canonical: another value
        base.replace("-", ""),  # 32 hex digits, no hyphens: another value
        base[:-1] + "g",  # not hex
        base,  # a repeat
        base.upper(),  # a repeat of the look-alike
        base[:8] + "_" + base[9:],
        "00000000-0000-4000-8000-000000000000",
        "00000000-0000-4000-8000-000000000000",  # trailing zero bytes when packed
        "00000000-0000-4000-8000-000000000001",
    ]
    check = DuplicateFilter(drop=False)
    for i in range(0, len(values), 3):  # batches of mixed kinds
        check(pa.RecordBatch.from_pydict({"uuid": values[i : i + 3]}))
    assert check.duplicates == len(values) - len(set(values)) == 3
