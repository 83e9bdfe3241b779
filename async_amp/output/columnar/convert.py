"""NDJSON of one archive member -> Arrow record batches of ``EVENT_SCHEMA`` (and Parquet).

Engine: DuckDB's JSON reader. Every known key is read as DuckDB's ``JSON`` type (the value's
JSON text, unparsed beyond its bounds), then typed by SQL that checks the JSON kind first, so a
value of the wrong kind (a string ``session_id``, a number ``user_id``) lands in ``_extra``
instead of being coerced or failing the hour (the SQL is in ``query.py``). Here a first pass
lists the top-level keys of the whole member: keys the schema does not know are read too and
kept in ``_extra``. ``spool.py`` converts a spool the extractor wrote with one read instead,
falling back to these two.

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
import itertools
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import ArchiveError
from .badlines import count_lines, find_bad_line
from .query import (
    DUPLICATE_KEY,
    NOT_AN_OBJECT,
    build_query,
    explicit_read,
    sampled_macro,
    scan_query,
    unquote_strings,
)
from .schema import COLUMNS, EVENT_SCHEMA, EXTRA

__all__ = [
    "BATCH_ROWS",
    "ROW_GROUP_ROWS",
    "Engines",
    "ParquetFacts",
    "iter_event_batches",
    "parquet_rows",
    "write_parquet",
]

BATCH_ROWS: Final = 4_096
"""Rows per record batch: with the row group being written, what bounds memory."""
ROW_GROUP_ROWS: Final = 16_384
POOL: Final = pa.system_memory_pool()
"""Arrow's allocations here: malloc hands large freed blocks straight back (mimalloc, the
default pool, keeps them: about 10 MiB more peak per conversion, same CPU)."""
"""Rows per Parquet row group (about 30 MB of NDJSON, 1 MB of Parquet)."""

DUCKDB_MEMORY: Final = "128MB"
LARGE_MEMORY: Final = "1GB"
"""DuckDB's limit for a member it could not convert within ``DUCKDB_MEMORY`` (lines of a few
MiB make its JSON reader reserve several times their size; measured: a 16 MiB line, the most
``MAX_EVENT_BYTES`` lets through, converts within this limit at about 275 MiB peak)."""
MACROS: Final = 4
"""Table macros kept per engine, one per set of header keys (see ``Engines.macro``)."""
_WRITE_OPTIONS: Final = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
    "version": "2.6",
}


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _connect(memory: str = DUCKDB_MEMORY) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        config={
            "threads": 1,
            "memory_limit": memory,
            "preserve_insertion_order": True,
            "enable_external_access": True,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            # what bounds the conversion's memory besides the batches (measured on a 325 MB
            # member, bare process: 308 -> 273 MiB peak with these, the pool and 4096-row
            # batches): DuckDB's result buffer ahead of Arrow's reader (10 MiB by default),
            # and how much freed memory its allocator keeps before handing it back (128 MiB)
            "allocator_flush_threshold": "4MB",
            "allocator_bulk_deallocation_flush_threshold": "4MB",
        }
    )
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET streaming_buffer_size = '1MB'")
    con.execute("SET max_streaming_buffer_size = '1MB'")
    return con


DUCKDB_ERRORS: Final = (duckdb.Error, OSError, UnicodeDecodeError)
"""What a failed read raises: DuckDB's errors, Arrow's reader passing them on, and a message
quoting a line that DuckDB cut inside a UTF-8 character (the binding cannot decode it)."""


class Engines:
    """DuckDB instances owned by one run (or one call), one per core, handed out one at a time.

    One thread each: a member's lines stay in order without DuckDB buffering results, and as
    many members convert at once as there are cores. Opening an instance costs ~20 ms, so
    they are kept for the run, and memory stays at ``DUCKDB_MEMORY`` per core however many
    hours run. ``close`` closes every instance: those in use when it is called are closed
    when they are handed back.
    """

    def __init__(self, size: int | None = None) -> None:
        size = max(1, os.cpu_count() or 1) if size is None else size
        self._free: queue.LifoQueue[duckdb.DuckDBPyConnection | None] = queue.LifoQueue()
        for _ in range(size):
            self._free.put(None)  # opened on first use
        self._macros: dict[duckdb.DuckDBPyConnection, dict[tuple[str, ...], str]] = {}
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Close every idle instance now, and every busy one when it is handed back."""
        with self._lock:
            self._closed = True
            idle = []
            while True:
                try:
                    idle.append(self._free.get_nowait())
                except queue.Empty:
                    break
            for _ in idle:
                self._free.put(None)  # a late caller still gets one (closed after use)
        for con in idle:
            if con is not None:
                self._macros.pop(con, None)
                con.close()

    def __enter__(self) -> Engines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def macro(self, con: duckdb.DuckDBPyConnection, keys: list[str], unknown: list[str]) -> str:
        """The name of ``con``'s table macro reading a spool whose header names ``keys``
        (``query.sampled_macro``), made on first use; ``""`` when no macro can read them.
        The last ``MACROS`` are kept (header keys change only when a new key turns up)."""
        made = self._macros.setdefault(con, {})
        name = made.pop(tuple(keys), "")
        if not name:
            name = f"aa_member_{next(self._names)}"
            sql = sampled_macro(name, keys, unknown)
            try:
                if not sql:
                    return ""
                con.execute(sql)
            except duckdb.Error:  # never seen; the caller's plain query then says what is wrong
                return ""
            while len(made) >= MACROS:
                con.execute(f"DROP MACRO TABLE {made.pop(next(iter(made)))}")
        made[tuple(keys)] = name  # the most recently used last
        return name

    @contextlib.contextmanager
    def engine(self, *, large: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A shared engine; ``large``: a fresh one allowed ``LARGE_MEMORY`` instead, for a
        member whose long lines the shared one's memory cannot hold (closed after use, and
        taking a shared engine's turn, so conversions at once stay one per core)."""
        free = self._free.get()
        if large:
            try:
                with contextlib.closing(_connect(LARGE_MEMORY)) as big:
                    yield big
            finally:
                self._hand_back(free)
            return
        con = free or _connect()
        keep: duckdb.DuckDBPyConnection | None = con
        try:
            yield con
        except ArchiveError:
            raise  # the input was bad, not the engine
        except BaseException:
            con.close()  # its state after a failure is unknown: open a fresh one next time
            self._macros.pop(con, None)
            keep = None
            raise
        finally:
            self._hand_back(keep)

    def _hand_back(self, con: duckdb.DuckDBPyConnection | None) -> None:
        """``con`` back in the pool, or closed when the pool is."""
        with self._lock:
            if self._closed and con is not None:
                self._macros.pop(con, None)
                con.close()
                con = None
            self._free.put(con)


def scan_unknown(
    con: duckdb.DuckDBPyConnection, path: Path, source: str, *, header: bool = False
) -> list[str]:
    """The file's top-level keys the schema does not know (one streaming pass that keeps only
    distinct keys); ``ArchiveError`` when a line is not a JSON object."""
    try:
        found = con.sql(scan_query(str(path), skip_header=header)).fetchall()
    except DUCKDB_ERRORS as exc:
        raise find_bad_line(path, source, exc, header=header) from None
    keys = {k for (k,) in found}
    if NOT_AN_OBJECT in keys or DUPLICATE_KEY in keys:
        raise find_bad_line(path, source, header=header)
    return sorted(keys)


def exact_batches(
    path: Path,
    *,
    export_hour: datetime,
    source_file: str,
    batch_rows: int = BATCH_ROWS,
    header: bool = False,
    lines: int | None = None,
    found: Callable[[list[str]], None] | None = None,
    engines: Engines,
    large: bool = False,
) -> Generator[pa.RecordBatch, None, None]:
    """The batches of one file read the explicit way, on one of ``engines``: a first pass
    lists its unknown keys (handed to ``found``), then ``read_json`` reads them with the
    schema's. ``header``: the file is a spool whose first line is a header to skip;
    ``lines``: its line count, when already known; ``large``: on an engine with
    ``LARGE_MEMORY``."""
    with engines.engine(large=large) as con:
        unknown = scan_unknown(con, path, source_file, header=header)
        if found is not None:
            found(unknown)
        keys = [c.key for c in COLUMNS] + unknown
        read = explicit_read(str(path), keys)
        if header:
            read = f"(SELECT * FROM {read} OFFSET 1)"  # noqa: S608 - quoted by explicit_read
        query = build_query(read, keys, unknown, export_hour, source_file)
        rows = 0
        try:
            reader = con.sql(query).to_arrow_reader(batch_rows)
            for batch in reader:
                rows += batch.num_rows
                yield conform(batch)
        except DUCKDB_ERRORS as exc:  # Arrow's reader passes DuckDB's errors on
            raise find_bad_line(path, source_file, exc, header=header) from None
        want = count_lines(path, header=header) if lines is None else lines
        if rows != want:  # DuckDB skips blank lines: find and name one
            raise find_bad_line(path, source_file, header=header)


def conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    """DuckDB's batch in exactly ``EVENT_SCHEMA`` (strings unquoted, JSON extension type)."""
    arrays = []
    for field, array in zip(EVENT_SCHEMA, unquote_strings(batch, POOL), strict=True):
        if isinstance(field.type, pa.ExtensionType):
            storage = array.cast(field.type.storage_type, memory_pool=POOL)
            arrays.append(pa.ExtensionArray.from_storage(field.type, storage))
        elif array.type != field.type:
            arrays.append(array.cast(field.type, memory_pool=POOL))
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
    engines: Engines | None = None,
) -> Generator[pa.RecordBatch, None, None]:
    """Record batches of ``EVENT_SCHEMA`` for one member's NDJSON, in line order.

    ``source`` is a path to the decompressed NDJSON, or its bytes as chunks (spooled to a
    temporary file in ``spool_dir`` first: DuckDB reads files). One row per line, always;
    ``_export_hour`` and ``_source_file`` are set on every row. A line that is not a JSON
    object raises ``ArchiveError`` naming ``source_file`` and the line number. Memory stays
    bounded by ``batch_rows`` whatever the member's size. ``engines``: the caller's DuckDB
    instances (at most one conversion per instance at a time); without them the call opens
    one of its own and closes it when done.
    """
    with contextlib.ExitStack() as stack:
        own = engines or stack.enter_context(Engines(1))
        if isinstance(source, str | os.PathLike):
            path = Path(source)
        else:
            folder = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="async-amp-", dir=spool_dir)
            )
            path = Path(folder) / "member.ndjson"
            with path.open("wb") as out:
                for chunk in source:
                    out.write(chunk)
        yield from exact_batches(
            path,
            export_hour=export_hour,
            source_file=source_file,
            batch_rows=batch_rows,
            engines=own,
        )


@dataclass(frozen=True, slots=True)
class ParquetFacts:
    """What one written Parquet file holds."""

    rows: int
    bytes: int
    sha256: str
    extra_rows: int
    dead_letters: int = 0  # lines kept in the hour's quarantine instead


class _HashingFile:
    """A write-only file object for pyarrow that hashes and counts what it passes on."""

    def __init__(self, out: Writable) -> None:
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
    out: Writable,
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
    with pq.ParquetWriter(
        pa.PythonFile(sink, mode="w"), schema, memory_pool=POOL, **_WRITE_OPTIONS
    ) as w:

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
