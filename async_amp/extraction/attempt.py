"""One attempt at a window of hours: one request, its body through the decoder thread, into
staging.

The body streams from the HTTP client through a memory stream (``CHUNK_QUEUE`` chunks
buffered) to one worker thread per request that unzips, gunzips, hashes and writes it
(``archive.process_archive``) into one staging area per hour (``Sink.stage``). Nothing is
committed here: the caller judges each hour and commits or discards its staging. On any error
every staging is discarded and the error propagates (``AttemptError`` and ``StorageError`` mean
"retry"; a ``UserError`` stops the run).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import anyio

from ..errors import ArchiveError, AttemptError, storage_failure
from ..hours import MemberName
from ..output.manifest import ExportedObject
from ..output.stores.base import HourStaging, Sink
from ..source.archive import ArchiveLimits, MemberSink, ProcessedMember, process_archive
from ..source.cloud_export import CloudExportSource
from ..source.export_api import ExportSource

__all__ = ["CHUNK_QUEUE", "Fetched", "Stagings", "fetch_window"]

# Chunks of up to 1 MiB buffered between the socket and the decoder: none, the pump hands each
# chunk straight to the decoder thread (the socket and aiohttp buffer meanwhile). 2 held ~1 MiB
# more per request in flight (-4 to -8 MiB peak RSS at c=4) for no measured speed.
CHUNK_QUEUE = 0


@dataclass(slots=True)
class Stagings:
    """The staging areas one attempt opened, one per hour that had data."""

    sink: Sink
    project: str
    by_hour: dict[datetime, HourStaging] = field(default_factory=dict)

    def open_member(self, member: MemberName, file_name: str) -> MemberSink:
        """Where a member's bytes go (called from the decoder thread)."""
        staging = self.by_hour.get(member.hour)
        if staging is None:
            staging = self.by_hour[member.hour] = self.sink.stage(self.project, member.hour)
        return staging.open_member(member, file_name)

    def take(self, hour: datetime) -> HourStaging | None:
        """The hour's staging, now the caller's to commit or discard."""
        return self.by_hour.pop(hour, None)

    async def discard(self) -> None:
        """Throw away every staging not yet taken."""
        for staging in self.by_hour.values():
            await staging.discard()
        self.by_hour.clear()


@dataclass(frozen=True, slots=True)
class Fetched:
    """A clean response: its members (``None``: a 404, no data for the window) and its size."""

    members: tuple[ProcessedMember, ...] | None
    zip_bytes: int
    exported: tuple[ExportedObject, ...] = ()  # the cloud-export files read (none: the API)


@dataclass(slots=True)
class _Body:
    """What the pump saw of the response body."""

    received: int = 0
    error: AttemptError | None = None


async def fetch_window(
    source: ExportSource,
    stagings: Stagings,
    first: datetime,
    last: datetime,
    *,
    keep_gzip: bool,
    limits: ArchiveLimits,
    threads: anyio.CapacityLimiter,
    on_bytes: Callable[[int], None] = lambda _: None,
) -> Fetched:
    """One request for ``first..last``, decoded into ``stagings``. Raises on a bad attempt."""
    if isinstance(source, CloudExportSource):  # the export's files, read from the store
        members, objects = await source.fetch(
            stagings.open_member,
            first,
            last,
            keep_gzip=keep_gzip,
            limits=limits,
            threads=threads,
            on_bytes=on_bytes,
        )
        if not objects:
            return Fetched(members=None, zip_bytes=0)
        return Fetched(
            members=tuple(members), zip_bytes=sum(o.size for o in objects), exported=tuple(objects)
        )
    async with source.export(first, last) as body:
        if body is None:
            return Fetched(members=None, zip_bytes=0)
        seen = _Body()
        members = await _decode(
            body, stagings, first, last, seen, keep_gzip, limits, threads, on_bytes
        )
    if not members:
        msg = "a 200 with an empty ZIP (Amplitude answers 404 when there is no data)"
        raise ArchiveError(msg)
    return Fetched(members=tuple(members), zip_bytes=seen.received)


async def _decode(
    body: AsyncIterator[bytes],
    stagings: Stagings,
    first: datetime,
    last: datetime,
    seen: _Body,
    keep_gzip: bool,
    limits: ArchiveLimits,
    threads: anyio.CapacityLimiter,
    on_bytes: Callable[[int], None],
) -> list[ProcessedMember]:
    send, receive = anyio.create_memory_object_stream[bytes](CHUNK_QUEUE)

    async def pump() -> None:
        try:
            async with send:
                async for chunk in body:
                    seen.received += len(chunk)
                    on_bytes(len(chunk))
                    await send.send(chunk)
        except anyio.BrokenResourceError:
            pass  # the decoder stopped early; its own error explains why
        except AttemptError as exc:
            seen.error = exc

    def chunks() -> Iterator[bytes]:
        while True:
            try:
                yield anyio.from_thread.run(receive.receive)
            except anyio.EndOfStream:
                return

    def decode() -> list[ProcessedMember]:
        with receive:
            return process_archive(
                chunks(),
                stagings.open_member,
                first_hour=first,
                last_hour=last,
                keep_gzip=keep_gzip,
                limits=limits,
            )

    failure: Exception | None = None
    members: list[ProcessedMember] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            try:
                members = await anyio.to_thread.run_sync(decode, limiter=threads)
            except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                failure = exc
                tg.cancel_scope.cancel()
    finally:
        receive.close()  # cancelled before the decoder thread started: it never closed it
    if seen.error is not None and (failure is None or isinstance(failure, ArchiveError)):
        raise seen.error  # the body broke off: that, not the truncation, is the cause
    if failure is not None:
        stored = storage_failure(failure, stagings.sink.describe())
        if stored is not None:  # a full disk under a spool or a Parquet writer
            raise stored from failure
        raise failure
    return members
