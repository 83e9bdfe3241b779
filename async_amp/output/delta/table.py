"""One Delta table per project, written with delta-rs (``deltalake``): an hour per transaction.

The table is partitioned by ``date`` (the export hour's UTC day; tables of the older hour
layout by ``date`` and ``hour``: ``layout.py``). async-amp writes an hour's data files itself
(``files.py``: streaming, bounded row groups; delta-rs' ``write_deltalake`` held about twice the
hour in memory) and commits them with ``create_write_transaction``: one commit that adds the
hour's files and removes (or rewrites without the hour, ``rewrite.py``) every file of the
snapshot that held the hour's rows. In every snapshot an hour is absent, or there whole, once.

Concurrent writers (threads of one run, ``--shard`` workers, overlapping runs): see
``replace_hour``. In one run commits to a table take turns (they take milliseconds);
across processes a conflict redoes the commit (not the files) on the new snapshot, a
bounded number of times with jittered exponential backoff, so the last writer wins and the
hour is still there once.

Checkpoints are written by ``checkpoint.py`` (plain-encoded), not by delta-rs' commit hook.

Timestamps are ``timestamp[us, tz=UTC]``: with them the table stays at protocol reader 1 /
writer 2, which Synapse serverless reads (tz-naive ones would need ``timestampNtz``, 3 / 7).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import (
    CommitFailedError,
    DeltaError,
    SchemaMismatchError,
)
from deltalake.transaction import AddAction, RemoveAction, Transaction

from ...deadline import turn
from .base import (
    COMMIT_ATTEMPTS,
    NO_HOOK,
    CommitConflictError,
    TableLocation,
    log_entry,
    open_table,
    with_conflict_retries,
)
from .checkpoint import Checkpoints, interval_of
from .layout import (
    DAY_PARTITIONS,
    HOUR_PARTITIONS,
    TABLE_PROPERTIES,
    day_app_id,
    hour_app_id,
    is_day_layout,
)
from .rewrite import hour_replacement

__all__ = [
    "COMMIT_ATTEMPTS",
    "NO_HOOK",
    "PARTITION_BY",
    "CommitConflictError",
    "HourFacts",
    "LayoutChangedError",
    "TableFile",
    "TableLocation",
    "Writers",
    "committed_version",
    "ensure_table",
    "hour_app_id",
    "hour_facts",
    "hour_filters",
    "hour_predicate",
    "open_table",
    "replace_hour",
    "uuid_digest",
    "with_conflict_retries",
]

PARTITION_BY = DAY_PARTITIONS
METADATA_PREFIX = "async_amp."
_DIGEST_SLICE = 65_536
COMMIT_LOOKBACK = 1000
"""How many log entries after its snapshot to search for the commit just made."""


class LayoutChangedError(RuntimeError):
    """The table's partitioning changed (``compact --relayout``) after the hour's files were
    written for the old one: the hour is written again."""


class TableFile(Protocol):
    """A data file already in the table's folder, ready to be added (``files.DataFile``)."""

    @property
    def partition(self) -> dict[str, str | None]: ...

    def add_action(self, *, data_change: bool = True) -> AddAction: ...


def hour_predicate(hour: datetime) -> str:
    """The SQL predicate selecting exactly one export hour's rows (in either layout)."""
    return f"date = '{hour:%Y-%m-%d}' AND hour = {hour.hour}"


def hour_filters(hour: datetime) -> list[tuple[str, str, str]]:
    """The partition filters selecting exactly one export hour's files."""
    return [("date", "=", f"{hour:%Y-%m-%d}"), ("hour", "=", str(hour.hour))]


@dataclass(slots=True)
class _Writer:
    """One run's writer of one table: one commit at a time, on a snapshot kept fresh.

    A commit that replaces an hour conflicts with every concurrent commit that removed files
    (see ``replace_hour``), and a commit takes milliseconds, so the threads of one run take
    turns instead of retrying. Between commits the snapshot is brought up to date from the
    log's newest entries (``update_incremental``), not opened again from the checkpoint."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    table: DeltaTable | None = None
    checkpoints: Checkpoints = field(default_factory=Checkpoints)


class Writers:
    """One run's writers, one per table it commits to (``replace_hour``); ``close`` lets go
    of their snapshots when the run ends, so nothing of a run outlives it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writers: dict[str, _Writer] = {}

    def writer(self, uri: str) -> _Writer:
        with self._lock:
            return self._writers.setdefault(uri, _Writer())

    def __len__(self) -> int:
        with self._lock:
            return len(self._writers)

    def close(self) -> None:
        with self._lock:
            writers, self._writers = self._writers, {}
        for writer in writers.values():
            with writer.lock:
                writer.table = None


def _fresh_snapshot(
    writer: _Writer, location: TableLocation, schema: pa.Schema, name: str | None
) -> DeltaTable:
    """The latest snapshot (call with ``writer.lock`` held). A location whose credentials
    refresh (a bearer token) opens the table each time: a kept one holds the old token."""
    if writer.table is not None and location.refresh is None:
        try:
            writer.table.update_incremental()
            return writer.table
        except (DeltaError, OSError):  # e.g. the table was deleted and made again
            writer.table = None
    writer.table = ensure_table(location, schema, name)
    return writer.table


def ensure_table(location: TableLocation, schema: pa.Schema, name: str | None) -> DeltaTable:
    """The table's latest snapshot, created empty (protocol 1 / 2) when there is none yet.

    Refuses a table whose columns differ from ``schema``: the files about to be added carry
    exactly those columns."""
    table = open_table(location)
    if table is None:
        with contextlib.suppress(DeltaError):  # another writer created it meanwhile
            DeltaTable.create(
                location.uri,
                schema,
                mode="ignore",
                partition_by=list(PARTITION_BY),
                name=name,
                configuration=dict(TABLE_PROPERTIES),
                storage_options=location.options(),
            )
        table = open_table(location)
        if table is None:
            msg = f"cannot create the Delta table at {location.uri}"
            raise CommitFailedError(msg)  # retried: a creation in flight by another writer
    if table.schema() != DeltaSchema.from_arrow(schema):
        msg = (
            f"the Delta table at {location.uri} has other columns than this version of "
            "async-amp writes: write to a new table (another [output] dir or prefix)"
        )
        raise SchemaMismatchError(msg)
    return table


def replace_hour(
    location: TableLocation,
    hour: datetime,
    files: Sequence[TableFile],
    *,
    schema: pa.Schema,
    metadata: Mapping[str, Any],
    name: str | None = None,
    writers: Writers | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_conflict: Callable[[int, str], None] | None = None,
    on_snapshot: Callable[[DeltaTable], None] | None = None,
) -> int:
    """Replace ``hour``'s rows by those of ``files`` in one commit; return its version.

    ``files`` are already in the table's folder (``files.put_file``). The commit adds them
    and removes every file of the snapshot that holds the hour's rows: in the day layout the
    files of the hour alone, and files holding other hours too (a compacted day) replaced by
    copies without the hour (``rewrite.hour_replacement``); in the hour layout the hour's
    partition (``mode="overwrite"`` with its filters). In every snapshot the hour is absent,
    or there once.

    Two commits of the same hour must not both succeed: delta-rs' conflict check of such a
    commit has no read predicate, so it would let two writers each add their copy of an
    hour that had no file yet. Every commit of an hour therefore carries an application
    transaction (``txn``) with the hour's id: two commits with the same id conflict. A
    commit that removes files also carries the day's id (``layout.day_app_id``), as every
    compaction of the day does: delta-rs lets a removal pass over a concurrent compaction
    that removed the same file. A conflict redoes the commit on the new snapshot (the hour's
    files are not written again; a compacted day's copy is), a bounded number of times with
    jittered exponential backoff: the last writer wins.

    ``writers``: the run's (its commits to one table take turns on one kept snapshot);
    without them the commit opens the table for itself.
    ``metadata`` goes into the commit's ``commitInfo`` under ``async_amp.*`` keys;
    ``on_snapshot`` is called with the snapshot each attempt commits on. Blocking:
    run it in a worker thread. Raises ``CommitConflictError`` when every attempt conflicted,
    ``LayoutChangedError`` when the files were written for another layout than the
    table's, ``DeltaError``/``OSError`` from delta-rs for anything else.
    """
    commit_id = uuid.uuid4().hex
    custom = {f"{METADATA_PREFIX}{k}": v for k, v in metadata.items()}
    custom[f"{METADATA_PREFIX}commit_id"] = commit_id
    adds: list[AddAction | RemoveAction] = [f.add_action() for f in files]

    writer = writers.writer(location.uri) if writers is not None else _Writer()

    def commit(table: DeltaTable) -> tuple[int, int]:
        """Commit on ``table``: (its version, its checkpoint interval)."""
        read = table.version(), interval_of(table.metadata().configuration)
        if on_snapshot is not None:
            on_snapshot(table)
        columns = table.metadata().partition_columns
        if any(sorted(f.partition) != sorted(columns) for f in files):
            msg = (
                f"the table at {location.uri} is now partitioned by {', '.join(columns)} "
                f"(compact --relayout): hour {hour:%Y-%m-%dT%H} is written again"
            )
            raise LayoutChangedError(msg)
        txns = [Transaction(hour_app_id(hour), time.time_ns() // 1000)]
        if not is_day_layout(columns):
            txns.append(Transaction(day_app_id(hour.date()), time.time_ns() // 1000))
            table.create_write_transaction(
                adds,
                "overwrite",
                table.schema(),
                partition_by=list(HOUR_PARTITIONS),
                partition_filters=hour_filters(hour),
                commit_properties=CommitProperties(
                    custom_metadata=dict(custom), app_transactions=txns
                ),
                post_commithook_properties=NO_HOOK,
            )
            return read
        with tempfile.TemporaryDirectory(prefix="async-amp-rewrite-") as work:
            removes, rewritten = hour_replacement(location, table, hour, Path(work))
        if removes:
            txns.append(Transaction(day_app_id(hour.date()), time.time_ns() // 1000))
        table.create_write_transaction(
            [*removes, *adds, *(f.add_action() for f in rewritten)],
            "append",
            table.schema(),
            partition_by=list(DAY_PARTITIONS),
            commit_properties=CommitProperties(custom_metadata=dict(custom), app_transactions=txns),
            post_commithook_properties=NO_HOOK,
        )
        return read

    def attempt() -> int:
        with turn(writer.lock):  # the wait is not the commit's own time (``deadline.py``)
            for fresh in (False, True):
                kept = writer.table is not None and not fresh
                try:
                    read = commit(_fresh_snapshot(writer, location, schema, name))
                    break
                except CommitFailedError:
                    raise  # the snapshot is merely stale: brought up to date next attempt
                except BaseException as exc:
                    writer.table = None  # its state is unknown: open the table afresh
                    # a kept snapshot of a table deleted and made again under this process
                    # fails ("invalid table version"): once more on the table as it is now
                    if not (kept and isinstance(exc, DeltaError | OSError)):
                        raise
        version = committed_version(location, read[0], commit_id)
        # the commit is made: a checkpoint that fails is only a shortcut not taken (the
        # next interval's writes one)
        with contextlib.suppress(DeltaError, OSError, pa.ArrowException):
            writer.checkpoints.after_commit(location, version, interval=read[1])
        return version

    return int(
        with_conflict_retries(
            f"committing hour {hour:%Y-%m-%dT%H}",
            attempt,
            rng=rng or random.Random(),
            sleep=sleep,
            on_conflict=on_conflict,
        )
    )


def committed_version(location: TableLocation, read: int, commit_id: str) -> int:
    """The version of the commit carrying ``commit_id``, made on snapshot ``read``: the
    first log entry after ``read`` that names it (nearly always ``read + 1``; later when
    delta-rs rebased the commit over others). ``history()`` is no help here: it numbers the
    commits it lists by counting down from the version it opened, which goes wrong while
    other writers commit."""
    needle = commit_id.encode()
    for version in range(read + 1, read + 1 + COMMIT_LOOKBACK):
        body = log_entry(location, version)
        if body is None:
            break
        if needle in body:
            return version
    msg = f"cannot find the commit just made in {location.uri}"
    raise CommitConflictError(msg)


@dataclass(frozen=True, slots=True)
class HourFacts:
    """What the snapshot holds for one hour: rows per source member, and a digest of uuids."""

    rows: int
    by_source: Mapping[str, int]
    uuid_sha256: str


def uuid_digest(uuids: Iterable[pa.Array | pa.ChunkedArray]) -> str:
    """sha256 over the sorted uuids, one per line (null as empty): the same rows give the
    same digest in any order and any split into files. Arrow sorts strings by their UTF-8
    bytes, which is the order of their code points."""
    chunks = [c for u in uuids for c in (u.chunks if isinstance(u, pa.ChunkedArray) else [u])]
    values = pc.fill_null(pa.chunked_array(chunks, pa.utf8()), "")
    ordered = pc.take(values, pc.sort_indices(values))
    digest = hashlib.sha256()
    for start in range(0, len(ordered), _DIGEST_SLICE):
        piece = ordered.slice(start, _DIGEST_SLICE).to_pylist()
        digest.update(("\n".join(piece) + "\n").encode())
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
    return HourFacts(table.num_rows, by_source, uuid_digest([table["uuid"]]))


def hour_facts(table: DeltaTable, hour: datetime) -> HourFacts:
    """Read one hour's ``uuid`` and ``_source_file`` columns from the snapshot."""
    dataset = table.to_pyarrow_dataset()
    expr = (pc.field("date") == pa.scalar(hour.date(), pa.date32())) & (
        pc.field("hour") == pa.scalar(hour.hour, pa.int32())
    )
    return facts_of(dataset.to_table(columns=["uuid", "_source_file"], filter=expr))


def delta_error_text(exc: BaseException, location: TableLocation) -> str:
    """One line for a delta-rs failure, credentials scrubbed."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return location.scrub(first)


DELTA_ERRORS: tuple[type[BaseException], ...] = (
    DeltaError,
    OSError,
    CommitConflictError,
    LayoutChangedError,
)
