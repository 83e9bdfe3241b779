"""``verify`` for Delta output: every claimed hour against what the table's latest snapshot holds.

Per hour of the range:
- a manifest (``complete``): the snapshot must hold exactly the rows its ``delta`` section
  states (an hour written before that section: the ``_delta_commit.json`` it lists, which
  must match the manifest's sha256): the same count, the same rows per
  source member as Amplitude's lines (unless duplicates were dropped), and the same uuids
  (a sha256 over the sorted uuids, so compaction, which moves rows between files, changes
  nothing). Reading the rows reads every data file of the hour: a missing or unreadable
  Parquet file is reported too.
- a manifest (``empty``): the snapshot holds no row of the hour.
- no manifest: the snapshot holds no row of the hour either (rows there mean a run stopped
  between its commit and its manifest: re-extract the hour).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ...errors import StorageError
from ...hours import hour_range, iso_hour
from ...readback import HourCheck, Problem, VerifyReport, read_all
from ...readback.checks import dead_letters
from ..manifest import MANIFEST_NAME, DeltaFacts, Manifest, TableFacts, hour_folder
from .sink import DeltaSink, meta_project
from .table import DELTA_ERRORS, TableLocation, delta_error_text, facts_of, open_table

__all__ = ["verify_table"]


def _hour_rows(dataset: ds.Dataset, hour: datetime) -> pa.Table:
    expr = (pc.field("date") == pa.scalar(hour.date(), pa.date32())) & (
        pc.field("hour") == pa.scalar(hour.hour, pa.int32())
    )
    return dataset.to_table(columns=["uuid", "_source_file"], filter=expr)


class _LiveFiles:
    """The data files of the latest snapshot (what a Delta reader opens), by partition (a
    day; a day and hour in the older layout), each counted once: for the first hour of its
    partition that is checked."""

    def __init__(self, table: Any) -> None:
        actions = pa.table(table.get_add_actions(flatten=True))
        names = actions.column_names
        days = [str(d)[:10] for d in actions.column("partition.date").to_pylist()]
        hours = (
            actions.column("partition.hour").to_pylist()
            if "partition.hour" in names
            else [None] * len(days)
        )
        self._parts: dict[tuple[str, int | None], list[int]] = {}
        for day, hour, size in zip(
            days, hours, actions.column("size_bytes").to_pylist(), strict=True
        ):
            key = (day, None if hour is None else int(hour))
            self._parts.setdefault(key, []).append(int(size))
        self._by_hour = "partition.hour" in names
        self._seen: set[tuple[str, int | None]] = set()

    def first_seen(self, hour: datetime) -> tuple[int, int]:
        """(files, bytes) of the hour's partition, unless an earlier hour counted them."""
        key = (hour.date().isoformat(), hour.hour if self._by_hour else None)
        if key in self._seen:
            return 0, 0
        self._seen.add(key)
        sizes = self._parts.get(key, [])
        return len(sizes), sum(sizes)


async def verify_table(
    sink: DeltaSink, project: str, first: datetime, last: datetime
) -> VerifyReport:
    """Check every hour from ``first`` to ``last`` of ``project``'s table (only reads)."""
    started = time.monotonic()
    location = sink.locate(project)
    hours = list(hour_range(first, last))
    claimed = await sink.completed_hours(project, hours)
    try:
        table = await anyio.to_thread.run_sync(open_table, location)
        dataset = None if table is None else table.to_pyarrow_dataset()
    except DELTA_ERRORS as exc:
        msg = f"cannot open the Delta table at {location.uri}: {delta_error_text(exc, location)}"
        raise StorageError(msg) from None
    live = None if table is None else await anyio.to_thread.run_sync(_LiveFiles, table)
    checks = []
    for hour in hours:
        checks.append(
            await _check_hour(sink, project, hour, hour in claimed, dataset, location, live)
        )
    return VerifyReport(
        project=project,
        where=sink.describe(),
        first=first,
        last=last,
        hours=tuple(checks),
        seconds=time.monotonic() - started,
    )


async def _check_hour(
    sink: DeltaSink,
    project: str,
    hour: datetime,
    claimed: bool,
    dataset: ds.Dataset | None,
    location: TableLocation,
    live: _LiveFiles | None,
) -> HourCheck:
    problems: list[Problem] = []

    def problem(kind: Any, file: str, detail: str, exp: Any = None, act: Any = None) -> None:
        problems.append(Problem(hour, kind, file, detail, exp, act))

    def done(**counts: Any) -> HourCheck:
        return HourCheck(hour, "bad" if problems else "ok", problems=tuple(problems), **counts)

    try:
        rows = (
            pa.table({"uuid": pa.array([], pa.utf8()), "_source_file": pa.array([], pa.utf8())})
            if dataset is None
            else await anyio.to_thread.run_sync(_hour_rows, dataset, hour)
        )
    except (*DELTA_ERRORS, pa.ArrowException) as exc:
        problem("unreadable", location.uri, f"the hour's rows cannot be read: {exc}")
        return done()
    if not claimed:
        if rows.num_rows:
            problem(
                "extra",
                location.uri,
                f"the table holds {rows.num_rows} rows of this hour but no manifest claims "
                "them (a run stopped between its commit and its manifest?): re-extract the hour",
            )
            return done()
        return HourCheck(hour, "no_manifest")
    try:
        manifest = Manifest.loads(await read_all(sink, project, hour, MANIFEST_NAME))
    except (ValueError, StorageError) as exc:
        problem("manifest", MANIFEST_NAME, f"the manifest cannot be read: {exc}")
        return done()
    if manifest.hour != hour:
        problem("manifest", MANIFEST_NAME, "the manifest is for another hour", iso_hour(hour))
    if manifest.status == "empty":
        if rows.num_rows:
            problem(
                "extra", location.uri, "an empty hour, yet the table holds rows", 0, rows.num_rows
            )
        return done()
    legacy = manifest.side_record
    if legacy is not None:  # written before the manifest typed the commit's facts
        try:
            body = await read_all(sink, project, hour, legacy.name)
        except (ValueError, StorageError) as exc:
            problem("missing", legacy.name, str(exc))
            return done()
        try:
            manifest = manifest.with_side_record(body)
        except ValueError as exc:
            problem("sha256", legacy.name, str(exc))
            return done()
    if manifest.delta is None or manifest.table is None:
        problem("manifest", MANIFEST_NAME, "the manifest does not state the hour's Delta commit")
        return done()
    _compare_rows(manifest.delta, manifest.table, rows, problem, location.uri)
    # what a Delta reader opens for the hour: the live files holding its rows
    files, size = live.first_seen(hour) if live is not None else (0, 0)
    kept = dead_letters(manifest, sink.inner.describe(), hour_folder(meta_project(project), hour))
    return done(files=files, bytes=size, events=rows.num_rows, **kept)


def _compare_rows(
    delta: DeltaFacts, table: TableFacts, rows: pa.Table, problem: Callable[..., None], where: str
) -> None:
    facts = facts_of(rows)
    if facts.rows != delta.rows:
        problem("events", where, "the table holds another number of rows", delta.rows, facts.rows)
    quarantined = Counter(d.source for d in table.dead_letters)
    for source in table.sources if not table.dropped_duplicates else ():
        held = facts.by_source.get(source.name, 0)
        if held + quarantined[source.name] != source.lines:
            problem(
                "events",
                source.name,
                "rows from this member differ from the lines Amplitude sent",
                source.lines,
                held,
            )
    if facts.uuid_sha256 != delta.uuid_sha256:
        problem(
            "corrupt",
            where,
            "the hour's uuids differ from those committed (rows lost, added or changed)",
        )
