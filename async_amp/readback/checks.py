"""``verify``: every stored file of every hour with a manifest read again and compared with it."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import anyio

from ..config.values import is_plain_name
from ..errors import ArchiveError, StorageError
from ..hours import hour_range, iso_hour
from ..output.manifest import MANIFEST_NAME, QUARANTINE_NAME, FileEntry, Manifest, hour_folder
from ..output.stores.base import Sink
from ..source.archive import GzipDecoder, count_lines
from .bounded import closing, map_bounded
from .range import RangeReport

ProblemKind = Literal[
    "manifest", "missing", "extra", "size", "sha256", "events", "corrupt", "unreadable"
]


MANIFEST_READ_LIMIT = 64 * 1024 * 1024
GZIP_SLICE = 16 * 1024  # gunzip input per call: bounds the decompressed bytes held at once
PARQUET_TAIL = 8 * 1024 * 1024  # the end of a Parquet file kept to read its footer


# --- verify -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that does not match: a file, or the manifest itself."""

    hour: datetime
    kind: ProblemKind
    file: str
    detail: str
    expected: int | str | None = None
    actual: int | str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "hour": iso_hour(self.hour),
            "kind": self.kind,
            "file": self.file,
            "detail": self.detail,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(frozen=True, slots=True)
class HourCheck:
    """What ``verify`` found in one hour; ``no_manifest`` hours are status's business."""

    hour: datetime
    state: Literal["ok", "bad", "no_manifest"]
    files: int = 0
    bytes: int = 0
    events: int = 0
    problems: tuple[Problem, ...] = ()
    quarantined: int = 0  # lines kept verbatim in the hour's quarantine file (dead letters)
    quarantine: str = ""  # where that file is

    def to_json(self) -> dict[str, Any]:
        out = {
            "hour": iso_hour(self.hour),
            "state": self.state,
            "files": self.files,
            "bytes": self.bytes,
            "events": self.events,
            "problems": [p.to_json() for p in self.problems],
        }
        if self.quarantined:
            out |= {"quarantined": self.quarantined, "quarantine": self.quarantine}
        return out


def dead_letters(manifest: Manifest, where: str, folder: str) -> dict[str, Any]:
    """``HourCheck``'s ``quarantined`` and ``quarantine`` for an hour committed with
    ``manifest`` whose files are in ``<where>/<folder>``."""
    if not manifest.quarantined:
        return {}
    return {
        "quarantined": manifest.quarantined,
        "quarantine": f"{where}/{folder}/{QUARANTINE_NAME}",
    }


@dataclass(frozen=True, slots=True)
class VerifyReport(RangeReport):
    hours: tuple[HourCheck, ...]
    seconds: float

    def counted(self) -> tuple[HourCheck, ...]:
        return self.hours

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(p for h in self.hours for p in h.problems)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def checked(self) -> int:
        return sum(1 for h in self.hours if h.state != "no_manifest")

    @property
    def without_manifest(self) -> int:
        return sum(1 for h in self.hours if h.state == "no_manifest")

    @property
    def bad_hours(self) -> list[datetime]:
        return [h.hour for h in self.hours if h.problems]

    @property
    def quarantined(self) -> tuple[HourCheck, ...]:
        """The hours with lines kept in their quarantine file instead of becoming rows."""
        return tuple(h for h in self.hours if h.quarantined)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.head_json(),
            "ok": self.ok,
            "hours": len(self.hours),
            "hours_checked": self.checked,
            "hours_without_manifest": self.without_manifest,
            "files_checked": self.files,
            "bytes_read": self.bytes,
            "events_counted": self.events,
            "seconds": round(self.seconds, 3),
            "problem_count": len(self.problems),
            "bad_hours": [iso_hour(h) for h in self.bad_hours],
            "problems": [p.to_json() for p in self.problems],
            "quarantined_lines": sum(h.quarantined for h in self.hours),
            "quarantined": [
                {"hour": iso_hour(h.hour), "lines": h.quarantined, "file": h.quarantine}
                for h in self.quarantined
            ],
        }


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What a stored file really holds."""

    bytes: int
    sha256: str
    events: int
    error: str = ""  # a kept .json.gz that does not gunzip, a Parquet file without a footer


class FileCheck:
    """Size, sha256 and event count of one stored file, fed chunk by chunk.

    Counted exactly as the extractor counted them when it wrote the file: size and hash are of
    the stored bytes; events are NDJSON lines (a last line without a newline counts). For a
    kept ``.json.gz`` (``gzip=True``) the lines are those of the decompressed data; a gzip
    stream that is corrupt or cut short is reported in ``FileFacts.error``. For a ``.parquet``
    (``parquet=True``) events are the rows its footer declares (only the file's last bytes are
    kept); a file whose footer cannot be read is reported in ``FileFacts.error``. Blocking and
    CPU bound: call it from a worker thread. The result does not depend on how the bytes are
    split.
    """

    __slots__ = ("_decoder", "_digest", "_error", "_last", "_lines", "_size", "_tail")

    def __init__(self, *, gzip: bool = False, parquet: bool = False) -> None:
        self._digest = hashlib.sha256()
        self._size = 0
        self._lines = 0
        self._last = b"\n"
        self._decoder = GzipDecoder() if gzip else None
        self._error = ""
        self._tail: bytearray | None = bytearray() if parquet else None

    def update(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self._size += len(chunk)
        if self._tail is not None:
            self._tail += chunk[-PARQUET_TAIL:]
            if len(self._tail) > 2 * PARQUET_TAIL:
                del self._tail[:-PARQUET_TAIL]
            return
        if self._decoder is None:
            self._text(chunk)
            return
        if self._error:
            return
        try:
            for start in range(0, len(chunk), GZIP_SLICE):
                self._text(self._decoder.decode(chunk[start : start + GZIP_SLICE]))
        except ArchiveError as exc:
            self._error = str(exc)

    def _text(self, text: bytes) -> None:
        if text:
            self._lines += count_lines(text)
            self._last = text[-1:]

    def finish(self) -> FileFacts:
        if self._tail is not None:
            from ..output.columnar.convert import parquet_rows  # noqa: PLC0415 - pyarrow only for Parquet

            try:
                rows = parquet_rows(bytes(self._tail[-PARQUET_TAIL:]))
            except ValueError as exc:
                return FileFacts(self._size, self._digest.hexdigest(), 0, str(exc))
            return FileFacts(self._size, self._digest.hexdigest(), rows)
        if self._decoder is not None and not self._error:
            try:
                self._decoder.flush()
            except ArchiveError as exc:
                self._error = str(exc)
        lines = self._lines + (0 if self._last == b"\n" else 1)
        return FileFacts(self._size, self._digest.hexdigest(), lines, self._error)


async def verify(
    sink: Sink,
    project: str,
    first: datetime,
    last: datetime,
    *,
    concurrency: int = 4,
) -> VerifyReport:
    """Check every stored hour from ``first`` to ``last`` against its manifest.

    One ``completed_hours`` call finds the manifests; then ``concurrency`` hours are checked
    at once, each reading its manifest once and its files one after the other. Hours without
    a manifest are not checked, but files found in them are reported as extra: a reader
    globbing the folders would pick them up.
    """
    started = time.monotonic()
    threads = anyio.CapacityLimiter(concurrency)
    hours = list(hour_range(first, last))
    with_manifest = await sink.completed_hours(project, hours)

    async def check(hour: datetime) -> HourCheck:
        return await _verify_hour(sink, project, hour, hour in with_manifest, threads)

    found = await map_bounded(hours, check, concurrency)
    return VerifyReport(
        project=project,
        where=sink.describe(),
        first=first,
        last=last,
        hours=tuple(found[h] for h in hours),
        seconds=time.monotonic() - started,
    )


def _plain_name(name: str) -> bool:
    return is_plain_name(name) and name != MANIFEST_NAME


async def _verify_hour(
    sink: Sink,
    project: str,
    hour: datetime,
    has_manifest: bool,
    threads: anyio.CapacityLimiter,
) -> HourCheck:
    problems: list[Problem] = []

    def problem(
        kind: ProblemKind, file: str, detail: str, exp: Any = None, act: Any = None
    ) -> None:
        problems.append(Problem(hour, kind, file, detail, exp, act))

    manifest: Manifest | None = None
    if has_manifest:
        try:
            raw = await read_all(sink, project, hour, MANIFEST_NAME)
            manifest = Manifest.loads(raw)
        except (ValueError, StorageError) as exc:
            problem("manifest", MANIFEST_NAME, f"the manifest cannot be read: {exc}")
            return HourCheck(hour, "bad", problems=tuple(problems))
        _check_manifest(hour, manifest, json.loads(raw), problem)
    try:
        names = await sink.list_files(project, hour)
    except StorageError as exc:
        problem("unreadable", "", f"the hour's files cannot be listed: {exc}")
        return HourCheck(hour, "bad", problems=tuple(problems))
    if manifest is None:
        for name in names:
            problem(
                "extra",
                name,
                "stored in an hour that has no manifest (left by an unfinished commit?): "
                "re-extract the hour or delete the file",
            )
        return HourCheck(hour, "bad" if problems else "no_manifest", problems=tuple(problems))
    stored = set(names)
    listed: set[str] = set()
    files = size = events = 0
    for entry in manifest.files:
        if entry.name in listed:
            problem("manifest", entry.name, "the manifest lists this file twice")
            continue
        listed.add(entry.name)
        if not _plain_name(entry.name):
            problem("manifest", entry.name, "the manifest names a file outside the hour's folder")
            continue
        if entry.name not in stored:
            problem("missing", entry.name, "listed in the manifest but not stored")
            continue
        try:
            facts = await _read_facts(sink, project, hour, entry, threads)
        except StorageError as exc:
            problem("unreadable", entry.name, str(exc))
            continue
        files += 1
        size += facts.bytes
        events += facts.events
        _compare(entry, facts, problem)
    for name in sorted(stored - listed):
        problem("extra", name, "stored but not listed in the manifest")
    return HourCheck(
        hour,
        "bad" if problems else "ok",
        files=files,
        bytes=size,
        events=events,
        problems=tuple(problems),
        **dead_letters(manifest, sink.describe(), hour_folder(project, hour)),
    )


def _check_manifest(
    hour: datetime, manifest: Manifest, raw: Any, problem: Callable[..., None]
) -> None:
    """The manifest agrees with itself and with the folder it sits in."""
    if manifest.hour != hour:
        problem(
            "manifest",
            MANIFEST_NAME,
            "the manifest is for another hour",
            iso_hour(hour),
            iso_hour(manifest.hour),
        )
    if manifest.status == "complete" and not manifest.files:
        problem("manifest", MANIFEST_NAME, "status 'complete' but no files are listed")
    elif manifest.status == "empty" and manifest.files:
        problem("manifest", MANIFEST_NAME, "status 'empty' but files are listed")
    elif manifest.status not in ("complete", "empty"):
        problem("manifest", MANIFEST_NAME, f"unknown status {manifest.status!r}")
    table = manifest.table
    if table is not None:  # a converted hour: its rows are its members' lines, less dropped
        lines = sum(source.lines for source in table.sources)
        if manifest.events + table.dropped_duplicates != lines:
            problem(
                "manifest",
                MANIFEST_NAME,
                "its rows (plus dropped duplicates) are not its source members' lines",
                lines,
                manifest.events + table.dropped_duplicates,
            )
    # The totals at the top are what people and dashboards read; Manifest keeps only the files.
    for key, total in (("events", manifest.events), ("bytes", manifest.size)):
        if key in raw and raw[key] != total:
            problem(
                "manifest",
                MANIFEST_NAME,
                f"its total {key!r} is not the sum of its files",
                total,
                raw[key],
            )


async def read_all(sink: Sink, project: str, hour: datetime, name: str) -> bytes:
    """One small stored file whole (a manifest, a commit record); ``ValueError`` past 64 MiB."""
    parts: list[bytes] = []
    size = 0
    async with closing(sink.iter_file(project, hour, name)) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > MANIFEST_READ_LIMIT:
                msg = f"{name} is over {MANIFEST_READ_LIMIT // 2**20} MiB: not a manifest"
                raise ValueError(msg)
            parts.append(chunk)
    return b"".join(parts)


async def _read_facts(
    sink: Sink, project: str, hour: datetime, entry: FileEntry, threads: anyio.CapacityLimiter
) -> FileFacts:
    check = FileCheck(gzip=entry.name.endswith(".gz"), parquet=entry.name.endswith(".parquet"))
    async with closing(sink.iter_file(project, hour, entry.name)) as chunks:
        async for chunk in chunks:
            await anyio.to_thread.run_sync(check.update, chunk, limiter=threads)
    return await anyio.to_thread.run_sync(check.finish, limiter=threads)


def _compare(entry: FileEntry, facts: FileFacts, problem: Callable[..., None]) -> None:
    if facts.bytes != entry.bytes:
        problem("size", entry.name, "its size differs from the manifest", entry.bytes, facts.bytes)
    if facts.sha256 != entry.sha256:
        problem(
            "sha256", entry.name, "its sha256 differs from the manifest", entry.sha256, facts.sha256
        )
    if facts.error:
        what = (
            "is not a readable Parquet file"
            if entry.name.endswith(".parquet")
            else "does not gunzip"
        )
        problem("corrupt", entry.name, f"it {what}: {facts.error}")
    elif facts.events != entry.events:
        problem(
            "events",
            entry.name,
            "its event count (lines, or a Parquet file's rows) differs from the manifest",
            entry.events,
            facts.events,
        )
