"""Scan a range of stored hours through the ``Sink`` read-back protocol and build a ``Report``.

The sink is only read (``completed_hours``, ``read_manifest``, ``list_files``, ``iter_file``),
so a local folder, Azure and S3 work alike. A local sink's files are read where they lie; any
other sink's files are streamed to a temporary folder one hour ahead of the aggregation (which
runs in a worker thread), and removed as soon as the hour is read.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import anyio
import duckdb
from anyio.streams.memory import MemoryObjectSendStream

from ..config import ReportConfig
from ..errors import StorageError
from ..hours import available_until, hour_range
from ..output.manifest import Manifest
from ..output.stores.base import KeepsTable, Sink
from ..output.stores.local import LocalSink
from .aggregate import SESSION_BUCKETS, Aggregator
from .ingest import file_format
from .model import BlogPost, HourCell, Lead, Report, ReportScope, new_keys, suspicious_drops

__all__ = [
    "ScanProgress",
    "build_report",
    "hour_cell",
    "read_errors",
    "read_hour",
    "report_from_events",
    "table_dataset",
]


@dataclass(slots=True)
class _Batch:
    """Consecutive hours of one day, read by DuckDB in one go (small hours cost a query each)."""

    cells: list[HourCell] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    temporary: list[Path] = field(default_factory=list)
    size: int = 0
    rows: int = 0  # over every batch: the scan's running total

    def add(self, cell: HourCell, paths: list[Path], size: int, *, temporary: bool) -> None:
        self.cells.append(cell)
        self.paths.extend(paths)
        self.size += size
        if temporary and paths:
            self.temporary.append(paths[0].parent)

    def clear(self) -> None:
        self.cells, self.paths, self.temporary, self.size = [], [], [], 0


@dataclass(frozen=True, slots=True)
class ScanProgress:
    hours_done: int
    hours_total: int
    rows: int
    hour: datetime


Progress = Callable[[ScanProgress], None]


def hour_cell(hour: datetime, manifest: Manifest | None, newest: datetime) -> HourCell:
    if manifest is None:
        return HourCell(hour, "not_available" if hour > newest else "missing")
    if manifest.status not in ("complete", "empty"):
        return HourCell(hour, "failed", detail=f"manifest status {manifest.status!r}")
    return HourCell(hour, manifest.status, events=manifest.events, attempts=manifest.attempts)


async def read_hour(
    sink: Sink,
    project: str,
    hour: datetime,
    has_manifest: bool,
    newest: datetime,
    tmp: Path,
    *,
    in_table: bool = False,
) -> tuple[HourCell, list[Path], bool, int]:
    """The hour's cell, the local paths of its data files, ``True`` when those are temporary
    copies, and their weight for batching (bytes as stored, gzip'd ones counted 8 times)."""
    manifest: Manifest | None = None
    if has_manifest:
        try:
            manifest = await sink.read_manifest(project, hour)
        except ValueError as exc:
            return HourCell(hour, "failed", detail=f"unreadable manifest: {exc}"), [], False, 0
    cell = hour_cell(hour, manifest, newest)
    if manifest is None:
        if cell.state == "missing" and await sink.list_files(project, hour):
            cell = HourCell(hour, "failed", detail="data files without a manifest")
        return cell, [], False, 0
    if in_table:  # a table's hour (Delta): its rows are read from the table, its size is theirs
        return cell, [], False, manifest.size * 8 if cell.state == "complete" else 0
    files = [f for f in manifest.files if file_format(f.name) is not None]
    names = [f.name for f in files]
    size = sum(f.bytes * (8 if f.name.endswith(".gz") else 1) for f in files)
    if cell.state != "complete" or not names:
        return cell, [], False, 0
    if isinstance(sink, LocalSink):
        return cell, [sink.file_path(project, hour, name) for name in names], False, size
    folder = tmp / f"{hour:%Y%m%dT%H}"
    folder.mkdir()
    paths = []
    for name in names:
        path = folder / name
        async with await anyio.open_file(path, "wb") as out:
            async for chunk in sink.iter_file(project, hour, name):
                await out.write(chunk)
        paths.append(path)
    return cell, paths, True, size


async def build_report(
    sink: Sink,
    project: str,
    first: datetime,
    last: datetime,
    *,
    now: datetime,
    lag_hours: int,
    settings: ReportConfig | None = None,
    progress: Progress | None = None,
    memory_limit: str = "512MB",
    batch_bytes: int = 24 * 1024 * 1024,
) -> Report:
    """``report_from_events`` with the scope's fields given one by one."""
    scope = ReportScope(project, first, last, now, lag_hours, settings or ReportConfig())
    return await report_from_events(
        sink, scope, progress=progress, memory_limit=memory_limit, batch_bytes=batch_bytes
    )


async def report_from_events(
    sink: Sink,
    scope: ReportScope,
    *,
    progress: Progress | None = None,
    memory_limit: str = "512MB",
    batch_bytes: int = 24 * 1024 * 1024,
) -> Report:
    """Read every hour of ``scope`` (``first`` to ``last``, inclusive, UTC) and aggregate it.

    Hours are read in batches of one day at most and about ``batch_bytes`` of NDJSON (the
    memory a batch needs grows with it); DuckDB keeps to ``memory_limit`` and spills beyond.
    """
    project, settings = scope.project, scope.settings
    hours = list(hour_range(scope.first, scope.last))
    newest = available_until(scope.now, scope.lag_hours)
    done = await sink.completed_hours(project, hours)
    table = await table_dataset(sink, project)
    cells: list[HourCell] = []
    with tempfile.TemporaryDirectory(prefix="async-amp-report-") as name:
        tmp = Path(name)
        agg = Aggregator(tmp, settings, memory_limit=memory_limit)
        try:
            send, receive = anyio.create_memory_object_stream[
                tuple[HourCell, list[Path], bool, int]
            ](1)

            async def produce(
                out: MemoryObjectSendStream[tuple[HourCell, list[Path], bool, int]],
            ) -> None:
                async with out:
                    for hour in hours:
                        item = await read_hour(
                            sink, project, hour, hour in done, newest, tmp, in_table=bool(table)
                        )
                        try:
                            await out.send(item)
                        except anyio.BrokenResourceError:  # the reader failed: it says why
                            return

            batch = _Batch()

            async def flush() -> None:
                if batch.cells:
                    day = batch.cells[0].hour.date()
                    read = [c.hour for c in batch.cells if c.state == "complete"]
                    try:
                        batch.rows += await anyio.to_thread.run_sync(
                            _add, agg, day, batch.paths, table, read
                        )
                    except read_errors(sink) as exc:
                        lo, hi = read[0], read[-1]
                        why = str(exc).splitlines()[0]
                        msg = f"cannot read the data of {lo:%Y-%m-%dT%H} to {hi:%H}: {why}"
                        raise StorageError(msg) from exc
                    finally:
                        for folder in batch.temporary:
                            shutil.rmtree(folder, ignore_errors=True)
                    cells.extend(batch.cells)
                    if progress is not None:
                        progress(ScanProgress(len(cells), len(hours), batch.rows, cells[-1].hour))
                    batch.clear()

            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(produce, send)
                    async with receive:
                        async for cell, paths, temporary, size in receive:
                            if batch.cells and (
                                batch.cells[0].hour.date() != cell.hour.date()
                                or batch.size + size > batch_bytes
                            ):
                                await flush()
                            batch.add(cell, paths, size, temporary=temporary)
                    await flush()
            except BaseExceptionGroup as group:
                raise _first(group) from None
            rows = batch.rows
            await anyio.to_thread.run_sync(agg.finish)
            return await anyio.to_thread.run_sync(
                lambda: _collect(agg, sink.describe(), scope, cells, rows)
            )
        finally:
            agg.close()


async def table_dataset(sink: Sink, project: str) -> Any:
    """The project's rows as a pyarrow dataset when ``sink``'s format keeps them in one table
    (``stores.base.KeepsTable``: not in the hour folders), else ``None``."""
    return await sink.table_dataset(project) if isinstance(sink, KeepsTable) else None


def read_errors(sink: Sink) -> tuple[type[BaseException], ...]:
    """What reading ``sink``'s stored data raises: DuckDB's errors, and its table's."""
    found: tuple[type[BaseException], ...] = (duckdb.Error,)
    return found + sink.read_errors if isinstance(sink, KeepsTable) else found


def _add(agg: Aggregator, day: date, paths: list[Path], table: Any, hours: list[datetime]) -> int:
    """Fold files (and, from a table, the rows of ``hours``) into the aggregation."""
    rows = None
    if table is not None and hours:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.compute as pc  # noqa: PLC0415

        wanted = (pc.field("date") == pa.scalar(day, pa.date32())) & pc.field("hour").isin(
            pa.array([h.hour for h in hours], pa.int32())
        )
        rows = table.to_table(filter=wanted)
    return agg.add_hours(day, paths, rows)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped the scan (a task group wraps it), unwrapped for the caller."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def _ranking(agg: Aggregator, column: str, limit: int) -> tuple[tuple[str, int], ...]:
    rows = agg.run(
        f"SELECT coalesce({column}, '(unknown)'), count(*) FROM devices "
        f"GROUP BY ALL ORDER BY 2 DESC, 1 LIMIT {int(limit)}"
    )
    return tuple((str(k), int(n)) for k, n in rows)


def _collect(
    agg: Aggregator, where: str, scope: ReportScope, cells: list[HourCell], rows: int
) -> Report:
    settings = agg.settings
    top = settings.top
    day_list = [d.day for d in agg.days]
    index = {d: i for i, d in enumerate(day_list)}
    blog: list[BlogPost] = []
    posts = agg.run(
        f"""SELECT path, sum(views) AS views, count(DISTINCT device_id) AS visitors,
            count(DISTINCT device_id) FILTER (continued) AS cont
        FROM blog_pairs GROUP BY path ORDER BY views DESC, path LIMIT {int(top)}"""
    )
    daily: dict[str, list[int]] = {p[0]: [0] * len(day_list) for p in posts}
    if posts:
        for path, day, views in agg.run(
            "SELECT path, day, sum(views) FROM blog_daily WHERE path IN "
            "(SELECT unnest(?::VARCHAR[])) GROUP BY ALL",
            [p[0] for p in posts],
        ):
            if day in index:
                daily[path][index[day]] = int(views)
    for path, views, visitors, cont in posts:
        title = agg.titles.get(path, "")
        blog.append(BlogPost(path, title, int(views), int(visitors), int(cont), tuple(daily[path])))
    (blog_views,), *_ = agg.run("SELECT coalesce(sum(views), 0) FROM blog_pairs")
    leads = tuple(
        Lead(str(u), lv, fv, int(d), int(e), c or "", ci or "", co or "")
        for u, lv, fv, d, e, c, ci, co in agg.run(
            f"""SELECT user_id, max(last_t) AS lv, min(first_t), sum(days), sum(events),
                arg_max(country, last_t), arg_max(city, last_t), arg_max(company, last_t)
            FROM users GROUP BY user_id ORDER BY lv DESC, user_id LIMIT {int(settings.leads)}"""
        )
    )
    (identified,), *_ = agg.run("SELECT count(DISTINCT user_id) FROM users")
    first_day: date = day_list[0] if day_list else scope.first.date()
    keys, baseline = new_keys(agg.keys_first, agg.pkeys_first, first_day)
    lengths = tuple((label, agg.session_lengths.get(label, 0)) for _, label in SESSION_BUCKETS)
    return Report(
        project=scope.project,
        where=where,
        first=scope.first,
        last=scope.last,
        now=scope.now,
        lag_hours=scope.lag_hours,
        settings=settings,
        hours=tuple(cells),
        days=tuple(agg.days),
        drops=tuple(suspicious_drops(cells, settings.drop_ratio)),
        new_keys=tuple(keys),
        baseline_keys=baseline,
        event_types=tuple(agg.event_types.most_common(top)),
        countries=_ranking(agg, "country", top),
        cities=_ranking(agg, "city || ', ' || coalesce(country, '?')", top),
        sources=_ranking(agg, "source", top),
        oses=_ranking(agg, "device_family", top),
        browsers=_ranking(agg, "os_name", top),
        device_types=_ranking(agg, "device_type", top),
        blog=tuple(blog),
        blog_views=int(blog_views),
        leads=leads,
        identified_total=int(identified),
        weekday_hour=dict(agg.weekday_hour),
        session_lengths=lengths,
        rows_read=rows,
    )
