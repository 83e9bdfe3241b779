"""The model tables, declared once: each table's grain, columns, types and meaning.

The SQL that builds them (``tables.py``) casts to these types, the writers give every file
this schema (an empty day too), and ``docs/models.md``'s column tables are rendered from it
(``make docs``; ``tests/test_docs.py`` fails when they are stale).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["DAY", "TABLES", "Column", "Table", "arrow_schema", "column_table", "table"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql: str  # DuckDB type
    doc: str


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    grain: str
    columns: tuple[Column, ...]
    by_day: bool = True  # partitioned by ``day`` (else rewritten whole)


DAY = Column("day", "DATE", "The local day (`[models] time_zone`) the row belongs to")

_SOURCE = "first event's source: UTM source, referring domain or referrer, normalised"

_USER = (
    Column("amplitude_id", "VARCHAR", "Amplitude's user"),
    Column("user_id", "VARCHAR", "The latest `user_id` the user was identified with"),
    Column("first_seen", "TIMESTAMPTZ", "First `event_time` (UTC)"),
    Column("last_seen", "TIMESTAMPTZ", "Last `event_time` (UTC)"),
    Column("sessions", "BIGINT", "Sessions (counted on the day they start)"),
    Column("events", "BIGINT", "Events"),
    Column("page_views", "BIGINT", "Page views"),
    Column("first_source", "VARCHAR", f"First-touch source: the {_SOURCE}"),
    Column("country", "VARCHAR", "Country of the last event with one"),
    Column("city", "VARCHAR", "City of the last event with one"),
    Column("company", "VARCHAR", "Latest company (`[report] company_keys`)"),
    Column("user_creation_time", "TIMESTAMPTZ", "Amplitude's `user_creation_time`"),
)

TABLES: tuple[Table, ...] = (
    Table(
        "sessions",
        "one row per session: the same `session_id` and `amplitude_id` (`session_id` -1 or "
        "null is no session), on the local day of its `session_id` (the session's start)",
        (
            DAY,
            Column("amplitude_id", "VARCHAR", "Amplitude's user"),
            Column("session_id", "BIGINT", "Amplitude's session id: its start, epoch ms"),
            Column("user_id", "VARCHAR", "The user's `user_id` when identified in the session"),
            Column("start_time", "TIMESTAMPTZ", "First `event_time` of the session (UTC)"),
            Column("end_time", "TIMESTAMPTZ", "Last `event_time` of the session (UTC)"),
            Column("duration_s", "DOUBLE", "`end_time - start_time`, in seconds"),
            Column("events", "BIGINT", "Events in the session (each `uuid` once)"),
            Column("page_views", "BIGINT", "Of those, page views (`[report] page_view_events`)"),
            Column("landing_page", "VARCHAR", "Path of the session's first page view"),
            Column("exit_page", "VARCHAR", "Path of the session's last page view"),
            Column("source", "VARCHAR", f"The session's {_SOURCE}"),
            Column("country", "VARCHAR", "Country of the first event"),
            Column("city", "VARCHAR", "City of the first event"),
            Column("platform", "VARCHAR", "Platform of the first event (`Web`, `iOS`...)"),
            Column("os_name", "VARCHAR", "OS (browser, for web) of the first event"),
            Column("device_family", "VARCHAR", "Device family of the first event"),
            Column("device_type", "VARCHAR", "Device type of the first event"),
            Column(
                "is_new_user",
                "BOOLEAN",
                "The user's `user_creation_time` falls on the session's day: a new user",
            ),
        ),
    ),
    Table(
        "users",
        "one row per `amplitude_id` seen on a built day: the leads list (rewritten whole "
        "from `users_daily` after every build)",
        (*_USER[:4], Column("days", "BIGINT", "Local days with an event"), *_USER[4:]),
        by_day=False,
    ),
    Table(
        "users_daily",
        "one row per local day and `amplitude_id` with an event or a session that day: what "
        "`users` is folded from (its figures are the day's)",
        (DAY, *_USER),
    ),
    Table(
        "pages_daily",
        "one row per local day and page path (page views by `event_time`; entrances, exits, "
        "went on and time on page from the sessions starting that day)",
        (
            DAY,
            Column("path", "VARCHAR", "Page path (`[report] page_path_keys`); null: none"),
            Column("views", "BIGINT", "Page views of the path that day"),
            Column("visitors", "BIGINT", "Distinct `amplitude_id` among those views"),
            Column("entrances", "BIGINT", "Sessions of the day landing on the path"),
            Column("exits", "BIGINT", "Sessions of the day whose last page view was the path"),
            Column(
                "session_visitors",
                "BIGINT",
                "Distinct users viewing the path in a session of the day",
            ),
            Column(
                "went_on",
                "BIGINT",
                "Of those, users with another event after their first view of the path in "
                "the same session",
            ),
            Column("went_on_share", "DOUBLE", "`went_on / session_visitors` (null when 0)"),
            Column(
                "median_time_on_page_s",
                "DOUBLE",
                "Median seconds from a view to the next event in its session (views followed "
                "by one)",
            ),
        ),
    ),
    Table(
        "daily",
        "one row per local day: the numbers of Amplitude's charts",
        (
            DAY,
            Column("events", "BIGINT", "Events with their `event_time` on the day"),
            Column("active_users", "BIGINT", "Distinct `amplitude_id` among them"),
            Column("new_users", "BIGINT", "Of those, users whose `user_creation_time` is that day"),
            Column("sessions", "BIGINT", "Sessions starting that day"),
            Column("page_views", "BIGINT", "Page views"),
            Column("avg_session_s", "DOUBLE", "Mean session duration, seconds (null: none)"),
            Column(
                "status",
                "VARCHAR",
                "`final`: every upload hour that can still add to the day (`[models] "
                "lateness_hours`) is extracted; `provisional`: some are not yet",
            ),
        ),
    ),
    Table(
        "daily_events",
        "one row per local day and `event_type`: Amplitude's event segmentation",
        (
            DAY,
            Column("event_type", "VARCHAR", "The event type"),
            Column("events", "BIGINT", "Events (totals)"),
            Column("users", "BIGINT", "Distinct `amplitude_id` (uniques)"),
        ),
    ),
)


def table(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)


_ARROW = {
    "DATE": pa.date32(),
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(model: Table) -> pa.Schema:
    return pa.schema([pa.field(c.name, _ARROW[c.sql]) for c in model.columns])


def column_table(name: str) -> str:
    """The Markdown table of one model table's columns (``docs/models.md``)."""
    model = table(name)
    rows = ["| column | type | meaning |\n", "| --- | --- | --- |\n"]
    rows += [f"| `{c.name}` | {c.sql} | {c.doc} |\n" for c in model.columns]
    return "".join(rows)
