"""Build the model tables of a range of local days, rebuilding only what changed.

1. Every upload hour that can hold an event of the range (from an hour before its first local
   midnight to ``lateness_hours`` after its last, up to the newest available hour) is looked
   up by its manifest. An hour whose manifest is new, changed or gone is read again into its
   slim rows (``slim.py``), and the local days its rows touch (by ``event_time`` and by
   session start) are recorded.
2. Each day of the range gets a fingerprint: the settings, the signatures of the hours that
   touch it, and its status (``final`` when every hour from its first to ``lateness_hours``
   after its end is extracted, else ``provisional``). A day whose fingerprint is unchanged is
   left as it is; any other is built from its hours' slim rows alone (about one day of events
   in memory, DuckDB spilling to a temporary folder past ``memory_limit``) and each of its
   tables' partitions replaced at once.
3. When any day was built, or the merged ids changed, ``users`` is folded again from
   ``users_daily``, one row per person: an ``amplitude_id`` Amplitude merged into another
   (the ``merged_ids`` table) counts as the id it ends up as.

The same stored events always give the same tables, row for row.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import duckdb

from ..config import ModelsConfig, ReportConfig
from ..errors import StorageError
from ..hours import available_until, hour_range
from ..output.stores.base import Sink
from ..reports.build import read_errors, read_hour, table_dataset
from ..reports.ingest import sql_text
from .schema import TABLES, table
from .slim import SLIM_COLUMNS, slim_hour
from .store import ModelState, ModelStore, fingerprint
from .tables import DAY_TABLES, build_day, fold_users

__all__ = ["DayBuilt", "ModelRun", "build_models", "day_span"]

HOUR = timedelta(hours=1)
SLIM_VERSION = 1  # bump when the slim rows change shape: every hour is read again


@dataclass(frozen=True, slots=True)
class DayBuilt:
    """One local day of the range: its status, and whether this run built it."""

    day: date
    status: str
    built: bool
    events: int | None = None  # ``daily.events`` when built


@dataclass(frozen=True, slots=True)
class ModelRun:
    """What a build did: hours read again, days built or left as they were."""

    project: str
    where: str
    days: tuple[DayBuilt, ...]
    hours_read: tuple[datetime, ...] = ()

    @property
    def built(self) -> tuple[date, ...]:
        return tuple(d.day for d in self.days if d.built)


def day_span(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where local ``day`` starts and the next one starts (23 to 25 h)."""
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


def _hour_key(hour: datetime) -> str:
    return f"{hour:%Y-%m-%dT%H}"


def _settings_print(report: ReportConfig, models: ModelsConfig) -> str:
    return fingerprint(
        SLIM_VERSION,
        models.time_zone,
        report.page_view_events,
        report.page_path_keys,
        report.source_keys,
        report.company_keys,
    )


@dataclass(slots=True)
class _Build:
    sink: Sink
    project: str
    store: ModelStore
    report: ReportConfig
    models: ModelsConfig
    newest: datetime
    con: duckdb.DuckDBPyConnection
    tmp: Path
    state: ModelState = field(default_factory=ModelState)
    done: set[datetime] = field(default_factory=set)

    def run(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params).fetchall()

    async def refresh_hours(self, hours: list[datetime]) -> list[datetime]:
        """Read again every hour whose manifest changed; returns them."""
        self.done = await self.sink.completed_hours(self.project, hours)
        table = await table_dataset(self.sink, self.project) if self.store.delta else None
        changed: list[datetime] = []
        for hour in hours:
            key = _hour_key(hour)
            try:
                manifest = (
                    await self.sink.read_manifest(self.project, hour) if hour in self.done else None
                )
            except ValueError:  # a damaged manifest: the hour is not done
                manifest = None
                self.done.discard(hour)
            sig = (
                None
                if manifest is None
                else fingerprint(
                    manifest.status, manifest.extracted_at, manifest.events, manifest.run_id
                )
            )
            old = self.state.hours.get(key)
            if (old or {}).get("sig") == sig and (sig is None or old is not None):
                continue
            changed.append(hour)
            if manifest is None or manifest.status != "complete":
                await self.store.drop_slim(key)
                if sig is None:
                    self.state.hours.pop(key, None)
                else:
                    self.state.hours[key] = {"sig": sig, "days": []}
                continue
            _, paths, temporary, _ = await read_hour(
                self.sink,
                self.project,
                hour,
                True,
                self.newest,
                self.tmp,
                in_table=table is not None,
            )
            try:
                days = await anyio.to_thread.run_sync(self._slim, hour, key, paths, table)
            except read_errors(self.sink) as exc:
                why = str(exc).splitlines()[0]
                msg = f"cannot read the data of {hour:%Y-%m-%dT%H}: {why}"
                raise StorageError(msg) from exc
            finally:
                if temporary and paths:
                    shutil.rmtree(paths[0].parent, ignore_errors=True)
            made = self.cache / f"{key}.parquet"
            if days:
                await self.store.put_slim(key, made)
            else:
                await self.store.drop_slim(key)
            self.state.hours[key] = {"sig": sig, "days": [d.isoformat() for d in days]}
        return changed

    @property
    def cache(self) -> Path:
        """This build's local copies of slim rows (made or fetched), dropped once used."""
        return self.tmp / "slim"

    def _slim(self, hour: datetime, key: str, paths: list[Path], table: Any) -> list[date]:
        rows = None
        if table is not None:
            import pyarrow as pa  # noqa: PLC0415
            import pyarrow.compute as pc  # noqa: PLC0415

            wanted = (pc.field("date") == pa.scalar(hour.date(), pa.date32())) & (
                pc.field("hour") == pa.scalar(hour.hour, pa.int32())
            )
            rows = table.to_table(filter=wanted)
        self.cache.mkdir(exist_ok=True)
        target = self.cache / f"{key}.parquet"
        _, days = slim_hour(self.con, paths, rows, self.report, self.models.time_zone, target)
        return days

    def status(self, day: date, zone: ZoneInfo) -> str:
        start, end = day_span(day, zone)
        last = end - HOUR + timedelta(hours=self.models.lateness_hours)
        if last > self.newest:
            return "provisional"
        whole = all(h in self.done for h in hour_range(start, last))
        return "final" if whole else "provisional"

    async def build_day(self, day: date, status: str, hours: list[str]) -> int:
        """Build ``day``'s tables from the slim rows of ``hours`` and put them in the store."""
        self.cache.mkdir(exist_ok=True)
        files = await self.store.slim_files(hours, self.cache)
        out = await anyio.to_thread.run_sync(self._day_tables, day, status, files)
        for model in DAY_TABLES:
            await self.store.write_day(model, day, out[model.name])
        return int(out["daily"].column("events")[0].as_py())

    def _day_tables(self, day: date, status: str, files: list[Path]) -> dict[str, Any]:
        if files:  # a view: the day's rows are read where they are used, never copied whole
            listed = "[" + ", ".join(sql_text(str(f)) for f in files) + "]"
            wanted = f"DATE '{day.isoformat()}'"
            self.run(
                f"CREATE OR REPLACE TEMP VIEW ev AS SELECT * FROM read_parquet({listed}) "
                f"WHERE day = {wanted} OR sday = {wanted}"
            )
        else:
            self.run(f"CREATE OR REPLACE TEMP VIEW ev AS {_EMPTY_EV}")
        try:
            out = build_day(self.con, day, status)
        finally:
            self.run("DROP VIEW IF EXISTS ev")
        return out

    def forget_before(self, day: date) -> None:
        """Drop the local copies of slim rows no day from ``day`` on needs."""
        for key, entry in self.state.hours.items():
            if entry["days"] and max(entry["days"]) < day.isoformat():
                (self.cache / f"{key}.parquet").unlink(missing_ok=True)

    async def fold_users(self, merges: Mapping[str, str]) -> None:
        every_day = await self.store.read_days(table("users_daily"))
        import pyarrow as pa  # noqa: PLC0415

        persons = pa.table(
            {"amplitude_id": list(merges), "person": list(merges.values())},
            schema=pa.schema([("amplitude_id", pa.string()), ("person", pa.string())]),
        )

        def fold() -> Any:
            self.con.register("users_daily", every_day)
            self.con.register("merges", persons)
            try:
                return fold_users(self.con)
            finally:
                self.con.unregister("users_daily")
                self.con.unregister("merges")

        await self.store.write_whole(table("users"), await anyio.to_thread.run_sync(fold))


def _slim_type(column: str) -> str:
    if column.endswith("_time"):
        return "TIMESTAMP"
    return {"session_id": "BIGINT", "is_pv": "BOOLEAN"}.get(column, "VARCHAR")


_EMPTY_EV = (
    "SELECT "
    + ", ".join(f"NULL::{_slim_type(c)} AS {c}" for c in SLIM_COLUMNS)
    + ", NULL::DATE AS day, NULL::DATE AS sday, NULL::DATE AS cday LIMIT 0"
)


def _connect(folder: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    for setting in (
        f"SET memory_limit = {sql_text(memory_limit)}",
        f"SET temp_directory = {sql_text(str(folder / 'spill'))}",
        "SET threads = 2",
        "SET preserve_insertion_order = false",
        "SET TimeZone = 'UTC'",
        "SET enable_progress_bar = false",
    ):
        con.execute(setting)
    return con


async def build_models(
    sink: Sink,
    project: str,
    first_day: date,
    last_day: date,
    *,
    store: ModelStore,
    report: ReportConfig,
    models: ModelsConfig,
    now: datetime,
    lag_hours: int,
    on_day: Callable[[DayBuilt], None] | None = None,
    merges: Mapping[str, str] | None = None,
) -> ModelRun:
    """Bring the model tables of local days ``first_day`` to ``last_day`` up to date;
    ``merges``: each merged ``amplitude_id`` -> the id it ends up as (``users``)."""
    merges = merges or {}
    zone = ZoneInfo(models.time_zone)
    newest = available_until(now, lag_hours)
    first_hour = day_span(first_day, zone)[0] - HOUR
    last_hour = min(
        day_span(last_day, zone)[1] - HOUR + timedelta(hours=models.lateness_hours), newest
    )
    hours = list(hour_range(first_hour, last_hour)) if last_hour >= first_hour else []
    state = await store.load_state()
    settings = _settings_print(report, models)
    if state.settings != settings:
        await store.drop_all_slim()
        state = ModelState(settings=settings)
    await store.list_days(TABLES)
    days: list[DayBuilt] = []
    with tempfile.TemporaryDirectory(prefix="async-amp-models-") as name:
        tmp = Path(name)
        con = _connect(tmp, models.memory_limit)
        build = _Build(sink, project, store, report, models, newest, con, tmp, state)
        try:
            changed = await build.refresh_hours(hours)
            by_day: dict[str, list[str]] = {}
            for key, entry in state.hours.items():
                for d in entry["days"]:
                    by_day.setdefault(d, []).append(key)
            day = first_day
            while day <= last_day:
                iso = day.isoformat()
                status = build.status(day, zone)
                keys = sorted(by_day.get(iso, []))
                print_ = fingerprint(settings, status, [(k, state.hours[k]["sig"]) for k in keys])
                fresh = state.days.get(iso, {}).get("fp") == print_ and all(
                    store.has_day(m, day) for m in DAY_TABLES
                )
                if fresh:
                    done = DayBuilt(day, status, built=False)
                else:
                    events = await build.build_day(day, status, keys)
                    state.days[iso] = {"fp": print_, "status": status}
                    await store.save_state(state)
                    done = DayBuilt(day, status, built=True, events=events)
                days.append(done)
                if on_day is not None:
                    on_day(done)
                day += timedelta(days=1)
                build.forget_before(day)
            merged = fingerprint(sorted(merges.items())) if merges else ""
            if (
                any(d.built for d in days)
                or not store.has_day(table("users"), first_day)
                or state.merges != merged
            ):
                await build.fold_users(merges)
                state.merges = merged
            await store.save_state(state)
        finally:
            con.close()
    return ModelRun(project, store.describe(), tuple(days), tuple(changed))
