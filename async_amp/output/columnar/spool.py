"""One member's spooled NDJSON -> one Parquet file, reading the spool once when it can.

The explicit way (``convert.exact_batches``) reads a member twice: a pass that lists its
top-level keys (so that an unknown key is read, and kept in ``_extra``), then the typed read.
A spool made for this module starts with a header line (``new_spool_header``, rewritten in
place here) naming the schema's keys and every unknown key seen so far in the run; DuckDB
takes its columns from that line and fails on any other key (``query.sampled_read``), so one
read does both. When it fails (a key never seen before, a line that is not JSON, a blank
line), the member is converted again the explicit way, which names a bad line, and the keys
it found join the header of later members. Amplitude adds fields rarely, so after the first
member that carries a new one, members are read once.

Both ways give the same bytes: the same SQL types the same columns, and a known key that is
absent or null in a member adds nothing to its rows (tests/test_formats.py compares the
files on the simulator's odd records). The Parquet file is written to a scratch file beside
the spool, so that a failed first read leaves nothing behind in ``out``; it is then copied to
``out`` (a few percent of the NDJSON's size).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Final

import pyarrow as pa

from .badlines import BadLineError, NeedsMemoryError, count_lines
from .convert import (
    BATCH_ROWS,
    DUCKDB_ERRORS,
    ROW_GROUP_ROWS,
    Engines,
    ParquetFacts,
    Writable,
    conform,
    exact_batches,
    write_parquet,
)
from .deadletter import Quarantine, sift
from .query import (
    HEADER_BYTES,
    KNOWN,
    blank_header,
    build_query,
    header_line,
    macro_call,
    sampled_read,
)
from .schema import COLUMNS, EVENT_SCHEMA

__all__ = ["HEADER_BYTES", "BatchFilter", "Conversions", "convert_spool", "new_spool_header"]

BatchFilter = Callable[[pa.RecordBatch], pa.RecordBatch]
MAX_SEEN: Final = 1_000
"""Unknown keys remembered for the header (more, and every member is read the explicit way)."""
_COPY_BYTES: Final = 1 << 20
SINGLE_READS: Final = 3
"""Single reads tried (each failing one on a key never met adds that key) before the explicit
way: a member's first new keys usually show in its first lines, so a retry costs little."""


class _Seen:
    """Unknown top-level keys met so far in one run, shared by its conversions."""

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._folded = {k.casefold() for k in KNOWN}
        self._lock = threading.Lock()

    def sorted(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    def add(self, keys: list[str]) -> None:
        """Remember ``keys``, but none that differs from another only in case: DuckDB binds
        column names case-insensitively, so such a pair in one header would read one key's
        values as the other's; nor the empty key, which no header can name. A member holding
        one is read the explicit way (which takes each value by its exact key)."""
        with self._lock:
            for key in keys:
                folded = key.casefold()
                if key and len(self._keys) < MAX_SEEN and folded not in self._folded:
                    self._keys.add(key)
                    self._folded.add(folded)


class Conversions:
    """What the conversions of one run share, and nothing else does: its DuckDB instances
    (``Engines``) and the unknown keys its members carried (named in later members' headers).
    Made with the run's sink and closed with it (``close`` closes the instances)."""

    def __init__(self, engines: int | None = None) -> None:
        self.engines = Engines(engines)
        self.seen = _Seen()

    def close(self) -> None:
        self.engines.close()

    def __enter__(self) -> Conversions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_spool_header() -> bytes:
    """What a spool starts with: ``HEADER_BYTES`` bytes, one line, rewritten when converted."""
    return blank_header()


class _ReadFailed(Exception):
    """The single read stopped: a key the header does not name, or a line that is not JSON."""


def _same(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch


def _sampled_batches(
    path: Path,
    keys: list[str],
    unknown: list[str],
    engines: Engines,
    *,
    export_hour: datetime,
    source_file: str,
) -> Iterator[pa.RecordBatch]:
    with engines.engine() as con:
        name = engines.macro(con, keys, unknown)
        query = (
            macro_call(name, str(path), export_hour, source_file)
            if name
            else build_query(sampled_read(str(path)), keys, unknown, export_hour, source_file)
        )
        try:
            for batch in con.sql(query).to_arrow_reader(BATCH_ROWS):
                yield conform(batch)
        except DUCKDB_ERRORS as exc:  # after the first batch, Arrow's reader
            raise _ReadFailed from exc  # passes DuckDB's error on as an OSError


def _read_once(
    path: Path,
    scratch: BinaryIO,
    keep: BatchFilter,
    conversions: Conversions,
    *,
    export_hour: datetime,
    source_file: str,
    lines: int,
    row_group_rows: int,
    schema: pa.Schema,
) -> ParquetFacts | None:
    """The member converted by one read into ``scratch``, or ``None`` when that read failed."""
    unknown = conversions.seen.sorted()
    keys = [c.key for c in COLUMNS] + unknown
    header = header_line(keys)
    if not header:
        return None
    with path.open("r+b") as file:
        file.write(header)
    rows = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in _sampled_batches(
            path,
            keys,
            unknown,
            conversions.engines,
            export_hour=export_hour,
            source_file=source_file,
        ):
            rows += batch.num_rows
            yield keep(batch)

    try:
        facts = write_parquet(counted(), scratch, row_group_rows=row_group_rows, schema=schema)
    except _ReadFailed as failed:
        if key := _unknown_key(failed.__cause__):
            conversions.seen.add([key])  # the next attempt reads it: no explicit pass needed for it
        return None
    return facts if rows == lines else None


_UNKNOWN_KEY: Final = re.compile(r' has unknown key "(.+)"$')


def _unknown_key(error: BaseException | None) -> str:
    """The key DuckDB's error names as unknown, or ``""`` (only ever a hint: a wrong one is a
    column that stays empty, and the explicit read still decides)."""
    first = str(error).split("\n", 1)[0]
    match = _UNKNOWN_KEY.search(first)
    return match.group(1) if match and '"' not in match.group(1) else ""


def convert_spool(
    path: Path,
    out: Writable,
    *,
    conversions: Conversions,
    export_hour: datetime,
    source_file: str,
    lines: int | None = None,
    new_filter: Callable[[], BatchFilter] | None = None,
    retry: bool = True,
    row_group_rows: int = ROW_GROUP_ROWS,
    schema: pa.Schema = EVENT_SCHEMA,
    quarantine: Quarantine | None = None,
) -> ParquetFacts:
    """Convert the spool at ``path`` (``new_spool_header()`` then the member's NDJSON) into one
    Parquet file written to ``out``, with the rows ``iter_event_batches`` gives for the NDJSON.

    ``conversions``: the run's engines and the keys its members carried. ``lines``: the
    member's line count when known (else counted). ``new_filter()`` gives the
    function every batch passes through before it is written (e.g. a duplicate counter); it is
    called again for each attempt, so only the last one's filter saw the rows written (a filter
    that keeps state across members takes back, when called again, what the attempt before
    let through: ``staging.DuplicateFilter.passing``). ``retry=False``: the member is read the
    explicit way only (no sampled read first). ``schema``: what the filtered batches
    are (``EVENT_SCHEMA`` unless the filter reshapes them). A line that cannot become a row
    raises ``ArchiveError``, or, given a ``quarantine``, is kept there (``deadletter.sift``)
    and the other lines are converted.
    Nothing is written to ``out`` until the conversion succeeded.
    """
    fresh = new_filter or (lambda: _same)
    options = {
        "conversions": conversions,
        "export_hour": export_hour,
        "source_file": source_file,
        "retry": retry,
        "row_group_rows": row_group_rows,
        "schema": schema,
    }
    try:
        return _convert(path, out, lines=lines, make=fresh, **options)
    except BadLineError:
        if quarantine is None:
            raise
    clean = path.with_name(path.name + ".clean")
    try:
        with quarantine.open() as dead:
            letters, kept = sift(path, clean, dead, source_file)
        quarantine.letters.extend(letters)
        facts = _convert(clean, out, lines=kept, make=fresh, **options)
    finally:
        clean.unlink(missing_ok=True)
    return replace(facts, dead_letters=len(letters))


def _convert(
    path: Path,
    out: Writable,
    *,
    conversions: Conversions,
    export_hour: datetime,
    source_file: str,
    lines: int | None,
    make: Callable[[], BatchFilter],
    retry: bool,
    row_group_rows: int,
    schema: pa.Schema,
) -> ParquetFacts:
    want = count_lines(path, header=True) if lines is None else lines

    def explicit(into: Writable, *, large: bool = False) -> ParquetFacts:
        keep = make()
        batches = exact_batches(
            path,
            export_hour=export_hour,
            source_file=source_file,
            header=True,
            lines=want,
            found=conversions.seen.add,
            engines=conversions.engines,
            large=large,
        )
        with contextlib.closing(batches):  # hands its engine back even if writing fails
            return write_parquet(
                (keep(b) for b in batches), into, row_group_rows=row_group_rows, schema=schema
            )

    scratch_path = path.with_name(path.name + ".parquet")
    known = len(conversions.seen.sorted())
    try:
        with scratch_path.open("w+b") as scratch:
            facts = None
            for _ in range(SINGLE_READS if retry else 0):
                scratch.seek(0)
                scratch.truncate()
                facts = _read_once(
                    path,
                    scratch,
                    make(),
                    conversions,
                    export_hour=export_hour,
                    source_file=source_file,
                    lines=want,
                    row_group_rows=row_group_rows,
                    schema=schema,
                )
                if facts is not None or len(conversions.seen.sorted()) == known:
                    break
                known = len(conversions.seen.sorted())
            if facts is None:
                scratch.seek(0)
                scratch.truncate()
                try:
                    facts = explicit(scratch)
                except NeedsMemoryError:
                    scratch.seek(0)
                    scratch.truncate()
                    facts = explicit(scratch, large=True)
            scratch.seek(0)
            while piece := scratch.read(_COPY_BYTES):
                out.write(piece)
    finally:
        scratch_path.unlink(missing_ok=True)
    return facts
