"""Parquet output on any sink: a ``Sink`` wrapper that turns each member into a Parquet file.

``ParquetSink(inner)`` keeps every promise of ``sinks.base``: the archive's decoded NDJSON is
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
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import anyio
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StorageError
from ..hours import MemberName
from ..manifest import FileEntry, Manifest, SourceEntry, TableFacts
from ..sinks.base import HourStaging, MemberSink, Sink
from .convert import iter_event_batches, write_parquet

__all__ = ["DuplicateFilter", "ParquetSink", "parquet_name"]


def parquet_name(member: MemberName) -> str:
    """``187520_2026-11-02_14_p0.parquet`` for member ``187520_2026-11-02_14#0.json.gz``.

    No ``#``: Hadoop-style paths (Spark, Fabric, Databricks) read it as a URI fragment.
    """
    stem = member.base_name.removesuffix(".json.gz").split("#", 1)[0]
    return f"{stem}_p{member.page}.parquet"


class DuplicateFilter:
    """Counts rows whose ``uuid`` an earlier row of the hour already had; drops them if asked.

    Exact (no hashing): the ``uuid`` values seen so far are kept as one Arrow string array,
    about 40 bytes a row. Rows without a ``uuid`` are never duplicates.
    """

    def __init__(self, *, drop: bool) -> None:
        self.drop = drop
        self.duplicates = 0
        self.dropped = 0
        self._seen = pa.array([], pa.utf8())

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        uuids = batch.column("uuid")
        encoded = uuids.dictionary_encode()
        indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        values = encoded.dictionary
        valid = np.asarray(uuids.is_valid())
        repeat = np.ones(len(batch), dtype=bool)
        if len(values):
            _, first = np.unique(np.where(valid, indices, -1), return_index=True)
            repeat[first] = False
            seen_before = np.asarray(pc.is_in(values, value_set=self._seen))
            repeat |= seen_before[indices]
            self._seen = pa.concat_arrays([self._seen, values.filter(pa.array(~seen_before))])
        repeat &= valid
        count = int(repeat.sum())
        self.duplicates += count
        if not (self.drop and count):
            return batch
        self.dropped += count
        return batch.filter(pa.array(~repeat))


class _Spool:
    """One member's NDJSON: spooled, then converted into ``inner`` when the member ends."""

    def __init__(self, staging: _ParquetStaging, member: MemberName, file_name: str) -> None:
        self._staging = staging
        self._member = member
        self._file_name = file_name
        self._dir = tempfile.mkdtemp(prefix="async-amp-", dir=staging.spool_dir)
        self._path = Path(self._dir) / "member.ndjson"
        self._file: BinaryIO | None = self._path.open("wb")
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
            batches = iter_event_batches(
                self._path, export_hour=self._member.hour, source_file=source
            )
            with contextlib.closing(batches):  # hands its engine back even if writing fails
                self._out = staging.inner.open_member(self._member, name)
                facts = write_parquet(_filtered(batches, staging.duplicates), self._out)
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


def _filtered(batches: Iterator[pa.RecordBatch], keep: DuplicateFilter) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield keep(batch)


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
        self.duplicates = DuplicateFilter(drop=sink.dedupe)
        self._converted: dict[str, _Converted] = {}
        self._lock = threading.Lock()

    def open_member(self, member: MemberName, file_name: str) -> MemberSink:
        try:
            return _Spool(self, member, file_name)
        except OSError as exc:
            msg = f"cannot spool {member.base_name} in {self.spool_dir or tempfile.gettempdir()}"
            raise StorageError(f"{msg}: {exc.strerror or exc}") from exc

    def done(self, ndjson_name: str, parquet: FileEntry, source: SourceEntry, extra: int) -> None:
        with self._lock:
            self._converted[ndjson_name] = _Converted(parquet, source, extra)

    def converted_manifest(self, manifest: Manifest) -> Manifest:
        """The pipeline's manifest (NDJSON entries) as the Parquet hour's manifest."""
        with self._lock:
            converted = [self._converted[entry.name] for entry in manifest.files]
        return replace(
            manifest,
            files=tuple(c.parquet for c in converted),
            table=TableFacts(
                format="parquet",
                sources=tuple(c.source for c in converted),
                duplicate_uuids=self.duplicates.duplicates,
                dropped_duplicates=self.duplicates.dropped,
                extra_rows=sum(c.extra_rows for c in converted),
            ),
        )

    async def commit(self, manifest: Manifest) -> None:
        try:
            converted = self.converted_manifest(manifest)
        except KeyError as exc:
            msg = f"cannot commit {exc.args[0]}: it was never converted"
            raise StorageError(msg) from None
        await self.inner.commit(converted)

    async def discard(self) -> None:
        await self.inner.discard()


class ParquetSink:
    """Any ``Sink`` (local, Azure, S3), writing one Parquet file per archive member."""

    def __init__(
        self, inner: Sink, *, dedupe: bool = False, spool_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.inner = inner
        self.dedupe = dedupe
        self.spool_dir = spool_dir

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
        await self.inner.aclose()
