"""One hour's stored files -> one normalised DuckDB table ``h``, whatever the format.

Every format ends in the same columns, so the aggregation above it never asks what it read:

    uuid, event_type, device_id, user_id, session_id BIGINT, event_time TIMESTAMP (UTC),
    country, city, os_name, device_family, device_type,
    is_pv BOOLEAN, path, title, source, company, extra BOOLEAN,
    keys VARCHAR[] (top-level field names), pkeys VARCHAR[] (event_properties keys)

NDJSON (``.json``) and gzip'd NDJSON (``.json.gz``) are read with ``read_ndjson_objects``;
Parquet (``.parquet``, typed columns with ``event_properties`` as JSON text and unknown fields
in ``_extra``) with ``read_parquet``. Rows whose top-level fields are not in the Export API's
documented schema count as ``extra`` (they are what a Parquet file keeps in ``_extra``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import duckdb

from .settings import ReportSettings

__all__ = ["KNOWN_FIELDS", "Format", "file_format", "load_hour"]

Format = Literal["ndjson", "parquet"]

# The Export API's top-level fields (AMPLITUDE.md); anything else is kept in ``_extra``.
KNOWN_FIELDS: tuple[str, ...] = (
    "$insert_id", "$insert_key", "$schema", "adid", "amplitude_attribution_ids",
    "amplitude_event_type", "amplitude_id", "app", "city", "client_event_time",
    "client_upload_time", "country", "data", "data_type", "device_brand", "device_carrier",
    "device_family", "device_id", "device_manufacturer", "device_model", "device_type", "dma",
    "event_id", "event_properties", "event_time", "event_type", "global_user_properties",
    "group_properties", "groups", "idfa", "ip_address", "is_attribution_event", "language",
    "library", "location_lat", "location_lng", "os_name", "os_version", "partner_id", "paying",
    "plan", "platform", "processed_time", "region", "sample_rate", "server_received_time",
    "server_upload_time", "session_id", "source_id", "start_version", "user_creation_time",
    "user_id", "user_properties", "uuid", "version_name",
)  # fmt: skip
_COLUMNS = (
    "uuid", "event_type", "device_id", "user_id", "session_id", "event_time", "country", "city",
    "os_name", "device_family", "device_type",
)  # fmt: skip
_PARQUET_META = ("_extra", "_export_hour")


def file_format(name: str) -> Format | None:
    """The format of a stored data file by its name; ``None`` for files the report skips."""
    if name.endswith((".json", ".json.gz", ".ndjson", ".ndjson.gz")):
        return "ndjson"
    if name.endswith(".parquet"):
        return "parquet"
    return None


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _json_key(column: str, key: str) -> str:
    return f"nullif(nullif({column} ->> {sql_text(key)}, ''), 'EMPTY')"


def _derived(settings: ReportSettings) -> str:
    """The settings-driven columns, over ``props``/``uprops`` JSON and the typed columns."""
    events = ", ".join(sql_text(e) for e in settings.page_view_events)
    path = ", ".join(_json_key("props", k) for k in settings.page_path_keys)
    title = ", ".join(_json_key("props", k) for k in settings.page_title_keys)
    sources = [_json_key(col, k) for col in ("props", "uprops") for k in settings.source_keys]
    company = ", ".join(_json_key("uprops", k) for k in settings.company_keys) or "NULL"
    return (
        f"event_type IN ({events}) AS is_pv, coalesce({path}) AS path, "
        f"coalesce({title}) AS title, "
        f"lower(coalesce({', '.join(sources)}, 'direct')) AS source, "
        f"coalesce({company}) AS company"
    )


def _ndjson_select(files: str, settings: ReportSettings) -> str:
    known = "[" + ", ".join(sql_text(k) for k in KNOWN_FIELDS) + "]"
    picks = ", ".join(f"v[{i + 1}] AS {c}" for i, c in enumerate(_COLUMNS) if c != "session_id")
    picks = picks.replace("v[6] AS event_time", "TRY_CAST(v[6] AS TIMESTAMP) AS event_time")
    paths = "[" + ", ".join(sql_text(c) for c in _COLUMNS) + "]"
    return f"""
        WITH raw AS (
            SELECT json_extract_string(json, {paths}) AS v,
                   json -> 'event_properties' AS props, json -> 'user_properties' AS uprops,
                   json_keys(json) AS keys
            FROM read_ndjson_objects({files}, compression = 'auto_detect')
        )
        SELECT {picks}, TRY_CAST(v[5] AS BIGINT) AS session_id, {_derived(settings)},
               len(list_filter(keys, lambda k: NOT list_contains({known}, k))) > 0 AS extra,
               keys, json_keys(props) AS pkeys
        FROM raw"""


def _parquet_select(con: duckdb.DuckDBPyConnection, files: str, settings: ReportSettings) -> str:
    present = {
        row[0]
        for row in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({files}, union_by_name = true)"
        ).fetchall()
    }

    def col(name: str, cast: str = "VARCHAR") -> str:
        return (
            f"TRY_CAST({name} AS {cast}) AS {name}"
            if name in present
            else f"NULL::{cast} AS {name}"
        )

    def js(name: str) -> str:
        return f"TRY_CAST({name} AS JSON)" if name in present else "NULL::JSON"

    typed = ", ".join(col(c, _type(c)) for c in _COLUMNS)
    fixed = "[" + ", ".join(sql_text(c) for c in sorted(present - set(_PARQUET_META))) + "]"
    return f"""
        WITH raw AS (
            SELECT {typed}, {js("event_properties")} AS props, {js("user_properties")} AS uprops,
                   {js("_extra")} AS extra_json
            FROM read_parquet({files}, union_by_name = true)
        )
        SELECT * EXCLUDE (extra_json), {_derived(settings)},
               coalesce(len(json_keys(extra_json)), 0) > 0 AS extra,
               list_concat({fixed}, coalesce(json_keys(extra_json), [])) AS keys,
               json_keys(props) AS pkeys
        FROM raw"""


def load_hour(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    settings: ReportSettings,
    time_zone: str,
) -> int:
    """Replace the temporary table ``h`` with the hour's rows; returns how many it holds."""
    con.execute("DROP TABLE IF EXISTS h").fetchall()
    by_format: dict[Format, list[Path]] = {}
    for path in paths:
        fmt = file_format(path.name)
        if fmt is not None:
            by_format.setdefault(fmt, []).append(path)
    selects = []
    for fmt, group in sorted(by_format.items()):
        files = "[" + ", ".join(sql_text(str(p)) for p in group) + "]"
        if fmt == "ndjson":
            selects.append(_ndjson_select(files, settings))
        else:
            selects.append(_parquet_select(con, files, settings))
    if not selects:
        con.execute(f"CREATE TEMP TABLE h AS SELECT * FROM ({_empty(settings)}) LIMIT 0").fetchall()
        return 0
    body = " UNION ALL BY NAME ".join(f"({s})" for s in selects)
    local = f"timezone({sql_text(time_zone)}, event_time::TIMESTAMPTZ)"
    con.execute(
        f"CREATE TEMP TABLE h AS SELECT *, hash(uuid) AS uhash, "
        f"isodow({local}) AS dow, hour({local}) AS local_hour FROM ({body})"
    ).fetchall()
    return int(con.execute("SELECT count(*) FROM h").fetchall()[0][0])


def _type(column: str) -> str:
    return {"session_id": "BIGINT", "event_time": "TIMESTAMP"}.get(column, "VARCHAR")


def _empty(settings: ReportSettings) -> str:
    typed = ", ".join(f"NULL::{_type(c)} AS {c}" for c in _COLUMNS)
    return (
        f"SELECT *, {_derived(settings)}, false AS extra, []::VARCHAR[] AS keys, "
        f"[]::VARCHAR[] AS pkeys, NULL::UBIGINT AS uhash, NULL::BIGINT AS dow, "
        f"NULL::BIGINT AS local_hour FROM (SELECT {typed}, NULL::JSON AS props, "
        f"NULL::JSON AS uprops)"
    )
