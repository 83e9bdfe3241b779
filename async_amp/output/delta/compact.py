"""Compacting a day, and converting an hour-layout table to days (``compact --relayout``).

Day layout: ``compact_day`` rewrites the day's files (one per archive member of each hour, and
hours rewritten since) into as few files as its size allows (``rewrite.FILE_BYTES``), sorted
by ``layout.SORT_KEY``, with row groups as large as ``rewrite.ROW_GROUP_BYTES`` allows: one
commit with ``dataChange = false`` (readers of any snapshot see the same rows) carrying the
day's application transaction, so it and an hour's replacement of the same day never both
land on the same snapshot (``layout.day_app_id``). A day already in one file is left alone.

Hour layout: delta-rs' ``optimize.compact`` within each hour of the day (one file per hour at
best), with the same transaction.

Both then ``vacuum``: data files older than ``retention_hours`` that the latest snapshot does
not reference are deleted (replaced hours, files compacted, files of writes that lost a
commit conflict). ``retention_hours`` must exceed the longest write in flight (an
uncommitted file is unreferenced too) and the longest read of an older snapshot.
"""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import (
    AddAction,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)

from .checkpoint import Checkpoints, after_commit
from .files import DataFile, put_file, table_schema
from .layout import DAY_PARTITIONS, SORT_KEY, day_app_id, is_day_layout, missing_properties
from .replay import finish_relayout, record_relayout
from .rewrite import day_files, file_dataset, remove_action, write_rows
from .table import (
    NO_HOOK,
    TableLocation,
    committed_version,
    open_table,
    with_conflict_retries,
)

__all__ = ["CompactResult", "RelayoutResult", "compact_day", "relayout"]


@dataclass(frozen=True, slots=True)
class CompactResult:
    day: date
    files_removed: int
    files_added: int
    rows: int
    vacuumed: int
    version: int


@dataclass(frozen=True, slots=True)
class RelayoutResult:
    days: int
    files_removed: int
    files_added: int
    rows: int
    version: int
    """The table's version after the conversion (unchanged when it was in days already)."""
    replayed: int = 0
    """Hours other writers committed while the days were written, committed again after."""


def _table(location: TableLocation) -> DeltaTable:
    table = open_table(location)
    if table is None:
        msg = f"no Delta table at {location.uri}"
        raise TableNotFoundError(msg)
    return table


def _txn(*days: date, commit_id: str | None = None) -> CommitProperties:
    now = time.time_ns() // 1000
    return CommitProperties(
        custom_metadata={"async_amp.commit_id": commit_id} if commit_id else None,
        app_transactions=[Transaction(day_app_id(d), now) for d in days],
    )


def ensure_properties(location: TableLocation) -> None:
    """Set ``layout.TABLE_PROPERTIES`` on the table where it lacks them (one metadata commit)."""
    table = _table(location)
    missing = missing_properties(table.metadata().configuration)
    if missing:
        table.alter.set_table_properties(missing, raise_if_not_exists=False)


def _day_rows(table: DeltaTable, day: date) -> Any:
    return pc.field("date") == pa.scalar(day, pa.date32())


def _compact_days_files(location: TableLocation, day: date) -> tuple[int, int, int]:
    """One attempt at compacting ``day`` of a day-layout table: (files removed, added, the
    version of its commit)."""
    table = _table(location)
    files = day_files(table, day)
    if len(files) <= 1:
        return 0, 0, table.version()
    # the day's files hold every column but date: read them alone, not the table's dataset
    dataset = file_dataset(location, [f.path for f in files])
    rows_in = dataset.count_rows()
    with tempfile.TemporaryDirectory(prefix="async-amp-compact-") as work:
        outs = write_rows(dataset, Path(work), order=SORT_KEY)
        at = datetime(day.year, day.month, day.day, tzinfo=UTC)
        added: list[DataFile] = [put_file(location, path, at) for path in outs]
    if sum(f.rows for f in added) != rows_in:  # never: DuckDB wrote what it read
        msg = f"compacting {day}: {rows_in} rows read, {sum(f.rows for f in added)} written"
        raise RuntimeError(msg)
    actions: list[AddAction | RemoveAction] = [
        *(remove_action(f, day, data_change=False) for f in files),
        *(f.add_action(data_change=False) for f in added),
    ]
    commit_id = uuid.uuid4().hex
    table.create_write_transaction(
        actions,
        "append",
        table.schema(),
        partition_by=list(DAY_PARTITIONS),
        commit_properties=_txn(day, commit_id=commit_id),
        post_commithook_properties=NO_HOOK,
    )
    return len(files), len(added), committed_version(location, table.version(), commit_id)


def _optimize_hours(location: TableLocation, day: date) -> tuple[int, int, int]:
    table = _table(location)
    stats = table.optimize.compact(
        partition_filters=[("date", "=", f"{day:%Y-%m-%d}")],
        commit_properties=_txn(day),
        post_commithook_properties=NO_HOOK,
    )
    # the table object is at its commit now
    return (
        int(stats.get("numFilesRemoved", 0)),
        int(stats.get("numFilesAdded", 0)),
        table.version(),
    )


def compact_day(
    location: TableLocation,
    day: date,
    *,
    retention_hours: int,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_conflict: Callable[[int, str], None] | None = None,
) -> CompactResult:
    """Compact ``day`` (see the module), then vacuum; conflicts are retried like commits."""
    with_conflict_retries(
        "setting the table's properties",
        lambda: ensure_properties(location),
        rng=rng or random.Random(),
        sleep=sleep,
        on_conflict=on_conflict,
    )

    checkpoints = Checkpoints()

    def attempt() -> tuple[int, int]:
        table = _table(location)
        if is_day_layout(table.metadata().partition_columns):
            removed, added, version = _compact_days_files(location, day)
        else:
            removed, added, version = _optimize_hours(location, day)
        if added:  # its own commit's version (another writer's checkpoints its own)
            checkpoints.after_commit(location, version)
        return removed, added

    removed, added = with_conflict_retries(
        f"compacting {day}",
        attempt,
        rng=rng or random.Random(),
        sleep=sleep,
        on_conflict=on_conflict,
    )
    table = _table(location)
    vacuumed = table.vacuum(
        retention_hours=retention_hours,
        enforce_retention_duration=False,
        dry_run=False,
        full=True,  # also files no commit ever named: those of attempts that lost a conflict
        post_commithook_properties=NO_HOOK,
    )
    if vacuumed:  # vacuum's own commits count too: the table object is at its last
        checkpoints.after_commit(location, table.version())
    table = _table(location)
    if is_day_layout(table.metadata().partition_columns):
        paths = [f.path for f in day_files(table, day)]
        rows = file_dataset(location, paths).count_rows() if paths else 0
    else:
        rows = table.to_pyarrow_dataset().count_rows(filter=_day_rows(table, day))
    return CompactResult(
        day=day,
        files_removed=removed,
        files_added=added,
        rows=rows,
        vacuumed=len(vacuumed),
        version=table.version(),
    )


def _relayout_once(
    location: TableLocation,
    on_day: Callable[[date], None] | None,
    on_converted: Callable[[int], None] | None,
) -> RelayoutResult:
    table = _table(location)
    if is_day_layout(table.metadata().partition_columns):  # converted: finish what is left
        replayed = finish_relayout(location)
        return RelayoutResult(0, 0, 0, 0, _table(location).version(), replayed)
    actions = pa.table(table.get_add_actions(flatten=True))
    days = sorted(set(pc.cast(actions["partition.date"], pa.string()).to_pylist()))
    dataset = table.to_pyarrow_dataset()
    added: list[DataFile] = []
    rows = 0
    with tempfile.TemporaryDirectory(prefix="async-amp-relayout-") as work:
        for text in days:
            day = date.fromisoformat(text)
            at = datetime(day.year, day.month, day.day, tzinfo=UTC)
            wanted = _day_rows(table, day)
            rows += dataset.count_rows(filter=wanted)
            folder = Path(work) / text
            outs = write_rows(dataset, folder, row_filter=wanted, order=SORT_KEY)
            added.extend(put_file(location, path, at) for path in outs)
            if on_day is not None:
                on_day(day)
    if sum(f.rows for f in added) != rows:  # never: DuckDB wrote what it read
        msg = f"relayout: {rows} rows read, {sum(f.rows for f in added)} written"
        raise RuntimeError(msg)
    # every day of the table, and today and tomorrow (an extraction's newest hours), so that a
    # concurrent commit of any of them conflicts with the conversion
    today = datetime.now(UTC).date()
    txn_days = {date.fromisoformat(d) for d in days} | {today, today + timedelta(days=1)}
    metadata = table.metadata()
    configuration = {k: v for k, v in metadata.configuration.items() if v is not None}
    commit_id = uuid.uuid4().hex
    # what a crash before the replay below is done leaves to ``finish_relayout``
    # (a record whose conversion never committed is deleted by the next one that does)
    record_relayout(location, table.version(), commit_id)
    now = time.time_ns() // 1000
    create_table_with_add_actions(
        location.uri,
        table_schema_delta(),
        [f.add_action() for f in added],
        mode="overwrite",
        partition_by=list(DAY_PARTITIONS),
        name=metadata.name,
        description=metadata.description,
        configuration={**configuration, **missing_properties(configuration)},
        storage_options=location.options(),
        # at the version after the one it reads, or not at all (no rebasing over others)
        commit_properties=CommitProperties(
            custom_metadata={"async_amp.commit_id": commit_id},
            app_transactions=[Transaction(day_app_id(d), now) for d in sorted(txn_days)],
            max_commit_retries=0,
        ),
        post_commithook_properties=NO_HOOK,
    )
    version = committed_version(location, table.version(), commit_id)
    if on_converted is not None:
        on_converted(version)
    replayed = finish_relayout(location)
    after_commit(location, version)
    return RelayoutResult(len(days), actions.num_rows, len(added), rows, version, replayed)


def table_schema_delta() -> Any:
    from deltalake import Schema  # noqa: PLC0415

    return Schema.from_arrow(table_schema())


def relayout(
    location: TableLocation,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_conflict: Callable[[int, str], None] | None = None,
    on_day: Callable[[date], None] | None = None,
    on_converted: Callable[[int], None] | None = None,
) -> RelayoutResult:
    """Convert an hour-layout table to days in one commit (each day compacted as above), then
    commit again the hours other writers committed meanwhile (``replay.py``). On a table
    converted already, finish that replay if a crash cut it short (``finish_relayout``).
    ``on_day``: called as each day is written; ``on_converted``: with the conversion's
    version, before the replay."""
    result: RelayoutResult = with_conflict_retries(
        "converting the table to day partitions",
        lambda: _relayout_once(location, on_day, on_converted),
        rng=rng or random.Random(),
        sleep=sleep,
        on_conflict=on_conflict,
    )
    return result
