"""Parquet output on any sink: a ``Sink`` wrapper that turns each member into a Parquet file.

``ParquetSink(inner)`` keeps every promise of ``stores.base``: the archive's decoded NDJSON is
spooled to a local temporary file, converted when the member ends (in the decoding worker
thread, so a line that is not JSON fails the attempt like any corrupt archive), and written
through ``inner``'s own staging. ``commit`` swaps the manifest's NDJSON entries for the Parquet
files and records the members they came from (name, lines, sha256 of the decompressed bytes),
the duplicate ``uuid`` count and the ``_extra`` count; ``inner`` then commits it as it always
does: data first, stale files removed, manifest last. Nothing here knows which sink it wraps.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import anyio
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import StorageError, os_storage_error
from ...hours import MemberName
from ..manifest import FileEntry, Manifest, SourceEntry, TableFacts
from ..stores.base import HourStaging, MemberSink, Sink
from .convert import ParquetFacts, Writable
from .deadletter import Quarantine, put_quarantine, warn_quarantined
from .schema import EVENT_SCHEMA
from .spool import BatchFilter, Conversions, convert_spool, new_spool_header

__all__ = ["DuplicateFilter", "ParquetSink", "convert_counted", "converted_facts", "parquet_name"]


def parquet_name(member: MemberName) -> str:
    """``187520_2026-11-02_14_p0.parquet`` for member ``187520_2026-11-02_14#0.json.gz``.

    No ``#``: Hadoop-style paths (Spark, Fabric, Databricks) read it as a URI fragment.
    """
    stem = member.base_name.removesuffix(".json.gz").split("#", 1)[0]
    return f"{stem}_p{member.page}.parquet"


class DuplicateFilter:
    """Counts rows whose ``uuid`` an earlier row of the hour already had; drops them if asked.

    Exact, and cheap in the default case: counting keeps each batch's ``uuid`` values in numpy
    arrays, canonical UUIDs (lowercase, hyphenated) as their 16 bytes and any other value as
    its bytes (a canonical value never equals another), and sorts them when counted: 16 bytes
    a row, and as much again while sorting (for a 1 GB hour: 9 MB, against 20 MB kept and
    about 40 MB more while counting as text). Dropping (``dedupe = true``) must decide row by
    row, so it keeps a set of the ``uuid`` values seen (about 80 bytes a row). Rows without a
    ``uuid`` are never duplicates.
    """

    def __init__(self, *, drop: bool) -> None:
        self.drop = drop
        self.dropped = 0
        self._seen: set[bytes] = set()
        self._parts: list[np.ndarray] = []  # canonical UUIDs, 16 bytes each
        self._others: list[np.ndarray] = []  # any other value, as bytes
        self._counted: int | None = None

    @property
    def duplicates(self) -> int:
        """Rows so far whose ``uuid`` repeats an earlier row's (sorts what is not counted yet:
        ``count()`` it in a worker thread first, so that reading it later costs nothing)."""
        if self.drop:
            return self.dropped
        if self._counted is None:
            self._counted = _repeats(self._parts) + _repeats(self._others)
        return self._counted

    def count(self) -> None:
        """Count now (blocking, CPU bound: about 0.3 s for a 1 GB hour)."""
        _ = self.duplicates

    @property
    def odd_batches(self) -> int:
        """How many batches so far held a ``uuid`` that is not a canonical UUID (counting)."""
        return len(self._others)

    def kept(self) -> list[bytes]:
        """The distinct ``uuid`` values passed on, sorted (dropping)."""
        assert self.drop
        return sorted(self._seen)

    def held(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the ``uuid`` values held, each kind sorted (counting): the canonical
        UUIDs as 16 bytes, and the other values as bytes (numpy pads them with NULs)."""
        assert not self.drop
        packed = np.concatenate(self._parts) if self._parts else np.array([], "S16")
        packed.sort()
        other = np.concatenate(self._others) if self._others else np.array([], "S1")
        other.sort()
        return packed, other

    def absorb(self, other: DuplicateFilter) -> None:
        """Count ``other``'s rows too (a counting filter that saw one member's rows)."""
        assert not self.drop and not other.drop
        self._parts.extend(other._parts)
        self._others.extend(other._others)
        self._counted = None

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        uuids = batch.column("uuid")
        if not self.drop:
            canonical, others = _compact(_uuid_bytes(uuids))
            self._parts.append(canonical)
            if others.size:
                self._others.append(others)
            self._counted = None
            return batch
        return self._drop(batch, None)

    def passing(self) -> tuple[BatchFilter, Callable[[], None]]:
        """Dropping: the filter of one read of a member, and what takes that read back (the
        ``uuid`` values it let through are forgotten, its drops uncounted) when the read is
        thrown away: a sampled read that missed a key, a line that must be quarantined."""
        assert self.drop
        added: list[bytes] = []
        dropped = [0]

        def keep(batch: pa.RecordBatch) -> pa.RecordBatch:
            before = self.dropped
            kept = self._drop(batch, added)
            dropped[0] += self.dropped - before
            return kept

        def back() -> None:
            self._seen.difference_update(added)
            self.dropped -= dropped[0]
            added.clear()
            dropped[0] = 0

        return keep, back

    def _drop(self, batch: pa.RecordBatch, added: list[bytes] | None) -> pa.RecordBatch:
        keep = np.ones(len(batch), dtype=bool)
        seen = self._seen
        for row, value in enumerate(batch.column("uuid").to_pylist()):
            if value is None:
                continue
            key = value.encode()
            if key in seen:
                keep[row] = False
            else:
                seen.add(key)
                if added is not None:
                    added.append(key)
        repeats = len(batch) - int(keep.sum())
        if not repeats:
            return batch
        self.dropped += repeats
        return batch.filter(pa.array(keep))


def _repeats(parts: list[np.ndarray]) -> int:
    """How many values of ``parts`` equal an earlier one."""
    if not parts:
        return 0
    values = np.concatenate(parts)  # a copy, sorted in place
    values.sort()
    return int(np.count_nonzero(values[1:] == values[:-1]))


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)
_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_HYPHENS = np.array([8, 13, 18, 23])


def _compact(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(canonical UUIDs among ``values`` as 16 bytes each, the other values unchanged)."""
    if values.dtype != np.dtype("S36") or not values.size:
        return np.array([], "S16"), values
    chars = values.view(np.uint8).reshape(-1, 36)
    nibbles = _HEX[chars[:, _DIGITS]]
    ok = (nibbles != 255).all(axis=1) & (chars[:, _HYPHENS] == ord("-")).all(axis=1)
    packed = np.ascontiguousarray((nibbles[:, 0::2] << 4) | nibbles[:, 1::2])
    return packed.view("S16").reshape(-1)[ok], values[~ok]


def _uuid_bytes(uuids: pa.Array) -> np.ndarray:
    """The non-null values of a string array as a numpy bytes array (a copy it owns)."""
    values = pc.drop_null(uuids)
    if not len(values):
        return np.array([], "S1")
    lengths = pc.binary_length(values)
    width = pc.max(lengths).as_py()
    if width == pc.min(lengths).as_py() and width:  # all one width (canonical UUIDs): a view
        offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset]
        data = values.buffers()[2]
        view = np.frombuffer(data, dtype=f"S{width}", count=len(values), offset=int(offsets))
        return view.copy()
    return np.array([v.encode() for v in values.to_pylist()], dtype=bytes)


def _unchanged(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch


def convert_counted(
    path: Path,
    out: Writable,
    hour_filter: DuplicateFilter,
    *,
    conversions: Conversions,
    export_hour: datetime,
    source_file: str,
    lines: int,
    schema: pa.Schema = EVENT_SCHEMA,
    shape: BatchFilter = _unchanged,
    quarantine: Quarantine | None = None,
) -> ParquetFacts:
    """``convert_spool`` of one member of an hour whose duplicates ``hour_filter`` counts (or
    drops), each batch then reshaped by ``shape`` into ``schema``. Counting, each read gets a
    fresh filter of the same kind and the last one's count joins the hour's; dropping decides
    against the whole hour, and each read takes back what the read before it let through
    (``DuplicateFilter.passing``), so a read thrown away (a line quarantined, a sampled read
    that missed a key) drops no row of the next."""
    tried: list[DuplicateFilter] = []  # without drop: each read's own filter, the last kept
    undo: list[Callable[[], None]] = []  # with drop: what the read before let through

    def new_filter() -> BatchFilter:
        if hour_filter.drop:
            while undo:
                undo.pop()()
            keep, back = hour_filter.passing()
            undo.append(back)
        else:
            tried.append(type(hour_filter)(drop=False))
            keep = tried[-1]
        return lambda batch: shape(keep(batch))

    facts = convert_spool(
        path,
        out,
        conversions=conversions,
        export_hour=export_hour,
        source_file=source_file,
        lines=lines,
        new_filter=new_filter,
        schema=schema,
        quarantine=quarantine,
    )
    if tried:
        hour_filter.absorb(tried[-1])
    return facts


def converted_facts(
    data_format: str,
    members: Iterable[tuple[SourceEntry, int]],
    duplicates: DuplicateFilter,
    quarantine: Quarantine,
) -> TableFacts:
    """A converted hour's facts: its ``members`` (what Amplitude sent, rows with a non-null
    ``_extra``), what its duplicate filter counted and the lines it quarantined."""
    converted = list(members)
    return TableFacts(
        format=data_format,
        sources=tuple(source for source, _ in converted),
        duplicate_uuids=duplicates.duplicates,
        dropped_duplicates=duplicates.dropped,
        extra_rows=sum(extra for _, extra in converted),
        dead_letters=tuple(quarantine.letters),
    )


class _Spool:
    """One member's NDJSON: spooled, then converted into ``inner`` when the member ends."""

    def __init__(self, staging: _ParquetStaging, member: MemberName, file_name: str) -> None:
        self._staging = staging
        self._member = member
        self._file_name = file_name
        self._dir = tempfile.mkdtemp(prefix="async-amp-", dir=staging.spool_dir)
        self._path = Path(self._dir) / "member.ndjson"
        self._file: BinaryIO | None = self._path.open("wb")
        self._file.write(new_spool_header())
        self._out: MemberSink | None = None

    def write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)

    def finish(self, entry: FileEntry) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        staging = self._staging
        name = parquet_name(self._member)
        source = f"{self._member.project_id}/{self._member.base_name}"
        try:
            self._out = staging.inner.open_member(self._member, name)
            facts = convert_counted(
                self._path,
                self._out,
                staging.duplicates,
                conversions=staging.conversions,
                export_hour=self._member.hour,
                source_file=source,
                lines=entry.events,
                quarantine=staging.quarantine,
            )
            parquet = FileEntry(
                name=name, bytes=facts.bytes, events=facts.rows, sha256=facts.sha256, source=source
            )
            self._out.finish(parquet)
        finally:
            self._remove()
        staging.done(
            entry.name,
            parquet,
            SourceEntry(name=source, lines=entry.events, bytes=entry.bytes, sha256=entry.sha256),
            facts.extra_rows,
        )

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._out is not None:
            self._out.discard()
        self._remove()

    def _remove(self) -> None:
        self._path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            Path(self._dir).rmdir()


@dataclass(slots=True)
class _Converted:
    parquet: FileEntry
    source: SourceEntry
    extra_rows: int


class _ParquetStaging:
    def __init__(self, sink: ParquetSink, inner: HourStaging, hour: datetime) -> None:
        self.inner = inner
        self.hour = hour
        self.spool_dir = sink.spool_dir
        self.conversions = sink.conversions
        self.duplicates = DuplicateFilter(drop=sink.dedupe)
        self.quarantine = Quarantine(self.spool_dir)
        self._converted: dict[str, _Converted] = {}
        self._lock = threading.Lock()

    def open_member(self, member: MemberName, file_name: str) -> MemberSink:
        try:
            return _Spool(self, member, file_name)
        except OSError as exc:
            where = f"spooling {member.base_name} in {self.spool_dir or tempfile.gettempdir()}"
            raise os_storage_error(exc, where) from exc

    def done(self, ndjson_name: str, parquet: FileEntry, source: SourceEntry, extra: int) -> None:
        with self._lock:
            self._converted[ndjson_name] = _Converted(parquet, source, extra)

    def converted_manifest(self, manifest: Manifest, kept: FileEntry | None = None) -> Manifest:
        """The pipeline's manifest (NDJSON entries) as the Parquet hour's manifest; ``kept``:
        the hour's quarantine file, listed last (its events are the lines it holds)."""
        with self._lock:
            converted = [self._converted[entry.name] for entry in manifest.files]
        return replace(
            manifest,
            files=tuple(c.parquet for c in converted) + ((kept,) if kept else ()),
            table=converted_facts(
                "parquet",
                [(c.source, c.extra_rows) for c in converted],
                self.duplicates,
                self.quarantine,
            ),
        )

    @property
    def quarantined_lines(self) -> int:
        return len(self.quarantine.letters)

    async def commit(self, manifest: Manifest) -> Manifest:
        # counted once the hour's members are converted (their engines' buffers handed
        # back), in a worker thread: one sort an hour, not one a member
        await anyio.to_thread.run_sync(self.duplicates.count)
        try:
            kept = await anyio.to_thread.run_sync(
                put_quarantine, self.quarantine, self.inner, self.hour
            )
            converted = self.converted_manifest(manifest, kept)
        except KeyError as exc:
            msg = f"cannot commit {exc.args[0]}: it was never converted"
            raise StorageError(msg) from None
        await self.inner.commit(converted)
        warn_quarantined(self.hour, self.quarantine.letters)
        self.quarantine.remove()
        return converted

    async def discard(self) -> None:
        self.quarantine.remove()
        await self.inner.discard()


class ParquetSink:
    """Any ``Sink`` (local, Azure, S3), writing one Parquet file per archive member."""

    def __init__(
        self, inner: Sink, *, dedupe: bool = False, spool_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.inner = inner
        self.dedupe = dedupe
        self.spool_dir = spool_dir
        self.conversions = Conversions()  # the run's: closed with the sink

    def describe(self) -> str:
        return self.inner.describe()

    async def prepare(self) -> None:
        await self.inner.prepare()
        if self.spool_dir is not None:
            await anyio.Path(self.spool_dir).mkdir(parents=True, exist_ok=True)

    async def completed_hours(self, project: str, hours: Iterable[datetime]) -> set[datetime]:
        return await self.inner.completed_hours(project, hours)

    async def read_manifest(self, project: str, hour: datetime) -> Manifest | None:
        return await self.inner.read_manifest(project, hour)

    async def list_files(self, project: str, hour: datetime) -> list[str]:
        return await self.inner.list_files(project, hour)

    def iter_file(self, project: str, hour: datetime, name: str) -> AsyncIterator[bytes]:
        return self.inner.iter_file(project, hour, name)

    def stage(self, project: str, hour: datetime) -> _ParquetStaging:
        return _ParquetStaging(self, self.inner.stage(project, hour), hour)

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.conversions.close()
