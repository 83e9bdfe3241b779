"""One local day's model tables, in DuckDB SQL over that day's slim event rows.

The input is the temporary table ``ev``: the slim rows (``slim.SLIM_COLUMNS``) of every upload
hour that holds an event of the day, filtered to the rows whose ``day`` (local day of
``event_time``) or ``sday`` (local day of ``session_id``, the session's start) is the day.
So every session starting that day is whole, whatever days its events fall on.

Each table's rows come out sorted on their key, cast to the declared types
(``schema.TABLES``): the same events always give the same rows in the same order (means are
taken over integer microseconds, so no float sum depends on the order of a parallel scan).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb

from .schema import TABLES, Table

__all__ = ["DAY_TABLES", "build_day", "fold_users"]

# Events once per uuid (rows without one each count): a repeat of an event, in the same hour
# or another, has the same event_time, so it always falls on the same day as the first copy.
# Only the few repeated uuids go through a window.
_DEDUPE = """
CREATE OR REPLACE TEMP TABLE e AS
WITH dup AS (SELECT uuid FROM ev WHERE uuid IS NOT NULL GROUP BY uuid HAVING count(*) > 1)
SELECT * FROM ev ANTI JOIN dup USING (uuid)
UNION ALL BY NAME
SELECT * FROM (SELECT * FROM ev SEMI JOIN dup USING (uuid)) QUALIFY row_number() OVER (
    PARTITION BY uuid ORDER BY event_time, event_type, session_id, amplitude_id, source, path
) = 1
"""

# Each event's rank ``o`` in (event_time, uuid) order: ``k`` lists e's rowids in that order
# (``preserve_insertion_order`` on while it is made, so its own rowid is the rank), a narrow
# sort instead of one of every column. "The first/last value in time" is then
# ``arg_min/max_null(x, o)``: one hash aggregate, not a sort per ordered aggregate.
_ORDER = "CREATE OR REPLACE TEMP TABLE k AS SELECT rowid AS r FROM e ORDER BY event_time, uuid"
_RANKED = (
    "CREATE OR REPLACE TEMP VIEW eo AS SELECT e.*, k.rowid AS o FROM e JOIN k ON e.rowid = k.r"
)

# The page views of the sessions that start on the day, each with the time of the next event
# of its session (null: the session's last event).
_SESSION_VIEWS = """
CREATE OR REPLACE TEMP TABLE se AS
SELECT amplitude_id, session_id, path, event_time,
       lead(event_time) OVER (PARTITION BY amplitude_id, session_id ORDER BY o) AS next_t
FROM eo WHERE sday = $day AND amplitude_id IS NOT NULL
QUALIFY is_pv
"""

_SESSIONS = """
CREATE OR REPLACE TEMP TABLE s AS
SELECT $day AS day, amplitude_id, session_id, max(user_id) AS user_id,
       min(event_time) AS start_time, max(event_time) AS end_time,
       (epoch_us(max(event_time)) - epoch_us(min(event_time))) / 1e6 AS duration_s,
       count(*) AS events, count(*) FILTER (is_pv) AS page_views,
       arg_min_null(path, o) FILTER (is_pv) AS landing_page,
       arg_max_null(path, o) FILTER (is_pv) AS exit_page,
       arg_min_null(source, o) AS source, arg_min_null(country, o) AS country,
       arg_min_null(city, o) AS city, arg_min_null(platform, o) AS platform,
       arg_min_null(os_name, o) AS os_name, arg_min_null(device_family, o) AS device_family,
       arg_min_null(device_type, o) AS device_type,
       coalesce(max(cday) = $day, false) AS is_new_user
FROM eo WHERE sday = $day AND amplitude_id IS NOT NULL GROUP BY amplitude_id, session_id
"""

# The day's own events (by event_time): a view, not a copy.
_DAY_EVENTS = "CREATE OR REPLACE TEMP VIEW d AS SELECT * FROM e WHERE day = {day}"

_QUERIES: dict[str, str] = {
    "sessions": "SELECT * FROM s ORDER BY amplitude_id, session_id",
    "users_daily": """
        SELECT $day AS day, amplitude_id,
            arg_max_null(user_id, o) FILTER (user_id IS NOT NULL) AS user_id,
            min(first_seen) AS first_seen, max(last_seen) AS last_seen,
            coalesce(sum(sessions), 0) AS sessions, coalesce(sum(events), 0) AS events,
            coalesce(sum(page_views), 0) AS page_views,
            arg_min_null(source, o) FILTER (source IS NOT NULL) AS first_source,
            arg_max_null(country, o) FILTER (country IS NOT NULL) AS country,
            arg_max_null(city, o) FILTER (city IS NOT NULL) AS city,
            arg_max_null(company, o) FILTER (company IS NOT NULL) AS company,
            max(user_creation_time) AS user_creation_time
        FROM (
            SELECT amplitude_id, user_id, o, event_time AS first_seen,
                   event_time AS last_seen, NULL::BIGINT AS sessions, 1 AS events,
                   is_pv::INT AS page_views, source, country, city, company,
                   user_creation_time
            FROM eo WHERE day = $day AND amplitude_id IS NOT NULL
            UNION ALL BY NAME
            SELECT amplitude_id, 1 AS sessions FROM s
        ) GROUP BY amplitude_id ORDER BY amplitude_id""",
    "pages_daily": """
        SELECT $day AS day, path, coalesce(sum(views), 0) AS views,
            coalesce(sum(visitors), 0) AS visitors, coalesce(sum(entrances), 0) AS entrances,
            coalesce(sum(exits), 0) AS exits,
            coalesce(sum(session_visitors), 0) AS session_visitors,
            coalesce(sum(went_on), 0) AS went_on,
            sum(went_on) / nullif(sum(session_visitors), 0) AS went_on_share,
            max(median_s) AS median_time_on_page_s
        FROM (
            SELECT path, count(*) AS views, count(DISTINCT amplitude_id) AS visitors
            FROM d WHERE is_pv GROUP BY path
            UNION ALL BY NAME
            SELECT landing_page AS path, count(*) AS entrances
            FROM s WHERE page_views > 0 GROUP BY ALL
            UNION ALL BY NAME
            SELECT exit_page AS path, count(*) AS exits FROM s WHERE page_views > 0 GROUP BY ALL
            UNION ALL BY NAME
            SELECT path, count(DISTINCT amplitude_id) AS session_visitors,
                   count(DISTINCT amplitude_id) FILTER (went) AS went_on
            FROM (SELECT amplitude_id, session_id, path, bool_or(next_t IS NOT NULL) AS went
                  FROM se GROUP BY ALL)
            GROUP BY path
            UNION ALL BY NAME
            SELECT path, median((epoch_us(next_t) - epoch_us(event_time))::DOUBLE) / 1e6
                   AS median_s
            FROM se WHERE next_t IS NOT NULL GROUP BY path
        ) GROUP BY path ORDER BY path NULLS FIRST""",
    "daily": """
        SELECT $day AS day, count(*) AS events, count(DISTINCT amplitude_id) AS active_users,
            count(DISTINCT amplitude_id) FILTER (cday = $day) AS new_users,
            (SELECT count(*) FROM s) AS sessions, count(*) FILTER (is_pv) AS page_views,
            (SELECT sum(epoch_us(end_time) - epoch_us(start_time)) / count(*) / 1e6 FROM s)
                AS avg_session_s, $status AS status
        FROM d""",
    "daily_events": """
        SELECT $day AS day, event_type, count(*) AS events,
            count(DISTINCT amplitude_id) AS users
        FROM d GROUP BY event_type ORDER BY event_type NULLS FIRST""",
}

DAY_TABLES: tuple[Table, ...] = tuple(t for t in TABLES if t.by_day)


def _typed(model: Table, query: str) -> str:
    """``query`` with its columns cast to ``model``'s declared types, in declared order."""
    casts = ", ".join(f'CAST("{c.name}" AS {c.sql}) AS "{c.name}"' for c in model.columns)
    return f"SELECT {casts} FROM ({query})"


def build_day(con: duckdb.DuckDBPyConnection, day: date, status: str) -> dict[str, Any]:
    """Every by-day table of ``day`` from ``ev`` (a view of the day's slim rows), as Arrow
    tables (by name)."""
    params = {"day": day}
    con.execute(_DEDUPE)
    con.execute("SET preserve_insertion_order = true")
    try:
        con.execute(_ORDER)
    finally:
        con.execute("SET preserve_insertion_order = false")  # as build._connect sets it
    con.execute(_RANKED)
    con.execute(_DAY_EVENTS.format(day=f"DATE '{day.isoformat()}'"))
    out: dict[str, Any] = {}
    try:
        con.execute(_SESSION_VIEWS, params)
        con.execute(_SESSIONS, params)
        for model in DAY_TABLES:
            query = _typed(model, _QUERIES[model.name])
            wanted = {k: v for k, v in {"day": day, "status": status}.items() if f"${k}" in query}
            out[model.name] = con.sql(query, params=wanted or None).to_arrow_table()
    finally:
        for view in ("d", "eo"):
            con.execute(f"DROP VIEW IF EXISTS {view}")
        for name in ("se", "s", "k", "e"):
            con.execute(f"DROP TABLE IF EXISTS {name}")
    return out


# One row per person: ``merges`` maps a merged ``amplitude_id`` to the id it ends up as. Of
# a person's rows of one day (several ids), the one seen first gives the first source, the
# one seen last the latest user_id, country, city and company. (day, amplitude_id) is a
# row's key, so each order below is total: ``lo`` ranks rows by when they were last seen,
# ``fo`` by when first seen, and ``arg_max/min_null`` picks by rank in one hash aggregate.
_USERS = """
SELECT person AS amplitude_id,
    arg_max_null(user_id, lo) FILTER (user_id IS NOT NULL) AS user_id,
    min(first_seen) AS first_seen, max(last_seen) AS last_seen,
    count(DISTINCT day) FILTER (events > 0) AS days, sum(sessions) AS sessions,
    sum(events) AS events, sum(page_views) AS page_views,
    arg_min_null(first_source, fo) FILTER (first_source IS NOT NULL) AS first_source,
    arg_max_null(country, lo) FILTER (country IS NOT NULL) AS country,
    arg_max_null(city, lo) FILTER (city IS NOT NULL) AS city,
    arg_max_null(company, lo) FILTER (company IS NOT NULL) AS company,
    max(user_creation_time) AS user_creation_time
FROM (SELECT u.*, coalesce(m.person, u.amplitude_id) AS person,
             row_number() OVER (ORDER BY day, last_seen NULLS FIRST, amplitude_id) AS lo,
             row_number() OVER (ORDER BY day, first_seen NULLS LAST, amplitude_id) AS fo
      FROM users_daily u LEFT JOIN merges m USING (amplitude_id))
GROUP BY person ORDER BY person
"""


def fold_users(con: duckdb.DuckDBPyConnection) -> Any:
    """``users`` from the registered relations ``users_daily`` (every built day) and
    ``merges`` (``amplitude_id``, ``person``), as Arrow."""
    model = next(t for t in TABLES if t.name == "users")
    return con.sql(_typed(model, _USERS)).to_arrow_table()
