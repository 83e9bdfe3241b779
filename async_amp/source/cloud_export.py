"""The second source: Amplitude's recurring cloud export, already in a folder or a bucket.

Amplitude writes each upload hour's events as ``<projectID>_<yyyy-MM-dd>_<H>#<partition>.json.gz``
files (the same gzip members the Export API zips) under a prefix of an S3 bucket, a GCS bucket
or an Azure container. ``[source] kind = "cloud_export"`` reads them instead of asking the
Export API: each hour's files go through ``archive.process_members`` (vetted, gunzipped,
counted, hashed, written or converted) into the same staging, judge and commit as an
archive's members, so resume, ``--recheck``, ``status``, ``verify`` and every format work the
same. The manifest also records each file read (name, size, ETag or generation).

- An hour is read only once the export has moved past it: a later hour's file exists, or
  ``settle_minutes`` passed since the hour ended (``frontier``).
- Files that are not this project's export (another project ID, another name) are reported
  once per run (``export.foreign``) and never read.
- An hour with no file is ``empty``, as the Export API's 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from ..errors import ConfigError, StorageError
from ..hours import MemberName, iso_hour, parse_hour_file
from ..logs import log
from ..merged.names import merged_hour_of
from ..output.manifest import ExportedObject
from .archive import ArchiveLimits, MemberSink, process_members

__all__ = ["CloudExportSource", "ExportStore", "LocalExportStore", "export_name", "hour_of"]

READ_CHUNK = 1024 * 1024


def export_name(project_id: str, hour: datetime, partition: int) -> str:
    """``187520_2026-11-01_5#0.json.gz``: how Amplitude names an hour's file."""
    return f"{project_id}_{hour:%Y-%m-%d}_{hour.hour}#{partition}.json.gz"


def hour_of(base: str) -> tuple[str, datetime] | None:
    """(project ID, hour) of an export file's base name; ``None`` when it is not one."""
    try:
        parsed = parse_hour_file(base)
    except ValueError:
        return None
    return (parsed.owner, parsed.hour) if parsed.is_events else None


class ExportStore(Protocol):
    """Where the export lies: list names under a prefix, read one file's bytes."""

    def describe(self) -> str: ...

    async def list(self, prefix: str) -> list[ExportedObject]: ...

    def read(self, name: str) -> AsyncIterator[bytes]: ...

    async def put(self, name: str, data: bytes) -> None:
        """Write one file whole (the simulator lays an export out with it)."""
        ...

    async def aclose(self) -> None: ...


class LocalExportStore:
    """A folder holding the export (a synced copy, a mounted bucket, the simulator's)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    def describe(self) -> str:
        return str(self.root)

    async def list(self, prefix: str) -> list[ExportedObject]:
        def scan() -> list[ExportedObject]:
            if not self.root.is_dir():
                msg = f"[source] dir {self.root} is not a folder"
                raise ConfigError(msg)
            found = []
            for path in sorted(self.root.rglob("*")):
                name = path.relative_to(self.root).as_posix()
                if path.is_file() and name.startswith(prefix):
                    stat = path.stat()
                    found.append(ExportedObject(name, stat.st_size, f"{stat.st_mtime_ns}"))
            return found

        return await anyio.to_thread.run_sync(scan)

    async def read(self, name: str) -> AsyncIterator[bytes]:
        try:
            async with await anyio.open_file(self.root / name, "rb") as file:
                while chunk := await file.read(READ_CHUNK):
                    yield chunk
        except OSError as exc:
            msg = f"cannot read {self.root / name}: {exc.strerror}"
            raise StorageError(msg) from exc

    async def put(self, name: str, data: bytes) -> None:
        def write() -> None:
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f".{path.name}.part")
            part.write_bytes(data)
            part.replace(path)  # a reader lists the whole file or none

        try:
            await anyio.to_thread.run_sync(write)
        except OSError as exc:
            msg = f"cannot write {self.root / name}: {exc.strerror}"
            raise StorageError(msg) from exc

    async def aclose(self) -> None:
        return None


@dataclass(slots=True)
class _Listing:
    by_hour: dict[datetime, list[ExportedObject]]
    foreign: list[str]
    project_ids: set[str]


class CloudExportSource:
    """Reads the export's files of an hour as one attempt (no HTTP request to Amplitude)."""

    def __init__(
        self,
        store: ExportStore,
        *,
        prefix: str,
        project_id: str | None,
        settle: timedelta,
        merged_prefix: str | None = None,
    ) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        # the merged-IDs feed's own folder, when it lies inside the export's: not foreign
        self.merged_prefix = f"{merged_prefix.strip('/')}/" if merged_prefix else None
        self.project_id = project_id
        self.settle = settle
        self.reported = False
        self.closed = False

    def _start(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    async def _list(self, start: str) -> _Listing:
        listing = _Listing({}, [], set())
        for obj in await self.store.list(start):
            base = obj.name[len(self._start()) :]
            parsed = hour_of(base) if "/" not in base else None
            merged = self.merged_prefix is not None and obj.name.startswith(self.merged_prefix)
            if parsed is None and (merged or merged_hour_of(base) is not None):
                continue  # the merged-IDs feed: read into merged_ids (merged/feed.py)
            if parsed is None or (self.project_id and parsed[0] != self.project_id):
                listing.foreign.append(obj.name)
                continue
            listing.project_ids.add(parsed[0])
            listing.by_hour.setdefault(parsed[1], []).append(obj)
        return listing

    async def frontier(self, now: datetime) -> datetime:
        """The time the plan treats as "now": hours before the newest hour the export holds
        are done; the newest is done once ``settle`` passed after it ended."""
        listing = await self._list(self._start())
        if not self.project_id:
            if len(listing.project_ids) > 1:
                ids = ", ".join(sorted(listing.project_ids))
                msg = (
                    f"{self.store.describe()} holds the export of several projects ({ids}): "
                    "set [source] project_id"
                )
                raise ConfigError(msg)
            self.project_id = next(iter(listing.project_ids), None)
            if listing.project_ids:
                listing = await self._list(self._start())
        if listing.foreign and not self.reported:
            self.reported = True
            log.warning(
                "export.foreign",
                files=len(listing.foreign),
                detail=f"not this project's export, left alone: {', '.join(listing.foreign[:5])}",
            )
        newest = max(listing.by_hour, default=None)
        settled = now - self.settle
        if newest is None:
            return settled
        return min(now, max(newest, settled))

    async def __aenter__(self) -> CloudExportSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the store's client (once; the run also calls it when planning failed)."""
        if not self.closed:
            self.closed = True
            await self.store.aclose()

    async def objects(self, first: datetime, last: datetime) -> list[ExportedObject]:
        """The export's files of the hours ``first..last``, one listing per hour."""
        found: list[ExportedObject] = []
        hour = first
        while hour <= last:
            if self.project_id:
                start = self._start() + f"{self.project_id}_{hour:%Y-%m-%d}_{hour.hour}#"
                listing = await self._list(start)
                found.extend(listing.by_hour.get(hour, ()))
            hour += timedelta(hours=1)
        return found

    async def fetch(
        self,
        open_member: Callable[[MemberName, str], MemberSink],
        first: datetime,
        last: datetime,
        *,
        keep_gzip: bool,
        limits: ArchiveLimits,
        threads: anyio.CapacityLimiter,
        on_bytes: Callable[[int], None],
    ) -> tuple[list[Any], list[ExportedObject]]:
        """Every file of ``first..last`` through ``process_members`` in a worker thread;
        ``([], [])`` when the hours have none (empty, as the Export API's 404)."""
        objects = await self.objects(first, last)
        if not objects:
            return [], []
        start = self._start()

        def chunks_of(obj: ExportedObject) -> Iterator[bytes]:
            stream = self.store.read(obj.name).__aiter__()

            async def step() -> bytes | None:
                try:
                    return await stream.__anext__()
                except StopAsyncIteration:
                    return None

            got = 0
            while (chunk := anyio.from_thread.run(step)) is not None:
                got += len(chunk)
                on_bytes(len(chunk))
                yield chunk
            if got != obj.size:
                msg = f"{obj.name} changed while it was read ({got} bytes, {obj.size} listed)"
                raise StorageError(msg)

        def members() -> Iterator[tuple[str, Iterator[bytes]]]:
            for obj in objects:
                base = obj.name[len(start) :]
                yield f"{self.project_id}/{base}", chunks_of(obj)

        def decode() -> list[Any]:
            return process_members(
                members(),
                open_member,
                first_hour=first,
                last_hour=last,
                keep_gzip=keep_gzip,
                limits=limits,
            )

        processed = await anyio.to_thread.run_sync(decode, limiter=threads)
        return processed, objects

    def describe(self) -> str:
        where = self.store.describe()
        return f"{where}/{self.prefix}" if self.prefix else where


def window_text(first: datetime, last: datetime) -> str:
    return iso_hour(first) if first == last else f"{iso_hour(first)}..{iso_hour(last)}"
