"""NDJSON of one archive member -> Arrow record batches of ``EVENT_SCHEMA`` (and Parquet).

Engine: DuckDB's JSON reader. Every known key is read as DuckDB's ``JSON`` type (the value's
JSON text, unparsed beyond its bounds), then typed by SQL that checks the JSON kind first, so a
value of the wrong kind (a string ``session_id``, a number ``user_id``) lands in ``_extra``
instead of being coerced or failing the hour. A first, cheap pass lists the top-level keys of
the whole member: keys the schema does not know are read too and kept in ``_extra``.

Measured on one 100 MB hour of simulated events on this kind of machine (2 cores; see the
commit message and docs/benchmarks.md): the DuckDB path kept objects as JSON text and typed
every column; pyarrow's and polars' JSON readers cannot keep an object as text (they build
structs and fail on a value whose kind changes), and per-line Python parsing is several times
slower than either.

Everything here is blocking and CPU bound: run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import tempfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ArchiveError
from .schema import COLUMNS, EVENT_SCHEMA, EXTRA, Column

__all__ = [
    "BATCH_ROWS",
    "ROW_GROUP_ROWS",
    "ParquetFacts",
    "iter_event_batches",
    "parquet_rows",
    "write_parquet",
]

BATCH_ROWS: Final = 8_192
"""Rows per record batch: with the row group being written, what bounds memory."""
ROW_GROUP_ROWS: Final = 16_384
"""Rows per Parquet row group (about 30 MB of NDJSON, 1 MB of Parquet)."""

DUCKDB_MEMORY: Final = "128MB"
MAX_EVENT_BYTES: Final = 16 * 1024**2
"""The longest line DuckDB accepts (its reader buffers about twice this per thread)."""
_KNOWN: Final = frozenset(c.key for c in COLUMNS)
_WRITE_OPTIONS: Final = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
    "version": "2.6",
}


class _Writable(Protocol):
    def write(self, data: bytes) -> None: ...


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _typed(column: Column, raw: str) -> str:
    """SQL giving the column's value from ``raw`` (its JSON text), NULL when it does not fit.

    The first character of a value's JSON text tells its kind, so the checks are plain
    string tests; only strings with escapes are unescaped by the JSON parser.
    """
    text = f"({raw})::VARCHAR"
    quoted = f"starts_with({text}, '\"')"
    inner = f"({text})[2:-2]"
    if column.kind == "string":
        return (
            f"CASE WHEN {quoted} THEN CASE WHEN contains({text}, '\\') "
            f"THEN json_extract_string({raw}, '$') ELSE {inner} END END"
        )
    if column.kind == "int64":
        return (
            f"CASE WHEN NOT {quoted} AND NOT regexp_matches({text}, '[.eE]') "
            f"THEN TRY_CAST({text} AS BIGINT) END"
        )
    if column.kind == "float64":
        # integers are accepted only where a double holds them exactly
        return (
            f"CASE WHEN NOT {quoted} AND {text} NOT IN ('true', 'false') "
            f"AND (regexp_matches({text}, '[.eE]') "
            f"OR abs(TRY_CAST({text} AS HUGEINT)) <= 9007199254740992) "
            f"THEN TRY_CAST({text} AS DOUBLE) END"
        )
    if column.kind == "bool":
        return f"CASE {text} WHEN 'true' THEN true WHEN 'false' THEN false END"
    if column.kind == "timestamp":
        return (
            f"CASE WHEN {quoted} AND NOT contains({text}, '\\') "
            f"THEN TRY_CAST({inner} AS TIMESTAMPTZ) END"
        )
    return raw


def build_query(path: str, unknown: Iterable[str], export_hour: datetime, source: str) -> str:
    """The SQL that turns one NDJSON file into rows of ``EVENT_SCHEMA``."""
    extra_keys = sorted(unknown)
    keys = [c.key for c in COLUMNS] + extra_keys
    columns = "{" + ", ".join(f"{_sql_str(k)}: 'JSON'" for k in keys) + "}"
    read = (
        f"read_json({_sql_str(path)}, format = 'newline_delimited', records = true, "
        f"columns = {columns}, maximum_object_size = {MAX_EVENT_BYTES})"
    )
    typed = ", ".join(f"{_typed(c, _ident(c.key))} AS {_ident('t.' + c.key)}" for c in COLUMNS)
    raws = ", ".join(_ident(k) for k in keys)
    pieces: list[str] = []
    misfit: list[str] = []
    for c in COLUMNS:
        if c.kind == "json":
            continue
        bad = f"({_ident(c.key)} IS NOT NULL AND {_ident('t.' + c.key)} IS NULL)"
        misfit.append(bad)
        pieces.append(
            f"CASE WHEN {bad} THEN {_sql_str(json.dumps(c.key) + ':')} || {_ident(c.key)} END"
        )
    for key in extra_keys:
        misfit.append(f"{_ident(key)} IS NOT NULL")
        pieces.append(
            f"CASE WHEN {_ident(key)} IS NOT NULL "
            f"THEN {_sql_str(json.dumps(key) + ':')} || {_ident(key)} END"
        )
    joined = ", ".join(pieces)
    extra = f"CASE WHEN {' OR '.join(misfit)} THEN '{{' || concat_ws(',', {joined}) || '}}' END"
    outputs = ", ".join(
        f"{_ident('t.' + c.key) if c.kind != 'json' else _ident(c.key)} AS {_ident(c.name)}"
        for c in COLUMNS
    )
    hour = export_hour.strftime("%Y-%m-%d %H:%M:%S")
    # every name and value below is quoted by _sql_str or _ident
    return (
        f"SELECT {outputs}, {extra} AS {_ident(EXTRA.name)}, "  # noqa: S608
        f"TIMESTAMPTZ {_sql_str(hour + '+00')} AS _export_hour, {_sql_str(source)} AS _source_file "
        f"FROM (SELECT {raws}, {typed} FROM {read})"
    )


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        config={
            "threads": 1,
            "memory_limit": DUCKDB_MEMORY,
            "preserve_insertion_order": True,
            "enable_external_access": True,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    con.execute("SET TimeZone = 'UTC'")
    return con


class _Engines:
    """DuckDB instances shared by the whole process, one per core, handed out one at a time.

    One thread each: a member's lines stay in order without DuckDB buffering results, and as
    many members convert at once as there are cores. Opening an instance costs ~20 ms, so
    they are kept, and memory stays at ``DUCKDB_MEMORY`` per core however many hours run.
    """

    def __init__(self, size: int) -> None:
        self._free: queue.LifoQueue[duckdb.DuckDBPyConnection | None] = queue.LifoQueue()
        for _ in range(size):
            self._free.put(None)  # opened on first use

    @contextlib.contextmanager
    def engine(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._free.get() or _connect()
        keep: duckdb.DuckDBPyConnection | None = con
        try:
            yield con
        except ArchiveError:
            raise  # the input was bad, not the engine
        except BaseException:
            con.close()  # its state after a failure is unknown: open a fresh one next time
            keep = None
            raise
        finally:
            self._free.put(keep)


ENGINES: Final = _Engines(max(1, os.cpu_count() or 1))


def _count_lines(path: Path) -> int:
    """NDJSON lines (a last line without a newline counts), read in bounded pieces."""
    lines = 0
    last = b"\n"
    with path.open("rb") as file:
        while piece := file.read(1 << 20):
            lines += piece.count(b"\n")
            last = piece[-1:]
    return lines + (0 if last == b"\n" else 1)


def _reject_constant(name: str) -> None:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _line_problem(line: bytes) -> str:
    """Why one line is not a JSON object, or ``""`` when it is one."""
    if not line.strip():
        return "it is empty"
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return f"it is not JSON ({exc.msg} at column {exc.colno})"
    except ValueError as exc:
        return f"it is not JSON ({exc})"
    if not isinstance(value, dict):
        return f"it is JSON but not an object (a {type(value).__name__})"
    return ""


def find_bad_line(path: Path, source: str, error: duckdb.Error | None = None) -> ArchiveError:
    """The first line of ``path`` that is not a JSON object, as a clear error (slow: only
    called once DuckDB has refused the file)."""
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if why := _line_problem(line):
                msg = (
                    f"member {source!r} line {number}: {why}; Amplitude sends one JSON object "
                    "per line, so the archive is corrupt: re-extract the hour"
                )
                return ArchiveError(msg)
    msg = f"member {source!r} could not be converted: {_first_line(error)}"
    return ArchiveError(msg)


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if error else "unknown reason"


_NOT_AN_OBJECT: Final = "\x00not an object"


def _scan(con: duckdb.DuckDBPyConnection, path: Path, source: str) -> list[str]:
    """The file's top-level keys the schema does not know (one streaming pass that keeps only
    distinct keys); ``ArchiveError`` when a line is not a JSON object."""
    rel = f"read_ndjson_objects({_sql_str(str(path))}, maximum_object_size = {MAX_EVENT_BYTES})"
    known = "[" + ", ".join(_sql_str(k) for k in sorted(_KNOWN)) + "]"
    try:
        found = con.sql(
            "SELECT DISTINCT unnest(CASE WHEN starts_with(ltrim(json), '{') "  # noqa: S608
            f"THEN list_filter(json_keys(json), lambda k: NOT list_contains({known}, k)) "
            f"ELSE [{_sql_str(_NOT_AN_OBJECT)}] END) FROM {rel}"
        ).fetchall()
    except duckdb.Error as exc:
        raise find_bad_line(path, source, exc) from None
    keys = {k for (k,) in found}
    if _NOT_AN_OBJECT in keys:
        raise find_bad_line(path, source)
    return sorted(keys)


def _batches_from_file(
    path: Path, *, export_hour: datetime, source_file: str, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    with ENGINES.engine() as con:
        unknown = _scan(con, path, source_file)
        query = build_query(str(path), unknown, export_hour, source_file)
        rows = 0
        try:
            reader = con.sql(query).to_arrow_reader(batch_rows)
            for batch in reader:
                rows += batch.num_rows
                yield _conform(batch)
        except duckdb.Error as exc:
            msg = f"member {source_file!r} could not be converted: {_first_line(exc)}"
            raise ArchiveError(msg) from None
        if rows != _count_lines(path):  # DuckDB skips blank lines: find and name one
            raise find_bad_line(path, source_file)


def _conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    """DuckDB's batch in exactly ``EVENT_SCHEMA`` (string layout, JSON extension type)."""
    arrays = []
    for field, array in zip(EVENT_SCHEMA, batch.columns, strict=True):
        if isinstance(field.type, pa.ExtensionType):
            storage = array.cast(field.type.storage_type)
            arrays.append(pa.ExtensionArray.from_storage(field.type, storage))
        elif array.type != field.type:
            arrays.append(array.cast(field.type))
        else:
            arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)


def iter_event_batches(
    source: str | os.PathLike[str] | Iterable[bytes],
    *,
    export_hour: datetime,
    source_file: str,
    batch_rows: int = BATCH_ROWS,
    spool_dir: str | os.PathLike[str] | None = None,
) -> Generator[pa.RecordBatch, None, None]:
    """Record batches of ``EVENT_SCHEMA`` for one member's NDJSON, in line order.

    ``source`` is a path to the decompressed NDJSON, or its bytes as chunks (spooled to a
    temporary file in ``spool_dir`` first: DuckDB reads files). One row per line, always;
    ``_export_hour`` and ``_source_file`` are set on every row. A line that is not a JSON
    object raises ``ArchiveError`` naming ``source_file`` and the line number. Memory stays
    bounded by ``batch_rows`` whatever the member's size. At most one conversion per core
    runs at a time in the process (``ENGINES``): a further call waits for a free engine.
    """
    if isinstance(source, str | os.PathLike):
        yield from _batches_from_file(
            Path(source),
            export_hour=export_hour,
            source_file=source_file,
            batch_rows=batch_rows,
        )
        return
    with tempfile.TemporaryDirectory(prefix="async-amp-", dir=spool_dir) as folder:
        path = Path(folder) / "member.ndjson"
        with path.open("wb") as out:
            for chunk in source:
                out.write(chunk)
        yield from _batches_from_file(
            path,
            export_hour=export_hour,
            source_file=source_file,
            batch_rows=batch_rows,
        )


@dataclass(frozen=True, slots=True)
class ParquetFacts:
    """What one written Parquet file holds."""

    rows: int
    bytes: int
    sha256: str
    extra_rows: int


class _HashingFile:
    """A write-only file object for pyarrow that hashes and counts what it passes on."""

    def __init__(self, out: _Writable) -> None:
        self._out = out
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self.digest.update(chunk)
        self.size += len(chunk)
        self._out.write(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    out: _Writable,
    *,
    row_group_rows: int = ROW_GROUP_ROWS,
    schema: pa.Schema = EVENT_SCHEMA,
) -> ParquetFacts:
    """Write ``batches`` as one Parquet file (zstd, row groups of ``row_group_rows``) to ``out``.

    At most one row group is buffered. The same batches give the same bytes: no timestamps or
    random ids go into the file. ``schema`` is the batches' schema: ``EVENT_SCHEMA``, or the
    same columns with JSON as plain text (a Delta table's data files).
    """
    sink = _HashingFile(out)
    rows = extra = 0
    pending: list[pa.RecordBatch] = []
    buffered = 0
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, **_WRITE_OPTIONS) as w:

        def flush() -> None:
            nonlocal buffered
            if buffered:
                w.write_table(pa.Table.from_batches(pending), row_group_size=buffered)
                pending.clear()
                buffered = 0

        for batch in batches:
            if not batch.num_rows:
                continue
            rows += batch.num_rows
            extra += batch.num_rows - batch.column(EXTRA.name).null_count
            start = 0
            while start < batch.num_rows:
                take = min(row_group_rows - buffered, batch.num_rows - start)
                pending.append(batch.slice(start, take))
                buffered += take
                start += take
                if buffered >= row_group_rows:
                    flush()
        flush()
    return ParquetFacts(
        rows=rows, bytes=sink.size, sha256=sink.digest.hexdigest(), extra_rows=extra
    )


def parquet_rows(tail: bytes) -> int:
    """The row count a Parquet file's footer declares, from the file's last bytes (enough of
    them to hold the footer); ``ValueError`` when they do not end with a readable footer."""
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        msg = "no Parquet footer at its end (truncated or not Parquet)"
        raise ValueError(msg)
    try:
        return int(pq.read_metadata(pa.BufferReader(tail)).num_rows)
    except (OSError, pa.ArrowException) as exc:
        msg = f"its footer cannot be read ({exc})"
        raise ValueError(msg) from None
