"""Per-hour and per-day aggregation in DuckDB: memory follows one day, never the range.

A batch of hours (a whole day when it is small) is loaded into ``h`` (``ingest.load_hour``)
and reduced at once into small per-day
partials (visitors, sessions, blog views, identified users, uuid hashes); at the end of a UTC
day those partials are folded into a few compact tables (one row per device first seen, per
blog post and visitor and day, per identified user and day) and emptied. The database is a
file in a temporary folder with a memory limit, so DuckDB spills to disk instead of growing.
Counts that stay small whatever the range (per hour, per day, per key) live in Python.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from ..config import ReportConfig
from .ingest import hour_keys, hour_source, load_hour, sql_text

__all__ = ["COMPACT_EVERY_DAYS", "SESSION_BUCKETS", "Aggregator", "DayFacts"]

# (upper bound in seconds, label): sessions by their length (last event - first event).
SESSION_BUCKETS: tuple[tuple[float, str], ...] = (
    (0.5, "one event"),
    (10, "< 10 s"),
    (30, "10-30 s"),
    (60, "30 s-1 min"),
    (180, "1-3 min"),
    (600, "3-10 min"),
    (1800, "10-30 min"),
    (float("inf"), "30 min +"),
)

_PARTIALS = """
CREATE TABLE d_uuid (uhash UBIGINT);
CREATE TABLE d_vis (device_id VARCHAR, user_id VARCHAR, country VARCHAR, city VARCHAR,
    os_name VARCHAR, device_family VARCHAR, device_type VARCHAR, source VARCHAR,
    first_t TIMESTAMP, events BIGINT, pvs BIGINT);
CREATE TABLE d_sess (device_id VARCHAR, session_id BIGINT, min_t TIMESTAMP, max_t TIMESTAMP,
    n BIGINT);
CREATE TABLE d_blog (device_id VARCHAR, session_id BIGINT, path VARCHAR, views BIGINT,
    first_t TIMESTAMP);
CREATE TABLE d_users (user_id VARCHAR, device_id VARCHAR, first_t TIMESTAMP, last_t TIMESTAMP,
    events BIGINT, country VARCHAR, city VARCHAR, company VARCHAR);
CREATE TABLE devices (device_id VARCHAR, first_day DATE, country VARCHAR, city VARCHAR,
    os_name VARCHAR, device_family VARCHAR, device_type VARCHAR, source VARCHAR);
CREATE TABLE blog_pairs (path VARCHAR, device_id VARCHAR, views BIGINT, continued BOOLEAN);
CREATE TABLE blog_daily (day DATE, path VARCHAR, views BIGINT);
CREATE TABLE users (user_id VARCHAR, device_id VARCHAR, first_t TIMESTAMP, last_t TIMESTAMP,
    days BIGINT, events BIGINT, country VARCHAR, city VARCHAR, company VARCHAR);
"""

COMPACT_EVERY_DAYS = 7

_PER_HOUR = (
    "INSERT INTO d_uuid SELECT uhash FROM h WHERE uuid IS NOT NULL",
    """INSERT INTO d_vis SELECT device_id, max(user_id), arg_min(country, event_time),
        arg_min(city, event_time), arg_min(os_name, event_time),
        arg_min(device_family, event_time), arg_min(device_type, event_time),
        arg_min(source, event_time), min(event_time), count(*), count(*) FILTER (is_pv)
        FROM h WHERE device_id IS NOT NULL GROUP BY device_id""",
    """INSERT INTO d_sess SELECT device_id, session_id, min(event_time), max(event_time),
        count(*) FROM h WHERE device_id IS NOT NULL AND session_id > 0
        GROUP BY device_id, session_id""",
    """INSERT INTO d_users SELECT user_id, arg_max(device_id, event_time), min(event_time),
        max(event_time), count(*), arg_max(country, event_time), arg_max(city, event_time),
        arg_max(company, event_time) FROM h WHERE user_id IS NOT NULL GROUP BY user_id""",
)


@dataclass(slots=True)
class DayFacts:
    """What one UTC day holds, once its hours are read."""

    day: date
    events: int = 0
    duplicates: int = 0
    extra_rows: int = 0
    visitors: int = 0
    new_visitors: int = 0
    identified: int = 0
    sessions: int = 0
    page_views: int = 0


@dataclass(slots=True)
class Aggregator:
    """Feed it hours in order (``add_hours``), close each day (``end_day``), then query it."""

    folder: Path
    settings: ReportConfig
    memory_limit: str = "512MB"
    threads: int = 2
    con: duckdb.DuckDBPyConnection = field(init=False)
    days: list[DayFacts] = field(default_factory=list)
    keys_first: dict[str, date] = field(default_factory=dict)
    pkeys_first: dict[str, date] = field(default_factory=dict)
    event_types: Counter[str] = field(default_factory=Counter)
    weekday_hour: Counter[tuple[int, int]] = field(default_factory=Counter)
    session_lengths: Counter[str] = field(default_factory=Counter)
    titles: dict[str, str] = field(default_factory=dict)
    _day: DayFacts | None = None
    _keysigs: set[int] = field(default_factory=set)
    _pkeysigs: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.con = duckdb.connect(":memory:")  # spills to temp_directory past memory_limit
        for setting in (
            f"SET memory_limit = {sql_text(self.memory_limit)}",
            f"SET temp_directory = {sql_text(str(self.folder / 'spill'))}",
            f"SET threads = {int(self.threads)}",
            "SET preserve_insertion_order = false",
            "SET TimeZone = 'UTC'",
            "SET enable_progress_bar = false",
        ):
            self.run(setting)
        for statement in _PARTIALS.split(";"):
            if statement.strip():
                self.run(statement)

    def run(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params) if params else None).fetchall()

    def close(self) -> None:
        self.con.close()

    # ------------------------------------------------------------------ per hour

    def add_hours(self, day: date, paths: list[Path], rows: Any = None) -> int:
        """Read the files of some hours of ``day`` (in order: days never go back), and ``rows``
        (an Arrow table of the Parquet schema: a Delta table's hours) when given, at once, and
        fold them into the day's partials; returns the rows read."""
        if self._day is None or self._day.day != day:
            if self._day is not None:
                self.end_day()
            self._day = DayFacts(day)
        facts = self._day
        tables = ("table_rows",) if rows is not None else ()
        if rows is not None:
            self.con.register("table_rows", rows)
        try:
            source = hour_source(self.con, paths, self.settings, tables)
            count = load_hour(self.con, source, self.settings.time_zone)
            return self._fold(day, facts, source, count)
        finally:
            if rows is not None:
                self.con.unregister("table_rows")

    def _fold(self, day: date, facts: DayFacts, source: str | None, rows: int) -> int:
        if not rows:
            return 0
        for sql in _PER_HOUR:
            self.run(sql)
        prefix = self.settings.blog_prefix
        self.run(
            """INSERT INTO d_blog SELECT device_id, session_id, path, count(*), min(event_time)
            FROM h WHERE is_pv AND starts_with(path, ?) AND device_id IS NOT NULL
            GROUP BY device_id, session_id, path""",
            prefix,
        )
        for path, title in self.run(
            "SELECT path, any_value(title) FROM h WHERE is_pv AND starts_with(path, ?) "
            "AND title IS NOT NULL GROUP BY path",
            prefix,
        ):
            self.titles.setdefault(path, title)
        facts.events += rows
        (extra, pvs), *_ = self.run(
            "SELECT count(*) FILTER (extra), count(*) FILTER (is_pv) FROM h"
        )
        facts.extra_rows += extra
        facts.page_views += pvs
        assert source is not None
        for column, seen, first in (
            ("keys", self._keysigs, self.keys_first),
            ("pkeys", self._pkeysigs, self.pkeys_first),
        ):
            sigs = [int(s) for (s,) in self.run(f"SELECT DISTINCT {column[:-1]}sig FROM h")]
            unseen = [s for s in sigs if s not in seen]
            if unseen:
                for key in hour_keys(self.con, source, column, unseen):  # type: ignore[arg-type]
                    first.setdefault(key, day)
                seen.update(unseen)
        for etype, count in self.run("SELECT event_type, count(*) FROM h GROUP BY ALL"):
            self.event_types[etype or "(none)"] += count
        for dow, hour_of_day, count in self.run(
            "SELECT dow, local_hour, count(*) FROM h WHERE is_pv AND dow IS NOT NULL GROUP BY ALL"
        ):
            self.weekday_hour[(int(dow), int(hour_of_day))] += count
        return rows

    # ------------------------------------------------------------------ per day

    def end_day(self) -> None:
        """Fold the current day's partials into the compact tables and empty them."""
        facts, self._day = self._day, None
        if facts is None:
            return
        day = facts.day
        (total, distinct), *_ = self.run("SELECT count(*), count(DISTINCT uhash) FROM d_uuid")
        facts.duplicates = int(total) - int(distinct)
        self.run(
            """CREATE OR REPLACE TEMP TABLE dv AS SELECT device_id, max(user_id) AS user_id,
            arg_min(country, first_t) AS country, arg_min(city, first_t) AS city,
            arg_min(os_name, first_t) AS os_name, arg_min(device_family, first_t) AS device_family,
            arg_min(device_type, first_t) AS device_type, arg_min(source, first_t) AS source
            FROM d_vis GROUP BY device_id"""
        )
        (facts.visitors, facts.identified), *_ = self.run("SELECT count(*), count(user_id) FROM dv")
        (facts.new_visitors,), *_ = self.run(
            "SELECT count(*) FROM dv ANTI JOIN devices USING (device_id)"
        )
        self.run(
            """INSERT INTO devices SELECT device_id, ?, country, city, os_name, device_family,
            device_type, source FROM dv ANTI JOIN devices USING (device_id)""",
            day,
        )
        self.run(
            """CREATE OR REPLACE TEMP TABLE ds AS SELECT device_id, session_id,
            min(min_t) AS min_t, max(max_t) AS max_t, sum(n) AS n
            FROM d_sess GROUP BY device_id, session_id"""
        )
        whens = " ".join(
            f"WHEN epoch(max_t) - epoch(min_t) < {bound} THEN {sql_text(label)}"
            for bound, label in SESSION_BUCKETS[1:-1]
        )
        for label, count in self.run(
            f"SELECT CASE WHEN n = 1 THEN {sql_text(SESSION_BUCKETS[0][1])} {whens} "
            f"ELSE {sql_text(SESSION_BUCKETS[-1][1])} END, count(*) FROM ds GROUP BY ALL"
        ):
            self.session_lengths[label] += count
        (facts.sessions,), *_ = self.run("SELECT count(*) FROM ds")
        self.run(
            """INSERT INTO blog_pairs SELECT b.path, b.device_id, sum(b.views),
                bool_or(coalesce(s.max_t > b.first_t, false))
            FROM (SELECT device_id, session_id, path, sum(views) AS views, min(first_t) AS first_t
                  FROM d_blog GROUP BY ALL) b
            LEFT JOIN ds s USING (device_id, session_id)
            GROUP BY b.path, b.device_id"""
        )
        self.run("INSERT INTO blog_daily SELECT ?, path, sum(views) FROM d_blog GROUP BY path", day)
        self.run(
            """INSERT INTO users SELECT user_id, arg_max(device_id, last_t), min(first_t),
            max(last_t), 1, sum(events), arg_max(country, last_t), arg_max(city, last_t),
            arg_max(company, last_t) FROM d_users GROUP BY user_id"""
        )
        if len(self.days) % COMPACT_EVERY_DAYS == COMPACT_EVERY_DAYS - 1:
            self._compact()
        for table in ("d_uuid", "d_vis", "d_sess", "d_blog", "d_users"):
            self.run(f"DELETE FROM {table}")
        self.run("DROP TABLE IF EXISTS dv")
        self.run("DROP TABLE IF EXISTS ds")
        self.days.append(facts)

    def _compact(self) -> None:
        """Fold the per-day rows of visitors and users into one row each: the state grows with
        distinct visitors, not with days (every merge here is associative)."""
        self.run(
            """CREATE OR REPLACE TABLE blog_pairs AS SELECT path, device_id, sum(views) AS views,
            bool_or(continued) AS continued FROM blog_pairs GROUP BY path, device_id"""
        )
        self.run(
            """CREATE OR REPLACE TABLE users AS SELECT user_id, arg_max(device_id, last_t)
            AS device_id, min(first_t) AS first_t, max(last_t) AS last_t, sum(days) AS days,
            sum(events) AS events, arg_max(country, last_t) AS country,
            arg_max(city, last_t) AS city, arg_max(company, last_t) AS company
            FROM users GROUP BY user_id"""
        )

    def finish(self) -> None:
        """Close the last day."""
        self.end_day()
