"""One upload hour's events -> its slim rows: the few columns the models read, parsed once.

An hour is read (NDJSON, gzip, Parquet files or a Delta table's rows, through
``reports.ingest``: the report's page view, path, source and company settings) once, when its
manifest is new or changed, into one small Parquet file of ``SLIM_COLUMNS``, with the local
days each row belongs to: ``day`` (of ``event_time``), ``sday`` (of ``session_id``, the
session's start; null without a session) and ``cday`` (of ``user_creation_time``). The days
an hour's rows touch decide which days it makes stale. Rows without an ``event_time`` belong
to no day and are left out.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from ..config import ReportConfig
from ..reports.ingest import hour_source, source_sql, sql_text

__all__ = ["SLIM_COLUMNS", "slim_hour"]

SLIM_COLUMNS = (
    "uuid", "event_type", "amplitude_id", "user_id", "session_id", "event_time",
    "user_creation_time", "country", "city", "platform", "os_name", "device_family",
    "device_type", "is_pv", "path", "source", "company",
)  # fmt: skip

# session ids outside years 1970-3000 are no session (an id the SDK never sets)
_LAST_MS = 32_503_680_000_000


def _local_day(expr: str, time_zone: str) -> str:
    return f"timezone({sql_text(time_zone)}, ({expr})::TIMESTAMPTZ)::DATE"


def slim_hour(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    rows: Any,
    settings: ReportConfig,
    time_zone: str,
    target: Path,
) -> tuple[int, list[date]]:
    """Write the hour's slim rows to ``target`` (a Parquet file); returns how many rows and
    the sorted local days they touch. ``rows``: an Arrow table of the Parquet schema (a Delta
    table's hour) or ``None``."""
    tables: tuple[str, ...] = ()
    if rows is not None:
        con.register("hour_rows", rows)
        tables = ("hour_rows",)
    try:
        source = hour_source(con, paths, settings, tables, raw_source=True)
        if source is None:
            return 0, []
        session = (
            f"CASE WHEN session_id > 0 AND session_id < {_LAST_MS} THEN "
            f"{_local_day('make_timestamp(session_id * 1000)', time_zone)} END"
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE slim AS
            SELECT {", ".join(SLIM_COLUMNS)},
                   {_local_day("event_time", time_zone)} AS day, {session} AS sday,
                   {_local_day("user_creation_time", time_zone)} AS cday
            FROM ({source}) WHERE event_time IS NOT NULL"""
        )
    finally:
        if rows is not None:
            con.unregister("hour_rows")
    try:
        count = int(con.execute("SELECT count(*) FROM slim").fetchall()[0][0])
        days = con.execute(
            "SELECT day FROM slim UNION SELECT sday FROM slim WHERE sday IS NOT NULL ORDER BY 1"
        ).fetchall()
        tmp = target.with_name(f".{target.name}.tmp")
        # each distinct source is normalised once (a few names, against a row's regexes)
        picked = ", ".join(
            "coalesce(n.name, 'direct') AS source" if c == "source" else f"s.{c}"
            for c in (*SLIM_COLUMNS, "day", "sday", "cday")
        )
        con.execute(
            f"""COPY (SELECT {picked} FROM slim s LEFT JOIN (
                    SELECT raw, {source_sql("raw")} AS name
                    FROM (SELECT DISTINCT source AS raw FROM slim)
                ) n ON s.source = n.raw)
            TO {sql_text(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"""
        )
        tmp.replace(target)
        return count, [d for (d,) in days]
    finally:
        con.execute("DROP TABLE IF EXISTS slim")
