"""``[output] format = "delta"``: a ``Sink`` that commits each hour into the project's Delta table.

``DeltaSink(inner, locate)`` wraps the local, Azure (or S3) sink and keeps every promise of
``stores.base``. While an archive streams in, each member's NDJSON is spooled to a local file
and converted (``columnar.staging.convert_counted``, the Parquet format's own converter, one
read per member: row groups bounded, memory flat in the hour's size) into a local Parquet file in
the table's columns when the member ends, in the decoding thread: a line that is not JSON
fails the attempt like a corrupt archive. ``commit`` then, in this order:

1. removes the hour's manifest, if an earlier extraction left one (the hour stops looking done
   before its rows change);
2. puts the hour's Parquet files into its partition folder of the table (``files.put_file``:
   a rename locally, a streamed upload to Azure or S3), invisible until a commit names them;
3. replaces the hour's rows in the table with one Delta commit (``table.replace_hour``: adds
   the files, removes the hour's old ones; conflicts with other writers retried);
4. writes the hour's manifest through ``inner``, last, in
   ``<table>/_async_amp/date=YYYY-MM-DD/hour=HH/`` beside the data: the commit's facts are
   typed in it (``manifest.DeltaFacts``: the version committed, rows, files and bytes added,
   a digest of the uuids from the hour's duplicate filter, ``digest.py``; ``TableFacts``: the
   source members, duplicates, dead letters). Hours written before kept these facts in a side
   record, ``_delta_commit.json``, which readers still read (``Manifest.side_record``).

The invariant: **a manifest exists only for an hour whose rows a committed table version
holds, whole.** Readers of the table never see part of an hour (one commit per hour);
``status`` and resume read manifests, so a kill between 3 and 4 leaves an hour the table
holds but that no manifest claims: the next run extracts it again and replaces it. Delta
readers skip ``_async_amp/`` (the protocol only reads files the log names; Spark, Databricks
and delta-rs ``VACUUM`` skip folders starting with ``_``). A kill between 2 and 3 leaves files
no commit names: no reader sees them, and ``compact``'s vacuum deletes them once they are
older than its retention.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import StorageError, os_storage_error
from ...hours import MemberName
from ...logs import log
from ..columnar.deadletter import Quarantine, put_quarantine, warn_quarantined
from ..columnar.spool import Conversions, new_spool_header
from ..columnar.staging import convert_counted, converted_facts
from ..manifest import DeltaFacts, FileEntry, Manifest, SourceEntry
from ..stores.base import HourStaging, MemberSink, Sink
from .digest import DigestingFilter
from .files import DATA_SCHEMA, FILE_SCHEMA, DataFile, put_file, table_schema
from .layout import is_day_layout
from .table import (
    DELTA_ERRORS,
    LayoutChangedError,
    TableLocation,
    Writers,
    delta_error_text,
    open_table,
    replace_hour,
    uuid_digest,
)

__all__ = ["META_FOLDER", "DeltaSink", "meta_project"]


META_FOLDER = "_async_amp"


def meta_project(project: str) -> str:
    """The "project" under which ``inner`` keeps the table's per-hour records."""
    return f"{project}/{META_FOLDER}"


def _plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A spooled batch in the table's event columns (JSON extension arrays as plain text)."""
    arrays = [col.storage if isinstance(col, pa.ExtensionArray) else col for col in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names).cast(DATA_SCHEMA)


def _with_hour(hour: int) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
    """``_plain``, then the ``hour`` column: the day layout's data files hold it."""

    def shape(batch: pa.RecordBatch) -> pa.RecordBatch:
        plain = _plain(batch)
        column = pa.array([hour] * plain.num_rows, pa.int32())
        return pa.RecordBatch.from_arrays([*plain.columns, column], schema=FILE_SCHEMA)

    return shape


class _Writer:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def write(self, data: bytes) -> None:
        self._file.write(data)


class _Member:
    """One member: NDJSON spooled, converted when it ends into a local Parquet file in the
    table's columns (the data file ``commit`` puts into the table)."""

    def __init__(self, staging: _DeltaStaging, member: MemberName, file_name: str) -> None:
        self._staging = staging
        self._member = member
        self._file_name = file_name
        self._ndjson = staging.dir / f"{file_name}.ndjson"
        self.parquet = staging.dir / f"{file_name}.parquet"
        self._file: BinaryIO | None = self._ndjson.open("wb")
        self._file.write(new_spool_header())  # converted by one read (columnar.spool)

    def write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)

    def finish(self, entry: FileEntry) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        source = f"{self._member.project_id}/{self._member.base_name}"
        day_layout = self._staging.day_layout
        try:
            with self._staging.slots, self.parquet.open("wb") as out:
                facts = convert_counted(
                    self._ndjson,
                    _Writer(out),
                    self._staging.duplicates,
                    conversions=self._staging.conversions,
                    export_hour=self._member.hour,
                    source_file=source,
                    lines=entry.events,
                    schema=FILE_SCHEMA if day_layout else DATA_SCHEMA,
                    shape=_with_hour(self._member.hour.hour) if day_layout else _plain,
                    quarantine=self._staging.quarantine,
                )
        finally:
            self._ndjson.unlink(missing_ok=True)
        described = SourceEntry(source, entry.events, entry.bytes, entry.sha256)
        staged = _Staged(self.parquet, described, facts.rows, facts.extra_rows)
        self._staging.done(self._file_name, staged)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._ndjson.unlink(missing_ok=True)
        self.parquet.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class _Staged:
    """A member converted: its local Parquet file, what Amplitude sent, its rows."""

    path: Path
    source: SourceEntry
    rows: int
    extra_rows: int  # rows with a non-null ``_extra``


class _DeltaStaging:
    def __init__(self, sink: DeltaSink, project: str, hour: datetime) -> None:
        self._sink = sink
        self._project = project
        self._hour = hour
        self.dir = sink.spool / f"{hour:%Y%m%dT%H}-{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._done: dict[str, _Staged] = {}
        # an hour's members are decoded one after the other, in one thread: one filter each
        self.duplicates = DigestingFilter(drop=sink.dedupe)
        self.quarantine = Quarantine(sink.spool)
        self.conversions = sink.conversions
        self.slots = sink.slots
        self.day_layout = True

    def open_member(self, member: MemberName, file_name: str) -> MemberSink:
        try:
            if not self._done:  # the hour's first member: the files' columns follow the table
                self.day_layout = self._sink.day_layout(self._project)
            self.dir.mkdir(parents=True, exist_ok=True)
            return _Member(self, member, file_name)
        except OSError as exc:
            raise os_storage_error(exc, f"spooling {self.dir / file_name}") from exc

    def done(self, name: str, staged: _Staged) -> None:
        with self._lock:
            self._done[name] = staged

    @property
    def quarantined_lines(self) -> int:
        return len(self.quarantine.letters)

    async def commit(self, manifest: Manifest) -> Manifest:
        with self._lock:
            done = dict(self._done)
        parts = []
        for entry in manifest.files:
            if entry.name not in done:
                msg = f"cannot commit hour {self._hour:%Y-%m-%dT%H}: {entry.name} not staged"
                raise StorageError(msg)
            parts.append(done[entry.name])
        sink = self._sink
        meta = meta_project(self._project)
        location = sink.locate(self._project)
        if await sink.inner.read_manifest(meta, self._hour) is not None:
            # withdraw "complete" before the rows change; the inner sink's own commit below
            # would do it too, but only after the table has changed
            await self._withdraw(meta)
        paths = [p.path for p in parts]
        hour = f"{self._hour:%Y-%m-%dT%H}"
        # the filter saw exactly the rows of these files when every member staged is committed
        filtered = len(done) == len(parts)

        def write() -> tuple[int, list[DataFile], str]:
            self.duplicates.count()  # once the members are converted: one sort an hour
            rows = sum(p.rows for p in parts)
            digest = self.duplicates.uuid_sha256(rows) if filtered else None
            if digest is None:
                digest = uuid_digest(pq.read_table(p, columns=["uuid"])["uuid"] for p in paths)
            files = [
                put_file(location, path, self._hour, day_layout=self.day_layout) for path in paths
            ]
            version = replace_hour(
                location,
                self._hour,
                files,
                schema=table_schema(),
                metadata={
                    "hour": hour,
                    "run_id": sink.run_id,
                    "rows": sum(f.rows for f in files),
                },
                name=self._project,
                writers=sink.writers,
                on_conflict=lambda attempt, why: log.warning(
                    "delta.commit_conflict", hour=hour, attempt=attempt, detail=why
                ),
            )
            return version, files, digest

        try:
            version, files, digest = await anyio.to_thread.run_sync(write)
        except LayoutChangedError as exc:
            sink.forget_layout(self._project)  # the attempt again, in the table's layout
            raise StorageError(delta_error_text(exc, location)) from None
        except DELTA_ERRORS as exc:
            msg = f"cannot commit hour {hour} to the Delta table: "
            raise StorageError(msg + delta_error_text(exc, location)) from None
        if manifest.files:  # an empty hour commits no rows: nothing to state
            manifest = replace(
                manifest,
                delta=DeltaFacts(
                    table_version=version,
                    rows=sum(f.rows for f in files),
                    files=len(files),
                    bytes=sum(f.size for f in files),
                    uuid_sha256=digest,
                ),
                table=converted_facts(
                    "delta",
                    [(p.source, p.extra_rows) for p in parts],
                    self.duplicates,
                    self.quarantine,
                ),
            )
        stored = await self._record(meta, manifest)
        warn_quarantined(self._hour, self.quarantine.letters)
        await anyio.to_thread.run_sync(self._clean)
        return stored

    def _clean(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.quarantine.remove()

    async def _withdraw(self, meta: str) -> None:
        """Remove the hour's manifest through ``inner``: an empty commit of an
        "empty" manifest would claim the hour, so the staging is discarded instead."""
        await self._sink.forget(meta, self._hour)

    async def _record(self, meta: str, manifest: Manifest) -> Manifest:
        """Commit the hour's manifest (and quarantine file) through ``inner``: the members'
        entries give way to the facts of the table commit (``manifest.delta``, set by the
        caller), and a side record an older run left in the folder goes with them."""
        staging = self._sink.inner.stage(meta, self._hour)
        try:
            kept = await anyio.to_thread.run_sync(
                put_quarantine, self.quarantine, staging, self._hour
            )
            stored = replace(manifest, files=(kept,) if kept else ())
            await staging.commit(stored)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await staging.discard()
            raise
        return stored

    async def discard(self) -> None:
        await anyio.to_thread.run_sync(self._clean)


class DeltaSink:
    """Delta tables of events (one per project) over ``inner``, which keeps the records."""

    def __init__(
        self,
        inner: Sink,
        locate: Callable[[str], TableLocation],
        *,
        run_id: str,
        spool_dir: Path | None = None,
        forget: Callable[[str, datetime], Awaitable[None]] | None = None,
        dedupe: bool = False,
    ) -> None:
        self.inner = inner
        self.locate = locate
        self.run_id = run_id
        self._spool_parent = spool_dir
        self.spool = Path(tempfile.gettempdir())
        self._forget = forget
        self.dedupe = dedupe
        self._layouts: dict[str, bool] = {}
        self._layouts_lock = threading.Lock()
        # the run's own, closed with the sink: no engine, key or snapshot outlives the run
        self.conversions = Conversions()
        self.slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
        self.writers = Writers()

    def day_layout(self, project: str) -> bool:
        """Whether ``project``'s table is partitioned by day (a new table will be); blocking,
        the table is opened once per project and run."""
        with self._layouts_lock:
            known = self._layouts.get(project)
        if known is not None:
            return known
        try:
            table = open_table(self.locate(project))
        except DELTA_ERRORS as exc:
            msg = f"cannot open the Delta table of {project}: "
            raise StorageError(msg + delta_error_text(exc, self.locate(project))) from None
        day = table is None or is_day_layout(table.metadata().partition_columns)
        with self._layouts_lock:
            self._layouts[project] = day
        return day

    def forget_layout(self, project: str) -> None:
        with self._layouts_lock:
            self._layouts.pop(project, None)

    def describe(self) -> str:
        return f"delta:{self.inner.describe()}"

    read_errors = DELTA_ERRORS  # ``stores.base.KeepsTable``: readers read the rows from the table

    async def table_dataset(self, project: str) -> Any:
        """The project's table as a pyarrow dataset (``None``: no table yet)."""
        location = self.locate(project)
        try:
            table = await anyio.to_thread.run_sync(open_table, location)
        except DELTA_ERRORS as exc:
            reason = delta_error_text(exc, location)
            msg = f"cannot open the Delta table at {location.uri}: {reason}"
            raise StorageError(msg) from None
        return None if table is None else table.to_pyarrow_dataset()

    async def prepare(self) -> None:
        await self.inner.prepare()

        def make() -> Path:
            if self._spool_parent is not None:
                self._spool_parent.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix="async-amp-delta-", dir=self._spool_parent))

        self.spool = await anyio.to_thread.run_sync(make)

    async def forget(self, meta: str, hour: datetime) -> None:
        if self._forget is not None:
            await self._forget(meta, hour)

    async def completed_hours(self, project: str, hours: Iterable[datetime]) -> set[datetime]:
        return await self.inner.completed_hours(meta_project(project), hours)

    async def read_manifest(self, project: str, hour: datetime) -> Manifest | None:
        return await self.inner.read_manifest(meta_project(project), hour)

    async def list_files(self, project: str, hour: datetime) -> list[str]:
        return await self.inner.list_files(meta_project(project), hour)

    def iter_file(self, project: str, hour: datetime, name: str) -> AsyncIterator[bytes]:
        return self.inner.iter_file(meta_project(project), hour, name)

    def stage(self, project: str, hour: datetime) -> HourStaging:
        return _DeltaStaging(self, project, hour)

    async def aclose(self) -> None:
        spool = self.spool
        try:
            if spool.name.startswith("async-amp-delta-"):
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(spool, ignore_errors=True))
            await self.inner.aclose()
        finally:
            self.conversions.close()
            self.writers.close()
