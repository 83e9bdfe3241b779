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
_DEDUPE = """
CREATE OR REPLACE TEMP TABLE e AS
SELECT * FROM ev
QUALIFY uuid IS NULL OR row_number() OVER (
    PARTITION BY uuid ORDER BY event_time, event_type, session_id, amplitude_id, source, path
) = 1
"""

# The events of the sessions that start on the day, numbered in their session by
# (event_time, uuid), each with the time of the next one.
_SESSION_EVENTS = """
CREATE OR REPLACE TEMP TABLE se AS
SELECT *, row_number() OVER w AS n, lead(event_time) OVER w AS next_t,
       count(*) OVER (PARTITION BY amplitude_id, session_id) AS of_n
FROM e WHERE sday = $day AND amplitude_id IS NOT NULL
WINDOW w AS (PARTITION BY amplitude_id, session_id ORDER BY event_time, uuid)
"""

_FIRST = "ORDER BY event_time, uuid"

_SESSIONS = f"""
CREATE OR REPLACE TEMP TABLE s AS
SELECT $day AS day, amplitude_id, session_id, max(user_id) AS user_id,
       min(event_time) AS start_time, max(event_time) AS end_time,
       (epoch_us(max(event_time)) - epoch_us(min(event_time))) / 1e6 AS duration_s,
       count(*) AS events, count(*) FILTER (is_pv) AS page_views,
       first(path {_FIRST}) FILTER (is_pv) AS landing_page,
       last(path {_FIRST}) FILTER (is_pv) AS exit_page,
       first(source {_FIRST}) AS source, first(country {_FIRST}) AS country,
       first(city {_FIRST}) AS city, first(platform {_FIRST}) AS platform,
       first(os_name {_FIRST}) AS os_name, first(device_family {_FIRST}) AS device_family,
       first(device_type {_FIRST}) AS device_type,
       coalesce(max(cday) = $day, false) AS is_new_user
FROM se GROUP BY amplitude_id, session_id
"""

_DAY_EVENTS = "CREATE OR REPLACE TEMP TABLE d AS SELECT * FROM e WHERE day = $day"

_QUERIES: dict[str, str] = {
    "sessions": "SELECT * FROM s ORDER BY amplitude_id, session_id",
    "users_daily": f"""
        SELECT $day AS day, amplitude_id,
            last(user_id {_FIRST}) FILTER (user_id IS NOT NULL) AS user_id,
            min(first_seen) AS first_seen, max(last_seen) AS last_seen,
            coalesce(sum(sessions), 0) AS sessions, coalesce(sum(events), 0) AS events,
            coalesce(sum(page_views), 0) AS page_views,
            first(source {_FIRST}) FILTER (source IS NOT NULL) AS first_source,
            last(country {_FIRST}) FILTER (country IS NOT NULL) AS country,
            last(city {_FIRST}) FILTER (city IS NOT NULL) AS city,
            last(company {_FIRST}) FILTER (company IS NOT NULL) AS company,
            max(user_creation_time) AS user_creation_time
        FROM (
            SELECT amplitude_id, user_id, event_time, uuid, event_time AS first_seen,
                   event_time AS last_seen, NULL::BIGINT AS sessions, 1 AS events,
                   is_pv::INT AS page_views, source, country, city, company,
                   user_creation_time
            FROM d WHERE amplitude_id IS NOT NULL
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
            FROM (SELECT amplitude_id, session_id, path, min(n) < max(of_n) AS went
                  FROM se WHERE is_pv GROUP BY ALL)
            GROUP BY path
            UNION ALL BY NAME
            SELECT path, median((epoch_us(next_t) - epoch_us(event_time))::DOUBLE) / 1e6
                   AS median_s
            FROM se WHERE is_pv AND next_t IS NOT NULL GROUP BY path
        ) GROUP BY path ORDER BY path NULLS FIRST""",
    "daily": """
        SELECT $day AS day, (SELECT count(*) FROM d) AS events,
            (SELECT count(DISTINCT amplitude_id) FROM d) AS active_users,
            (SELECT count(DISTINCT amplitude_id) FROM d WHERE cday = $day) AS new_users,
            (SELECT count(*) FROM s) AS sessions,
            (SELECT count(*) FROM d WHERE is_pv) AS page_views,
            (SELECT sum(epoch_us(end_time) - epoch_us(start_time)) / count(*) / 1e6 FROM s)
                AS avg_session_s, $status AS status""",
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
    """Every by-day table of ``day`` from ``ev``, as Arrow tables (by name)."""
    params = {"day": day}
    con.execute(_DEDUPE)
    con.execute(_SESSION_EVENTS, params)
    con.execute(_SESSIONS, params)
    con.execute(_DAY_EVENTS, params)
    out: dict[str, Any] = {}
    for model in DAY_TABLES:
        query = _typed(model, _QUERIES[model.name])
        wanted = {k: v for k, v in {"day": day, "status": status}.items() if f"${k}" in query}
        out[model.name] = con.sql(query, params=wanted or None).to_arrow_table()
    for name in ("e", "se", "s", "d"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return out


# One row per person: ``merges`` maps a merged ``amplitude_id`` to the id it ends up as. Of
# a person's rows of one day (several ids), the one seen first gives the first source, the
# one seen last the latest user_id, country, city and company.
_LAST = "ORDER BY day, last_seen NULLS FIRST, amplitude_id"
_USERS = f"""
SELECT person AS amplitude_id,
    last(user_id {_LAST}) FILTER (user_id IS NOT NULL) AS user_id,
    min(first_seen) AS first_seen, max(last_seen) AS last_seen,
    count(DISTINCT day) FILTER (events > 0) AS days, sum(sessions) AS sessions,
    sum(events) AS events, sum(page_views) AS page_views,
    first(first_source ORDER BY day, first_seen NULLS LAST, amplitude_id)
        FILTER (first_source IS NOT NULL) AS first_source,
    last(country {_LAST}) FILTER (country IS NOT NULL) AS country,
    last(city {_LAST}) FILTER (city IS NOT NULL) AS city,
    last(company {_LAST}) FILTER (company IS NOT NULL) AS company,
    max(user_creation_time) AS user_creation_time
FROM (SELECT u.*, coalesce(m.person, u.amplitude_id) AS person
      FROM users_daily u LEFT JOIN merges m USING (amplitude_id))
GROUP BY person ORDER BY person
"""


def fold_users(con: duckdb.DuckDBPyConnection) -> Any:
    """``users`` from the registered relations ``users_daily`` (every built day) and
    ``merges`` (``amplitude_id``, ``person``), as Arrow."""
    model = next(t for t in TABLES if t.name == "users")
    return con.sql(_typed(model, _USERS)).to_arrow_table()
