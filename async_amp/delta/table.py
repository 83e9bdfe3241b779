"""One Delta table per project, written with delta-rs (``deltalake``): an hour per transaction.

The table is partitioned by ``date`` (the export hour's UTC day) and ``hour`` (0-23), so each
hour is one partition, and is committed by one predicate overwrite of it,
``date = 'D' AND hour = H``: in every snapshot an hour is either absent, or there whole, once.

Hour partitions are what makes many writers cheap: Delta's conflict check compares a
commit's read predicate with the *partitions* concurrent commits touched (not with file
statistics; delta-io/delta#7356), so commits of different hours never conflict, while with
``date`` alone every pair of hours of one day being committed at once does (measured: 8
threads of one run conflicted on a third of their commits). The price: a file never spans
two partitions, so ``compact`` merges the files *within* each hour of a day (several
writes, or rewritten hours) and vacuums, but cannot make one file of 24 hours.

Concurrent writers (threads of one run, ``--shard`` workers, overlapping runs): delta-rs
re-bases a commit on top of concurrent commits to *other* hours by itself; two commits of the
*same* hour conflict (``CommitFailedError``: the second one read a snapshot that no longer
holds). Then the whole write is redone on the new snapshot, a bounded number of times with
jittered exponential backoff, so the last writer wins and the hour is still there once.

Timestamps are ``timestamp[us, tz=UTC]``: with them the table stays at protocol reader 1 /
writer 2, which Synapse serverless reads (tz-naive ones would need ``timestampNtz``, 3 / 7).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

__all__ = [
    "COMMIT_ATTEMPTS",
    "PARTITION_BY",
    "CommitConflictError",
    "CompactResult",
    "HourFacts",
    "TableLocation",
    "compact_day",
    "hour_bytes",
    "hour_facts",
    "hour_predicate",
    "open_table",
    "replace_hour",
    "with_partition_columns",
]

PARTITION_BY = ("date", "hour")
COMMIT_ATTEMPTS = 12
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
METADATA_PREFIX = "async_amp."
_WRITES = threading.BoundedSemaphore(2)
"""Delta writes at once in this process: delta-rs holds about 1.7x an hour's NDJSON size in
memory while it writes the hour (measured: +175 MB for a 108 MB hour). Two at a time (the
cores of this kind of machine; a write is CPU-bound Parquet encoding) bound that to two
hours' worth, however high ``concurrency`` is; the other hours still download and convert."""


class CommitConflictError(RuntimeError):
    """Every attempt at a commit met a concurrent commit of the same hour (or day, compacting)."""


@dataclass(frozen=True, slots=True)
class TableLocation:
    """Where a table lives: a local path or an ``az://``/``abfss://``/``s3://`` URI."""

    uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    refresh: Callable[[], Mapping[str, str]] | None = field(default=None, repr=False, compare=False)

    def options(self) -> dict[str, str] | None:
        """The storage options for one call (a fresh bearer token when the location has one)."""
        opts = dict(self.storage_options)
        if self.refresh is not None:
            opts.update(self.refresh())
        return opts or None

    def scrub(self, text: str) -> str:
        """``text`` with every credential of this location replaced by ``***``."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def hour_predicate(hour: datetime) -> str:
    """The SQL predicate selecting exactly one export hour's rows."""
    return f"date = '{hour:%Y-%m-%d}' AND hour = {hour.hour}"


def with_partition_columns(batch: pa.RecordBatch, hour: datetime) -> pa.RecordBatch:
    """``batch`` with the ``date`` and ``hour`` columns of its export hour appended."""
    n = batch.num_rows
    return batch.append_column(
        pa.field("date", pa.date32(), nullable=False), pa.array([hour.date()] * n, pa.date32())
    ).append_column(
        pa.field("hour", pa.int32(), nullable=False), pa.array([hour.hour] * n, pa.int32())
    )


def open_table(location: TableLocation, version: int | None = None) -> DeltaTable | None:
    """The table's latest snapshot (or ``version``), ``None`` when there is no table yet."""
    try:
        table = DeltaTable(location.uri, version=version, storage_options=location.options())
    except TableNotFoundError:
        return None
    # a log folder whose first commit is still being written (another writer creating the
    # table right now) opens as version -1: no table yet either
    return table if table.version() >= 0 else None


def _backoff(attempt: int, rng: random.Random) -> float:
    return rng.uniform(0, min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt))


def _with_conflict_retries(
    what: str,
    action: Callable[[], Any],
    *,
    rng: random.Random,
    sleep: Callable[[float], None],
    on_conflict: Callable[[int, str], None] | None,
) -> Any:
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            return action()
        except CommitFailedError as exc:
            if attempt == COMMIT_ATTEMPTS - 1:
                msg = f"{what}: {COMMIT_ATTEMPTS} commits in a row met concurrent commits ({exc})"
                raise CommitConflictError(msg) from exc
            if on_conflict is not None:
                on_conflict(attempt + 1, str(exc).splitlines()[0])
            sleep(_backoff(attempt, rng))
    raise AssertionError  # pragma: no cover - the loop returns or raises


def replace_hour(
    location: TableLocation,
    hour: datetime,
    data: Callable[[], pa.RecordBatchReader],
    *,
    metadata: Mapping[str, Any],
    name: str | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_conflict: Callable[[int, str], None] | None = None,
) -> int:
    """Replace ``hour``'s rows by ``data()`` in one commit; return the committed version.

    ``data`` is called once per attempt (a conflict redoes the whole write on the new
    snapshot). ``metadata`` goes into the commit's ``commitInfo`` under ``async_amp.*`` keys.
    Blocking: run it in a worker thread. Raises ``CommitConflictError`` when every attempt
    conflicted, ``DeltaError``/``OSError`` from delta-rs for anything else.
    """
    custom = {f"{METADATA_PREFIX}{k}": v for k, v in metadata.items()}

    def attempt() -> int:
        with _WRITES:
            return _write(location, hour, data(), custom, name)

    return int(
        _with_conflict_retries(
            f"committing hour {hour:%Y-%m-%dT%H}",
            attempt,
            rng=rng or random.Random(),
            sleep=sleep,
            on_conflict=on_conflict,
        )
    )


def _write(
    location: TableLocation,
    hour: datetime,
    rows: pa.RecordBatchReader,
    custom: Mapping[str, Any],
    name: str | None,
) -> int:
    """One attempt: the predicate overwrite, and the version it committed."""
    table = open_table(location)
    write_deltalake(
        table if table is not None else location.uri,
        rows,
        mode="overwrite",
        partition_by=list(PARTITION_BY),
        predicate=hour_predicate(hour),
        storage_options=location.options(),
        name=name,
        commit_properties=CommitProperties(custom_metadata=dict(custom)),
    )
    if table is not None and table.version() >= 0:
        return table.version()  # delta-rs moves the object to the version it committed
    return _committed_version(location, custom)


def _committed_version(location: TableLocation, custom: Mapping[str, Any]) -> int:
    """The version of the commit carrying ``custom`` (the first commit of a new table: the
    write was given a URI, not a table object that would know)."""
    for _ in range(20):
        table = open_table(location)
        for entry in table.history(50) if table is not None else ():
            if int(entry.get("version", -1)) >= 0 and all(
                entry.get(k) == v for k, v in custom.items()
            ):
                return int(entry["version"])
        time.sleep(0.05)  # a table still being created by another writer: look again
    msg = f"cannot find the commit just made in {location.uri}"
    raise CommitConflictError(msg)


def hour_bytes(location: TableLocation, hour: datetime, version: int) -> int:
    """The size of the data files holding ``hour`` in ``version`` of the table."""
    table = open_table(location, version)
    if table is None:
        return 0
    actions = pa.table(table.get_add_actions(flatten=True))
    mine = pc.and_(
        pc.equal(actions["partition.date"], pa.scalar(hour.date(), pa.date32())),
        pc.equal(actions["partition.hour"], pa.scalar(hour.hour, pa.int32())),
    )
    return int(pc.sum(actions.filter(mine)["size_bytes"]).as_py() or 0)


@dataclass(frozen=True, slots=True)
class HourFacts:
    """What the snapshot holds for one hour: rows per source member, and a digest of uuids."""

    rows: int
    by_source: Mapping[str, int]
    uuid_sha256: str


def uuid_digest(uuids: Iterable[str | None]) -> str:
    """sha256 over the sorted uuids, one per line: the same rows in any order and any files."""
    import hashlib  # noqa: PLC0415 - only verify and commit need it

    digest = hashlib.sha256()
    for value in sorted(u or "" for u in uuids):
        digest.update(value.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def facts_of(table: pa.Table) -> HourFacts:
    """``HourFacts`` of rows holding ``uuid`` and ``_source_file``."""
    counts = table.group_by("_source_file").aggregate([("_source_file", "count")])
    by_source = dict(
        zip(
            counts["_source_file"].to_pylist(),
            counts["_source_file_count"].to_pylist(),
            strict=True,
        )
    )
    return HourFacts(table.num_rows, by_source, uuid_digest(table["uuid"].to_pylist()))


def hour_facts(table: DeltaTable, hour: datetime) -> HourFacts:
    """Read one hour's ``uuid`` and ``_source_file`` columns from the snapshot."""
    dataset = table.to_pyarrow_dataset()
    expr = (pc.field("date") == pa.scalar(hour.date(), pa.date32())) & (
        pc.field("hour") == pa.scalar(hour.hour, pa.int32())
    )
    return facts_of(dataset.to_table(columns=["uuid", "_source_file"], filter=expr))


@dataclass(frozen=True, slots=True)
class CompactResult:
    day: date
    files_removed: int
    files_added: int
    rows: int
    vacuumed: int
    version: int


def compact_day(
    location: TableLocation,
    day: date,
    *,
    retention_hours: int,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_conflict: Callable[[int, str], None] | None = None,
) -> CompactResult:
    """Rewrite each hour of ``day`` into as few files as the target size allows, then vacuum.

    ``optimize.compact`` commits with ``dataChange = false``: readers of any snapshot see the
    same rows. ``vacuum`` (full) then deletes data files older than ``retention_hours`` that
    the latest snapshot does not reference: files of replaced hours, files just compacted,
    and files of writes that lost a commit conflict. ``retention_hours`` must exceed the
    longest write in flight (an uncommitted file is unreferenced too) and the longest read
    of an older snapshot.
    """
    filters = [("date", "=", f"{day:%Y-%m-%d}")]

    def optimize() -> dict[str, Any]:
        table = open_table(location)
        if table is None:
            msg = f"no Delta table at {location.uri}"
            raise TableNotFoundError(msg)
        return dict(table.optimize.compact(partition_filters=filters))

    stats = _with_conflict_retries(
        f"compacting {day}",
        optimize,
        rng=rng or random.Random(),
        sleep=sleep,
        on_conflict=on_conflict,
    )
    table = open_table(location)
    assert table is not None
    vacuumed = table.vacuum(
        retention_hours=retention_hours,
        enforce_retention_duration=False,
        dry_run=False,
        full=True,  # also files no commit ever named: those of attempts that lost a conflict
    )
    table = open_table(location)
    assert table is not None
    rows = table.to_pyarrow_dataset().count_rows(filter=pc.field("date") == pa.scalar(day))
    return CompactResult(
        day=day,
        files_removed=int(stats.get("numFilesRemoved", 0)),
        files_added=int(stats.get("numFilesAdded", 0)),
        rows=rows,
        vacuumed=len(vacuumed),
        version=table.version(),
    )


def delta_error_text(exc: BaseException, location: TableLocation) -> str:
    """One line for a delta-rs failure, credentials scrubbed."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return location.scrub(first)


DELTA_ERRORS: tuple[type[BaseException], ...] = (DeltaError, OSError, CommitConflictError)
