"""Where a ``merged_ids`` hour is committed, per the output's format, keeping the promises of
``stores.base``: data first, the manifest last, one hour at a time.

- ndjson, gzip, parquet (``FilesTable``): the hour's files in ``_merged_ids/<project>/
  date=YYYY-MM-DD/hour=HH/`` through the output's store (a local folder, Azure, S3, GCS),
  staged and committed like an events hour: the feed's file decompressed (``.json``), as
  Amplitude wrote it (``.json.gz``) or typed (``.parquet``), and ``_manifest.json`` last.
- delta (``DeltaTable``): one Delta table at ``_merged_ids/<project>/``; an hour is one commit
  that replaces its rows (``_export_hour``), then its manifest in the table's ``_async_amp/``
  folder, as for the events' table, the commit's facts typed in its ``delta`` section (hours
  written before list a side record, ``_delta_commit.json``, instead; nothing reads it).
"""

from __future__ import annotations

import gzip
import io
import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from ..hours import MemberName, iso_hour
from ..output.manifest import MANIFEST_NAME, DeltaFacts, FileEntry, Manifest
from .names import merged_root
from .schema import MERGED_SCHEMA, rows_of

if TYPE_CHECKING:
    from ..output.delta.table import TableLocation
    from ..output.stores.base import Sink, Store

__all__ = ["DeltaMergedTable", "FeedFile", "FilesTable", "MergedTable"]


@dataclass(frozen=True, slots=True)
class FeedFile:
    """One file of the feed as read: its base name, bytes as sent, decompressed, as rows."""

    base: str
    gz: bytes
    text: bytes
    table: pa.Table
    extra_rows: int


class MergedTable(Protocol):
    """The ``merged_ids`` table of one project, whatever the format."""

    def describe(self) -> str: ...

    async def completed(self, hours: Iterable[datetime]) -> set[datetime]: ...

    async def manifest(self, hour: datetime) -> Manifest | None: ...

    async def commit(self, hour: datetime, files: Sequence[FeedFile], base: Manifest) -> Manifest:
        """Store the hour's files (``base``: the manifest without its file entries)."""
        ...

    async def read_all(self) -> pa.Table:
        """Every committed row (hours with a manifest; Delta: the latest version)."""
        ...


_LISTING = 10_000_000  # a year of hours is 8,760 folders


def _rows(entry: FileEntry, data: bytes, hour: datetime) -> pa.Table:
    """A stored file's rows, whatever the format stored it as."""
    if entry.name.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data), schema=MERGED_SCHEMA)
    if entry.name.endswith(".gz"):
        data = gzip.decompress(data)
    columns, _ = rows_of(data.splitlines(), hour=hour, source=entry.source or entry.name)
    return pa.table(columns, schema=MERGED_SCHEMA)


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", write_statistics=True)
    return out.getvalue()


def _entry(name: str, data: bytes, source: str) -> FileEntry:
    """The entry ``verify`` will find: counted by the same ``FileCheck``."""
    from ..readback.checks import FileCheck  # noqa: PLC0415 - the archive reader, only to write

    check = FileCheck(gzip=name.endswith(".gz"), parquet=name.endswith(".parquet"))
    check.update(data)
    facts = check.finish()
    return FileEntry(name, facts.bytes, facts.events, facts.sha256, source=source)


async def _put(
    store: Sink,
    root: str,
    hour: datetime,
    files: dict[str, bytes],
    base: Manifest,
    sources: dict[str, str],
) -> Manifest:
    """Stage ``files`` (name -> bytes) under ``root``'s hour folder, commit with the manifest."""
    staging = store.stage(root, hour)

    def put() -> tuple[FileEntry, ...]:
        entries = []
        for name, data in files.items():
            entry = _entry(name, data, sources.get(name, ""))
            out = staging.open_member(MemberName("", hour, 0, name), name)
            out.write(data)
            out.finish(entry)
            entries.append(entry)
        return tuple(entries)

    try:
        manifest = replace(base, files=await anyio.to_thread.run_sync(put))
        await staging.commit(manifest)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await staging.discard()
        raise
    return manifest


class FilesTable:
    """ndjson, gzip or parquet files in the hour folders of ``_merged_ids/<project>/``."""

    def __init__(self, store: Store, project: str, data_format: str) -> None:
        self.store = store
        self.root = merged_root(project)
        self.format = data_format

    def describe(self) -> str:
        return f"{self.store.describe()}/{self.root}"

    async def completed(self, hours: Iterable[datetime]) -> set[datetime]:
        return await self.store.completed_hours(self.root, hours)

    async def manifest(self, hour: datetime) -> Manifest | None:
        return await self.store.read_manifest(self.root, hour)

    def _file(self, feed: FeedFile) -> tuple[str, bytes]:
        stem = feed.base.removesuffix(".json.gz")
        if self.format == "gzip":
            return feed.base, feed.gz
        if self.format == "parquet":
            return f"{stem}.parquet", _parquet(feed.table)
        return f"{stem}.json", feed.text

    async def read_all(self) -> pa.Table:
        tables = [MERGED_SCHEMA.empty_table()]
        for path in await self.store.list_under(self.root, limit=_LISTING):
            folder, _, name = path.rpartition("/")
            if name != MANIFEST_NAME or not folder.startswith("date="):
                continue
            hour = datetime.strptime(folder, "date=%Y-%m-%d/hour=%H").replace(tzinfo=UTC)
            manifest = await self.store.read_manifest(self.root, hour)
            for entry in manifest.files if manifest is not None else ():
                chunks = [c async for c in self.store.iter_file(self.root, hour, entry.name)]
                data = b"".join(chunks)
                tables.append(await anyio.to_thread.run_sync(_rows, entry, data, hour))
        return pa.concat_tables(tables)

    async def commit(self, hour: datetime, files: Sequence[FeedFile], base: Manifest) -> Manifest:
        made = {feed.base: self._file(feed) for feed in files}
        data = dict(made.values())
        sources = {name: base_name for base_name, (name, _) in made.items()}
        return await _put(self.store, self.root, hour, data, base, sources)


class DeltaMergedTable:
    """One Delta table at ``_merged_ids/<project>/``, an hour per commit."""

    def __init__(self, store: Store, location: TableLocation, project: str) -> None:
        from ..output.delta.sink import meta_project  # noqa: PLC0415 - deltalake only when used

        self.store = store
        self.location = location
        self.meta = meta_project(merged_root(project))
        self.lock = anyio.Lock()  # the run's commits take turns: one table, tiny commits

    def describe(self) -> str:
        return self.location.uri

    async def completed(self, hours: Iterable[datetime]) -> set[datetime]:
        return await self.store.completed_hours(self.meta, hours)

    async def manifest(self, hour: datetime) -> Manifest | None:
        return await self.store.read_manifest(self.meta, hour)

    async def read_all(self) -> pa.Table:
        from ..output.delta.base import open_table  # noqa: PLC0415 - deltalake only when used

        def read() -> pa.Table:
            table = open_table(self.location)
            if table is None:
                return MERGED_SCHEMA.empty_table()
            return table.to_pyarrow_table().select(MERGED_SCHEMA.names).cast(MERGED_SCHEMA)

        return await anyio.to_thread.run_sync(read)

    async def commit(self, hour: datetime, files: Sequence[FeedFile], base: Manifest) -> Manifest:
        from deltalake import DeltaTable, write_deltalake  # noqa: PLC0415
        from deltalake.exceptions import DeltaError  # noqa: PLC0415

        from ..errors import StorageError  # noqa: PLC0415
        from ..logs import log  # noqa: PLC0415 - structlog only when writing
        from ..output.delta.base import with_conflict_retries  # noqa: PLC0415
        from ..output.delta.table import delta_error_text  # noqa: PLC0415

        table = pa.concat_tables([f.table for f in files]) if files else MERGED_SCHEMA.empty_table()
        location = self.location
        when = iso_hour(hour)

        def write() -> DeltaFacts:
            def attempt() -> int:
                write_deltalake(
                    location.uri,
                    table,
                    mode="overwrite",
                    predicate=f"_export_hour = '{hour:%Y-%m-%dT%H}:00:00Z'",
                    storage_options=location.options(),
                )
                return int(DeltaTable(location.uri, storage_options=location.options()).version())

            version = with_conflict_retries(
                f"committing merged ids of hour {when}",
                attempt,
                rng=random.Random(),
                sleep=time.sleep,
                on_conflict=lambda n, why: log.warning(
                    "merged_ids.commit_conflict", hour=when, attempt=n, detail=why
                ),
            )
            return _committed(location, int(version), table.num_rows)

        try:
            async with self.lock:
                facts = await anyio.to_thread.run_sync(write)
        except (DeltaError, OSError) as exc:
            msg = f"cannot commit the merged ids of hour {when}: "
            raise StorageError(msg + delta_error_text(exc, location)) from None
        # the feed's files are in the table: the manifest lists none, its ``delta`` counts them
        return await _put(self.store, self.meta, hour, {}, replace(base, delta=facts), {})


def _committed(location: TableLocation, version: int, rows: int) -> DeltaFacts:
    """The facts of commit ``version`` (blocking): the data files its log entry adds."""
    from ..output.delta.base import log_entry  # noqa: PLC0415 - deltalake only when used

    body = log_entry(location, version) or b""
    actions = [json.loads(line) for line in body.splitlines() if line.strip()]
    added = [a["add"] for a in actions if "add" in a]
    return DeltaFacts(version, rows, len(added), sum(int(a["size"]) for a in added))
