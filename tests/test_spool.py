"""One read or two: a spool converted by the header-line read and by the explicit read gives
the same Parquet bytes, and every way the single read can fail falls back to the explicit one."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from async_amp.errors import ArchiveError
from async_amp.output.columnar import EVENT_SCHEMA, iter_event_batches, write_parquet
from async_amp.output.columnar import convert as convert_module
from async_amp.output.columnar import spool as spool_module
from async_amp.output.columnar.convert import BATCH_ROWS
from async_amp.output.columnar.spool import Conversions, convert_spool, new_spool_header
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.quirks import NEW_FIELD

from .parquet_oracle import assert_rows_match

HOUR = datetime(2026, 11, 2, 14, tzinfo=UTC)
SOURCE = "187520/187520_2026-11-02_14#0.json.gz"


@pytest.fixture
def run() -> Iterator[Conversions]:
    """A run that has met no unknown key yet (its engines closed after the test)."""
    with Conversions() as conversions:
        yield conversions


@pytest.fixture
def explicit_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The list grows by one per explicit read."""
    calls: list[int] = []
    real = spool_module.exact_batches

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(spool_module, "exact_batches", counted)
    yield calls


def spool(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "member.ndjson"
    path.write_bytes(new_spool_header() + data)
    return path


def convert(run: Conversions, path: Path, **kw: Any) -> bytes:
    out = io.BytesIO()
    facts = convert_spool(path, out, conversions=run, export_hour=HOUR, source_file=SOURCE, **kw)
    assert facts.bytes == len(out.getvalue())
    return out.getvalue()


def test_one_read_gives_the_bytes_of_two_on_the_odd_records(
    tmp_path: Path, run: Conversions, explicit_reads: list[int]
) -> None:
    data = Dataset(events_per_hour=3000, pages_per_hour=1, odd_every=11).ndjson(HOUR, 0)
    plain = tmp_path / "plain.ndjson"
    plain.write_bytes(data)
    reference = io.BytesIO()
    write_parquet(iter_event_batches(plain, export_hour=HOUR, source_file=SOURCE), reference)

    path = spool(tmp_path, data)
    first = convert(run, path)  # each failed single read names a key never met: the next reads it
    assert explicit_reads == []
    assert run.seen.sorted() == ["_city", NEW_FIELD]
    again = convert(run, path)  # the keys are in the header now: one read
    only_explicit = convert(run, path, retry=False)
    assert explicit_reads == [1]
    run.seen = spool_module._Seen()
    run.seen.add(["a_key_this_member_lacks"])
    with_a_lacking_key = convert(run, path)
    assert first == again == only_explicit == with_a_lacking_key == reference.getvalue()
    table = pq.read_table(io.BytesIO(again))
    lines = [json.loads(line) for line in data.splitlines()]
    assert_rows_match(lines, table, export_hour=HOUR, source=SOURCE)
    assert any(NEW_FIELD in (row or "") for row in table.column("_extra").to_pylist())


@pytest.mark.parametrize(("key", "explicit"), [("late_key", []), ('late "key"', [1])])
def test_a_key_first_met_after_many_batches_is_kept(
    tmp_path: Path, run: Conversions, explicit_reads: list[int], key: str, explicit: list[int]
) -> None:
    rows: list[dict[str, Any]] = [{"uuid": f"u{i}", "session_id": i} for i in range(3 * BATCH_ROWS)]
    rows[-2][key] = {"a": [1]}
    rows[-1][key] = None
    path = spool(tmp_path, b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    lines = len(rows)
    first = convert(run, path, lines=lines)
    assert explicit_reads == explicit  # a key with a quote is not taken from DuckDB's error
    assert convert(run, path, lines=lines) == first  # now in the header either way: one read
    assert explicit_reads == explicit
    table = pq.read_table(io.BytesIO(first))
    assert table.num_rows == lines
    assert table.column("_extra").to_pylist()[-2:] == [
        json.dumps({key: {"a": [1]}}, separators=(",", ":")),
        None,
    ]
    assert table.schema == EVENT_SCHEMA
    assert not list(tmp_path.glob("*.parquet"))  # the scratch file is gone


@pytest.mark.parametrize("seen", [False, True])
@pytest.mark.parametrize(
    ("data", "line", "why"),
    [
        (b'{"uuid":"a"}\n{"uuid":"b",\n{"uuid":"c"}\n', 2, "not JSON"),
        (b'{"uuid":"a"}\n \r\n{"uuid":"c"}\n', 2, "only white space"),
        (b'{"uuid":"a"}\n{"uuid":"b"}\n[1, 2]\n', 3, "not an object"),
    ],
)
def test_a_bad_line_is_named_without_counting_the_header(
    tmp_path: Path,
    run: Conversions,
    explicit_reads: list[int],
    data: bytes,
    line: int,
    why: str,
    seen: bool,
) -> None:
    if seen:
        run.seen.add(["some_key"])
    with pytest.raises(ArchiveError) as info:
        convert(run, spool(tmp_path, data))
    assert f"{SOURCE!r} line {line}: it is {why}" in str(info.value).replace(
        "it is JSON but", "it is"
    )
    assert explicit_reads == [1]


def test_a_repeated_key_is_named_at_its_line_not_counting_the_header(
    tmp_path: Path, run: Conversions, explicit_reads: list[int]
) -> None:
    with pytest.raises(ArchiveError) as info:
        convert(run, spool(tmp_path, b'{"uuid":"a"}\n{"uuid":"b","uuid":"c"}\n'))  # a repeated key
    assert "line 2: it has a key twice" in str(info.value)


def test_an_empty_member_and_a_last_line_without_newline(
    tmp_path: Path, run: Conversions, explicit_reads: list[int]
) -> None:
    assert pq.read_table(io.BytesIO(convert(run, spool(tmp_path, b"")))).num_rows == 0
    table = pq.read_table(io.BytesIO(convert(run, spool(tmp_path, b'{"uuid":"a"}\n{"uuid":"b"}'))))
    assert table.column("uuid").to_pylist() == ["a", "b"]
    assert explicit_reads == []


def test_a_filter_sees_only_the_attempt_that_was_written(
    tmp_path: Path, run: Conversions, explicit_reads: list[int]
) -> None:
    data = b"".join(json.dumps({"uuid": f"u{i}", 'ne"w': i}).encode() + b"\n" for i in range(20))
    made: list[list[int]] = []

    def new_filter() -> Any:
        made.append([])

        def keep(batch: pa.RecordBatch) -> pa.RecordBatch:
            made[-1].append(batch.num_rows)
            return batch

        return keep

    convert(run, spool(tmp_path, data), new_filter=new_filter)
    assert explicit_reads == [1]
    assert sum(made[-1]) == 20  # the explicit read's filter saw every row once


def test_a_key_that_differs_from_another_only_in_case_is_data_and_never_read_once(
    tmp_path: Path, run: Conversions, explicit_reads: list[int]
) -> None:
    """DuckDB binds names case-insensitively: "City" beside "city" is read by its exact key
    instead, into ``_extra``, and is never put in a header."""
    data = b'{"uuid":"a","City":"Z"}\n{"uuid":"b","city":"Y","":1}\n'
    plain = tmp_path / "plain.ndjson"
    plain.write_bytes(data)
    reference = io.BytesIO()
    write_parquet(iter_event_batches(plain, export_hour=HOUR, source_file=SOURCE), reference)
    converted = convert(run, spool(tmp_path, data))
    assert converted == reference.getvalue()
    table = pq.read_table(io.BytesIO(converted))
    assert table.column("city").to_pylist() == [None, "Y"]
    assert table.column("_extra").to_pylist() == ['{"City":"Z"}', '{"":1}']
    assert explicit_reads == [1]
    assert run.seen.sorted() == []
    table = pq.read_table(io.BytesIO(convert(run, spool(tmp_path, b'{"uuid":"c","Town":"X"}\n'))))
    assert table.column("_extra").to_pylist() == ['{"Town":"X"}']
    assert explicit_reads == [1]  # a later member without the pair is read once


def test_a_key_named_like_a_macro_parameter_keeps_its_values(
    tmp_path: Path, run: Conversions, explicit_reads: list[int]
) -> None:
    """Each engine reads spools through a table macro whose parameters are columns' names
    too: a key of that name is read without the macro, its values kept, not the parameter's."""
    rows = [{"uuid": f"u{i}", "_AA_Source_File": f"v{i}"} for i in range(3)]
    path = spool(tmp_path, b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    convert(run, path)  # learns the key
    table = pq.read_table(io.BytesIO(convert(run, path)))
    assert explicit_reads == []
    assert table.column("_extra").to_pylist() == [f'{{"_AA_Source_File":"v{i}"}}' for i in range(3)]
    assert set(table.column("_source_file").to_pylist()) == {SOURCE}


def test_each_engine_keeps_a_bounded_number_of_macros(
    tmp_path: Path, run: Conversions, explicit_reads: list[int]
) -> None:
    """Each new set of header keys makes a macro; old ones are dropped, and members read
    with any of them give the bytes the explicit read gives."""
    path = spool(tmp_path, b'{"uuid": "u", "session_id": 1, "user_id": 7}\n')
    outputs = []
    for n in range(convert_module.MACROS + 3):
        run.seen.add([f"new_key_{n}"])  # met in another member: now in the header
        outputs.append((convert(run, path), convert(run, path, retry=False)))
    assert explicit_reads == [1] * len(outputs)  # only the retry=False reads
    assert all(once == explicit for once, explicit in outputs)
    with run.engines.engine() as con:
        ((macros,),) = con.execute(
            "SELECT count(*) FROM duckdb_functions() WHERE function_name LIKE 'aa_member_%'"
        ).fetchall()
    assert macros == convert_module.MACROS


@pytest.mark.parametrize("pad", [0, 21])
def test_duckdb_quoting_a_line_cut_inside_a_character_is_a_failed_read_not_a_crash(
    tmp_path: Path, run: Conversions, pad: int
) -> None:
    """DuckDB's "unknown key" error quotes the line, cut after a number of bytes: cut inside
    a UTF-8 character, its Python binding raised UnicodeDecodeError, which no handler took."""
    key = f"ünï😀{pad}"
    row = {"uuid": "a", "pad": "x" * pad, key: "ü😀" * 40}
    data = json.dumps(row).encode() + b"\n"
    table = pq.read_table(io.BytesIO(convert(run, spool(tmp_path, data))))
    assert json.loads(table.column("_extra")[0].as_py()) == {"pad": "x" * pad, key: "ü😀" * 40}
