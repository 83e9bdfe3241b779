"""Amplitude's merged-IDs feed into the ``merged_ids`` table (``[source] kind = "cloud_export"``).

When the export also holds the merged Amplitude IDs (``-<OrgID>_<yyyy-MM-dd>_<H>.json.gz``, in
the export's prefix or ``[source] merged_ids_prefix``), each run reads them beside the events,
for the same hours the events plan says are available:

- one listing of the feed per run; an hour is read when it has a file and no manifest yet
  (``--force``: again), so a rerun reads nothing;
- an hour of ``--recheck``'s window is read again only when its listed files (names, sizes,
  ETags or generations) differ from those its manifest records: Amplitude rewrote it;
- each hour's files are read whole, checked against the listed size, gunzipped, parsed
  (``schema.rows_of``) and committed at once (``store.py``), manifest last; an hour that fails
  is tried ``[extract] max_attempts`` times with backoff, then named in the run's result.
"""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import pyarrow as pa

from ..backoff import backoff_delay
from ..errors import ConfigError, StorageError
from ..extraction.results import MergedIdsResult
from ..hours import iso_hour
from ..logs import log
from ..output.manifest import ExportedObject, Manifest
from ..readback.bounded import map_bounded
from ..source.cloud_export import CloudExportSource
from .names import merged_hour_of
from .schema import MERGED_SCHEMA, rows_of
from .store import FeedFile, MergedTable

__all__ = ["MergedIdsFeed", "MergedIdsResult"]

MAX_FILE_BYTES = 1 << 30
"""A feed file is read whole (one line per merge: megabytes, not gigabytes)."""


@dataclass(frozen=True, slots=True)
class _Retry:
    attempts: int
    base_s: float
    max_s: float


@dataclass(slots=True)
class _Tally:
    hours: int = 0
    rows: int = 0
    bytes_read: int = 0
    skipped: int = 0
    changed: list[datetime] = field(default_factory=list)
    failed: dict[datetime, str] = field(default_factory=dict)


def _same(before: Sequence[ExportedObject], now: Sequence[ExportedObject]) -> bool:
    return sorted(before, key=lambda o: o.name) == sorted(now, key=lambda o: o.name)


def _parse(hour: datetime, base: str, gz: bytes) -> FeedFile:
    try:
        text = gzip.decompress(gz)
    except (OSError, EOFError, zlib.error) as exc:
        msg = f"{base} does not gunzip: {exc}"
        raise ValueError(msg) from None
    columns, extra = rows_of(text.splitlines(), hour=hour, source=base)
    return FeedFile(base, gz, text, pa.table(columns, schema=MERGED_SCHEMA), extra)


class MergedIdsFeed:
    """The feed of one export, read into one project's ``merged_ids`` table."""

    def __init__(
        self,
        source: CloudExportSource,
        table: MergedTable,
        *,
        prefix: str,
        run_id: str,
        concurrency: int,
        retry: tuple[int, float, float] = (3, 0.5, 30.0),
    ) -> None:
        self.source = source
        self.table = table
        self.prefix = prefix.strip("/")
        self.run_id = run_id
        self.concurrency = max(1, concurrency)
        self.retry = _Retry(*retry)
        self.rng = random.Random()

    def _start(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    async def listing(self) -> dict[datetime, list[ExportedObject]]:
        """The feed's files by hour (one listing of ``<prefix>/-``)."""
        start = self._start()
        by_hour: dict[datetime, list[ExportedObject]] = {}
        orgs: set[str] = set()
        for obj in await self.source.store.list(start + "-"):
            parsed = merged_hour_of(obj.name[len(start) :])
            if parsed is None:
                continue
            orgs.add(parsed[0])
            by_hour.setdefault(parsed[1], []).append(obj)
        if len(orgs) > 1:
            msg = (
                f"{self.source.store.describe()}/{start} holds merged IDs of several "
                f"organizations ({', '.join(sorted(orgs))}): give each its own merged_ids_prefix"
            )
            raise ConfigError(msg)
        return by_hour

    async def sync(
        self, hours: Sequence[datetime], *, recheck: frozenset[datetime], force: bool
    ) -> MergedIdsResult:
        """Read the feed's hours among ``hours`` that the table lacks (or that changed)."""
        listing = await self.listing()
        wanted = [h for h in hours if h in listing]
        done = set() if force else await self.table.completed(wanted)
        tally = _Tally()

        async def one(hour: datetime) -> None:
            objects = sorted(listing[hour], key=lambda o: o.name)
            changed = False
            if hour in done:
                if hour not in recheck:
                    tally.skipped += 1
                    return
                before = await self.table.manifest(hour)
                if before is not None and _same(before.exported, objects):
                    tally.skipped += 1
                    return
                changed = True
            await self._hour(hour, objects, tally, changed=changed)

        await map_bounded(wanted, one, self.concurrency)
        return MergedIdsResult(
            hours=tally.hours,
            rows=tally.rows,
            bytes_read=tally.bytes_read,
            skipped=tally.skipped,
            changed=tuple(sorted(tally.changed)),
            failed=tuple(sorted(tally.failed.items())),
        )

    async def _hour(
        self, hour: datetime, objects: list[ExportedObject], tally: _Tally, *, changed: bool
    ) -> None:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                manifest = await self._read(hour, objects, attempt, tally)
            except (StorageError, ValueError) as exc:
                if attempt == self.retry.attempts:
                    tally.failed[hour] = str(exc)
                    log.error("merged_ids.failed", hour=iso_hour(hour), error=str(exc))
                    return
                log.warning("merged_ids.retry", hour=iso_hour(hour), error=str(exc))
                delay = backoff_delay(
                    attempt, base_s=self.retry.base_s, max_s=self.retry.max_s, rng=self.rng
                )
                await anyio.sleep(delay)
                continue
            tally.hours += 1
            tally.rows += manifest.events
            if changed:
                tally.changed.append(hour)
            log.info(
                "merged_ids.hour",
                hour=iso_hour(hour),
                rows=manifest.events,
                changed=changed,
                where=self.table.describe(),
            )
            return

    async def _read(
        self, hour: datetime, objects: list[ExportedObject], attempt: int, tally: _Tally
    ) -> Manifest:
        start = self._start()
        files = []
        for obj in objects:
            if obj.size > MAX_FILE_BYTES:
                msg = f"{obj.name} is over {MAX_FILE_BYTES >> 20} MiB: not a merged-IDs file"
                raise ValueError(msg)
            parts = []
            async for chunk in self.source.store.read(obj.name):
                parts.append(chunk)
                tally.bytes_read += len(chunk)
            gz = b"".join(parts)
            if len(gz) != obj.size:
                msg = f"{obj.name} changed while it was read ({len(gz)} bytes, {obj.size} listed)"
                raise StorageError(msg)
            base = obj.name[len(start) :]
            files.append(await anyio.to_thread.run_sync(_parse, hour, base, gz))
        base_manifest = Manifest(
            hour=hour,
            status="complete",
            files=(),
            attempts=attempt,
            extracted_at=datetime.now(UTC),
            run_id=self.run_id,
            exported=tuple(objects),
            received_bytes=sum(len(f.gz) for f in files),
            ndjson_bytes=sum(len(f.text) for f in files),
        )
        return await self.table.commit(hour, files, base_manifest)
