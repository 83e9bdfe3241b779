"""The report from the model tables: the hours' state from their manifests, every other panel
from ``daily``, ``daily_events``, ``sessions``, ``pages_daily`` and ``users_daily`` of the
local days the range touches. No event is read, so a year's report takes seconds.

What the model tables cannot answer says so on the page (schema drift; duplicates and
``_extra`` rows when the manifests do not count them, as for NDJSON output); visitors are
``amplitude_id``s, each counted once by their first session of the range; page views by
weekday and hour are placed at the start of their session.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import duckdb

from ..config import ReportConfig
from ..hours import available_until, hour_range
from ..models.schema import table
from ..models.store import ModelStore
from ..output.manifest import Manifest
from ..output.stores.base import Sink
from ..readback.bounded import map_bounded
from .aggregate import SESSION_BUCKETS, DayFacts
from .build import hour_cell
from .ingest import sql_text
from .model import BlogPost, HourCell, Lead, ModelDay, Report, ReportScope, suspicious_drops

__all__ = ["report_from_models"]

_READERS = 16  # manifests read at once (a year has 8,760)
_READ = ("daily", "daily_events", "sessions", "pages_daily", "users_daily")


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def report_from_models(
    sink: Sink,
    store: ModelStore,
    scope: ReportScope,
    *,
    zone: str,
) -> Report | None:
    """The report of ``scope`` (UTC hours ``first`` to ``last``) from the model tables (local
    days of ``zone``), or ``None`` when a local day the range touches is not built (the report
    then reads the events)."""
    project, first, last, settings = scope.project, scope.first, scope.last, scope.settings
    tz = ZoneInfo(zone)
    lo, hi = first.astimezone(tz).date(), last.astimezone(tz).date()
    daily = await store.read_days(table("daily"), lo, hi)
    if set(daily.column("day").to_pylist()) != set(_days(lo, hi)):
        return None
    tables = {"daily": daily}
    for name in _READ[1:]:
        tables[name] = await store.read_days(table(name), lo, hi)
    hours = list(hour_range(first, last))
    newest = available_until(scope.now, scope.lag_hours)
    done = await sink.completed_hours(project, hours)

    async def read(hour: datetime) -> Manifest | str:
        try:
            return await sink.read_manifest(project, hour) or ""
        except ValueError as exc:
            return f"unreadable manifest: {exc}"

    found = await map_bounded(sorted(done), read, _READERS)
    cells: list[HourCell] = []
    manifests: list[Manifest] = []
    for hour in hours:
        got = found.get(hour)
        if isinstance(got, str) and got:
            cells.append(HourCell(hour, "failed", detail=got))
            continue
        manifest = got if isinstance(got, Manifest) else None
        cells.append(hour_cell(hour, manifest, newest))
        if manifest is not None:
            manifests.append(manifest)
    counted = bool(manifests) and all(m.table is not None for m in manifests)
    facts = _day_facts(cells, manifests)

    def collect() -> dict[str, Any]:
        with duckdb.connect(":memory:") as con:
            con.execute("SET TimeZone = 'UTC'")
            for name, rows in tables.items():
                con.register(name, rows)
            return _collect(con, settings, tz, lo, hi)

    fields = await anyio.to_thread.run_sync(collect)
    return Report(
        project=project,
        where=sink.describe(),
        first=first,
        last=last,
        now=scope.now,
        lag_hours=scope.lag_hours,
        settings=settings,
        hours=tuple(cells),
        days=tuple(facts),
        drops=tuple(suspicious_drops(cells, settings.drop_ratio)),
        new_keys=(),
        baseline_keys=0,
        rows_read=0,
        model_zone=zone,
        basis="models",
        quality_counted=counted,
        **fields,
    )


def _day_facts(cells: list[HourCell], manifests: list[Manifest]) -> list[DayFacts]:
    """Per UTC day: events from the manifests, duplicates and ``_extra`` rows where counted."""
    by_day: dict[date, DayFacts] = {}
    for cell in cells:
        by_day.setdefault(cell.hour.date(), DayFacts(cell.hour.date())).events += cell.events
    for manifest in manifests:
        if manifest.table is not None:
            facts = by_day[manifest.hour.date()]
            facts.duplicates += manifest.table.duplicate_uuids
            facts.extra_rows += manifest.table.extra_rows
    return [by_day[d] for d in sorted(by_day)]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return con.execute(sql, list(params) if params else None).fetchall()


def _collect(
    con: duckdb.DuckDBPyConnection, settings: ReportConfig, tz: ZoneInfo, lo: date, hi: date
) -> dict[str, Any]:
    """Every panel's figures the model tables answer, by ``Report`` field."""
    top = int(settings.top)
    model_days = tuple(
        ModelDay(*row)
        for row in _rows(
            con,
            "SELECT day, events, active_users, new_users, sessions, page_views, avg_session_s, "
            "status FROM daily ORDER BY day",
        )
    )
    event_types = tuple(
        (str(t), int(n))
        for t, n in _rows(
            con,
            "SELECT coalesce(event_type, '(none)'), sum(events) FROM daily_events GROUP BY ALL "
            f"ORDER BY 2 DESC, 1 LIMIT {top}",
        )
    )
    # each user once, by their first session of the range
    con.execute(
        "CREATE TEMP TABLE firsts AS SELECT amplitude_id, "
        + ", ".join(
            f"arg_min({c}, (start_time, session_id)) AS {c}"
            for c in ("country", "city", "source", "device_family", "os_name", "device_type")
        )
        + " FROM sessions GROUP BY amplitude_id"
    )

    def ranking(column: str) -> tuple[tuple[str, int], ...]:
        return tuple(
            (str(k), int(n))
            for k, n in _rows(
                con,
                f"SELECT coalesce({column}, '(unknown)'), count(*) FROM firsts GROUP BY ALL "
                f"ORDER BY 2 DESC, 1 LIMIT {top}",
            )
        )

    prefix = settings.blog_prefix
    posts = _rows(
        con,
        "SELECT path, sum(views), sum(session_visitors), sum(went_on) FROM pages_daily "
        f"WHERE starts_with(path, ?) GROUP BY path ORDER BY 2 DESC, path LIMIT {top}",
        prefix,
    )
    days = _days(lo, hi)
    index = {d: i for i, d in enumerate(days)}
    daily: dict[str, list[int]] = {p[0]: [0] * len(days) for p in posts}
    for path, day, views in _rows(
        con,
        "SELECT path, day, views FROM pages_daily WHERE path IN (SELECT unnest(?::VARCHAR[]))",
        [p[0] for p in posts],
    ):
        daily[path][index[day]] = int(views)
    blog = tuple(
        BlogPost(path, "", int(v), int(vis), int(on), tuple(daily[path]))
        for path, v, vis, on in posts
    )
    ((blog_views,),) = _rows(
        con, "SELECT coalesce(sum(views), 0) FROM pages_daily WHERE starts_with(path, ?)", prefix
    )
    leads = tuple(
        Lead(str(u), lv, fv, int(d), int(e), c or "", ci or "", co or "")
        for u, lv, fv, d, e, c, ci, co in _rows(
            con,
            "SELECT user_id, max(last_seen) AS lv, min(first_seen), count(DISTINCT day), "
            "sum(events), arg_max(country, last_seen), arg_max(city, last_seen), "
            "arg_max(company, last_seen) FROM users_daily WHERE user_id IS NOT NULL "
            f"GROUP BY user_id ORDER BY lv DESC, user_id LIMIT {int(settings.leads)}",
        )
    )
    ((identified, users),) = _rows(
        con, "SELECT count(DISTINCT user_id), count(DISTINCT amplitude_id) FROM users_daily"
    )
    local = f"timezone({sql_text(tz.key)}, start_time)"
    weekday_hour = {
        (int(d), int(h)): int(n)
        for d, h, n in _rows(
            con,
            f"SELECT isodow({local}), hour({local}), sum(page_views) FROM sessions "
            "WHERE page_views > 0 GROUP BY ALL",
        )
    }
    whens = " ".join(
        f"WHEN duration_s < {bound} THEN {sql_text(label)}"
        for bound, label in SESSION_BUCKETS[1:-1]
    )
    lengths = Counter(
        {
            str(label): int(n)
            for label, n in _rows(
                con,
                f"SELECT CASE WHEN events = 1 THEN {sql_text(SESSION_BUCKETS[0][1])} {whens} "
                f"ELSE {sql_text(SESSION_BUCKETS[-1][1])} END, count(*) FROM sessions "
                "GROUP BY ALL",
            )
        }
    )
    return {
        "event_types": event_types,
        "countries": ranking("country"),
        "cities": ranking("city || ', ' || coalesce(country, '?')"),
        "sources": ranking("source"),
        "oses": ranking("device_family"),
        "browsers": ranking("os_name"),
        "device_types": ranking("device_type"),
        "blog": blog,
        "blog_views": int(blog_views),
        "leads": leads,
        "identified_total": int(identified),
        "weekday_hour": weekday_hour,
        "session_lengths": tuple((label, lengths.get(label, 0)) for _, label in SESSION_BUCKETS),
        "model_days": model_days,
        "users_total": int(users),
    }
