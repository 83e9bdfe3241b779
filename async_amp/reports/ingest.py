"""One hour's stored files -> one normalised DuckDB table ``h``, whatever the format.

Every format ends in the same columns, so the aggregation above it never asks what it read:

    uuid, event_type, device_id, user_id, session_id BIGINT, event_time TIMESTAMP (UTC),
    country, city, os_name, device_family, device_type, amplitude_id,
    user_creation_time TIMESTAMP (UTC), platform,
    is_pv BOOLEAN, path, title, source, company, extra BOOLEAN,
    keys VARCHAR[] (top-level field names), pkeys VARCHAR[] (event_properties keys)

NDJSON (``.json``) and gzip'd NDJSON (``.json.gz``) are read with ``read_ndjson_objects``;
Parquet (``.parquet``, ``async_amp.output.columnar.EVENT_SCHEMA``: typed columns,
``event_properties`` as JSON, unknown fields and ill-typed values in ``_extra``) with
``read_parquet``; an ill-typed value of a column read here (a string ``session_id``) is taken back
from ``_extra``. In NDJSON, rows with top-level fields outside that schema count as ``extra``
(Parquet keeps those in ``_extra``; it also puts ill-typed values there, which NDJSON rows
are not checked for).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import duckdb

from ..config import ReportConfig
from ..output.columnar.schema import COLUMNS, EXTRA, LINEAGE

__all__ = [
    "KNOWN_FIELDS",
    "Format",
    "file_format",
    "hour_keys",
    "hour_source",
    "load_hour",
    "source_sql",
    "sql_text",
]

Format = Literal["ndjson", "parquet"]

# The Export API's documented top-level fields: what the Parquet schema gives a column each;
# anything else is what a Parquet file keeps in ``_extra``.
KNOWN_FIELDS: tuple[str, ...] = tuple(c.key for c in COLUMNS)
_COLUMNS = (
    "uuid", "event_type", "device_id", "user_id", "session_id", "event_time", "country", "city",
    "os_name", "device_family", "device_type", "amplitude_id", "user_creation_time", "platform",
)  # fmt: skip
_PARQUET_META = (*(c.name for c in (EXTRA, *LINEAGE)), "date", "hour")  # Delta partitions


def file_format(name: str) -> Format | None:
    """The format of a stored data file by its name; ``None`` for files the report skips
    (``_quarantine.ndjson``: lines that are no events)."""
    if name.startswith("_"):
        return None
    if name.endswith((".json", ".json.gz", ".ndjson", ".ndjson.gz")):
        return "ndjson"
    if name.endswith(".parquet"):
        return "parquet"
    return None


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def source_sql(value: str) -> str:
    """SQL normalising a source (UTM value, referring domain or referrer URL) to one name per
    site: lower case, without scheme, ``www.``, path, port, and a ``.com``/``.co.<cc>``/
    ``.com.<cc>`` ending, so ``https://www.google.com/``, ``www.google.com`` and ``google``
    are all ``google``; ``NULL`` when nothing is left."""
    host = (
        f"regexp_extract(lower(trim({value})), "
        "'^(?:[a-z][a-z0-9+.-]*://)?(?:www[.])?([^/?#:]*)', 1)"
    )
    return f"nullif(regexp_replace({host}, '[.](com|co[.][a-z][a-z]|com[.][a-z][a-z])$', ''), '')"


def _derived(settings: ReportConfig, raw_source: bool) -> tuple[str, str]:
    """The settings-driven columns, over ``props``/``uprops`` JSON and the typed columns
    (``raw_source``: the source as found, not normalised; null when none).

    Each JSON column is parsed once: one ``json_extract_string`` with the list of every key
    wanted from it, then ``coalesce`` over the list's items (empty and "EMPTY" count as absent).
    """
    wanted_p = list(
        dict.fromkeys((*settings.page_path_keys, *settings.page_title_keys, *settings.source_keys))
    )
    wanted_u = list(dict.fromkeys((*settings.source_keys, *settings.company_keys)))

    def pick(column: str, wanted: list[str], keys: tuple[str, ...]) -> str:
        items = [f"nullif(nullif({column}[{wanted.index(k) + 1}], ''), 'EMPTY')" for k in keys]
        return ", ".join(items) if items else "NULL"

    events = ", ".join(sql_text(e) for e in settings.page_view_events)
    sources = (
        pick("pv", wanted_p, settings.source_keys)
        + ", "
        + pick("uv", wanted_u, settings.source_keys)
    )
    source = (
        f"coalesce({sources})"
        if raw_source
        else f"coalesce({source_sql(f'coalesce({sources})')}, 'direct')"
    )
    return (
        f"event_type IN ({events}) AS is_pv, "
        f"coalesce({pick('pv', wanted_p, settings.page_path_keys)}) AS path, "
        f"coalesce({pick('pv', wanted_p, settings.page_title_keys)}) AS title, "
        f"{source} AS source, "
        f"coalesce({pick('uv', wanted_u, settings.company_keys)}) AS company"
    ), (
        f"json_extract_string(props, [{', '.join(sql_text(k) for k in wanted_p)}]) AS pv, "
        f"json_extract_string(uprops, [{', '.join(sql_text(k) for k in wanted_u)}]) AS uv"
    )


def _ndjson_select(files: str, settings: ReportConfig, raw_source: bool) -> str:
    known = "[" + ", ".join(sql_text(k) for k in KNOWN_FIELDS) + "]"
    picks = ", ".join(
        f"TRY_CAST(v[{i + 1}] AS {_type(c)}) AS {c}"
        if _type(c) != "VARCHAR"
        else f"v[{i + 1}] AS {c}"
        for i, c in enumerate(_COLUMNS)
    )
    paths = "[" + ", ".join(sql_text(c) for c in _COLUMNS) + "]"
    derived, extract = _derived(settings, raw_source)
    return f"""
        WITH raw AS (
            SELECT json_extract_string(json, {paths}) AS v,
                   json -> 'event_properties' AS props, json -> 'user_properties' AS uprops,
                   json_keys(json) AS keys
            FROM read_ndjson_objects({files}, compression = 'auto_detect')
        ), x AS (SELECT *, {extract} FROM raw)
        SELECT {picks}, {derived},
               len(list_filter(keys, lambda k: NOT list_contains({known}, k))) > 0 AS extra,
               keys, json_keys(props) AS pkeys
        FROM x"""


def _parquet_select(
    con: duckdb.DuckDBPyConnection, relation: str, settings: ReportConfig, raw_source: bool
) -> str:
    """Rows of the Parquet schema (``formats.EVENT_SCHEMA``) from ``relation``: a
    ``read_parquet(...)`` call, or the name of a registered Arrow table (a Delta table's rows,
    with its ``date``/``hour`` partition columns)."""
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}

    def col(name: str, cast: str) -> str:
        # an ill-typed value (a string session_id, a number user_id) is kept in _extra
        kept = (
            f"TRY_CAST(json_extract_string(TRY_CAST(_extra AS JSON), {sql_text('$.' + name)}) "
            f"AS {cast})"
            if "_extra" in present
            else "NULL"
        )
        typed = f"TRY_CAST({name} AS {cast})" if name in present else "NULL"
        return f"coalesce({typed}, {kept})::{cast} AS {name}"

    def js(name: str) -> str:
        return f"TRY_CAST({name} AS JSON)" if name in present else "NULL::JSON"

    typed = ", ".join(col(c, _type(c)) for c in _COLUMNS)
    fixed = "[" + ", ".join(sql_text(c) for c in sorted(present - set(_PARQUET_META))) + "]"
    derived, extract = _derived(settings, raw_source)
    return f"""
        WITH raw AS (
            SELECT {typed}, {js("event_properties")} AS props, {js("user_properties")} AS uprops,
                   {js("_extra")} AS extra_json
            FROM {relation}
        ), x AS (SELECT *, {extract} FROM raw)
        SELECT {", ".join(_COLUMNS)}, {derived},
               coalesce(len(json_keys(extra_json)), 0) > 0 AS extra,
               list_concat({fixed}, coalesce(json_keys(extra_json), [])) AS keys,
               json_keys(props) AS pkeys
        FROM x"""


def hour_source(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    settings: ReportConfig,
    tables: Sequence[str] = (),
    *,
    raw_source: bool = False,
) -> str | None:
    """SQL for the hours' rows in the normalised columns (``keys``/``pkeys`` lists included),
    from files and from registered Arrow ``tables`` of the Parquet schema; ``None`` when there
    is nothing the report reads. ``raw_source``: ``source`` as found, null when none (the
    caller normalises each distinct value once with ``source_sql``: the regular expressions
    are most of the cost of a row)."""
    by_format: dict[Format, list[Path]] = {}
    for path in paths:
        fmt = file_format(path.name)
        if fmt is not None:
            by_format.setdefault(fmt, []).append(path)
    selects = []
    for fmt, group in sorted(by_format.items()):
        files = "[" + ", ".join(sql_text(str(p)) for p in group) + "]"
        if fmt == "ndjson":
            selects.append(_ndjson_select(files, settings, raw_source))
        else:
            selects.append(
                _parquet_select(
                    con, f"read_parquet({files}, union_by_name = true)", settings, raw_source
                )
            )
    selects += [_parquet_select(con, table, settings, raw_source) for table in tables]
    return " UNION ALL BY NAME ".join(f"({s})" for s in selects) if selects else None


def load_hour(con: duckdb.DuckDBPyConnection, source: str | None, time_zone: str) -> int:
    """Replace the temporary table ``h`` with the hour's rows; returns how many it holds.

    The key lists are not kept (they would be most of the table): ``keysig``/``pkeysig`` hash
    them, and ``hour_keys`` reads the names again only for signatures not seen before.
    """
    con.execute("DROP TABLE IF EXISTS h").fetchall()
    local = f"timezone({sql_text(time_zone)}, event_time::TIMESTAMPTZ)"
    body = source or _EMPTY
    con.execute(
        f"CREATE TEMP TABLE h AS SELECT * EXCLUDE (keys, pkeys), hash(uuid) AS uhash, "
        f"hash(keys) AS keysig, hash(pkeys) AS pkeysig, isodow({local}) AS dow, "
        f"hour({local}) AS local_hour FROM ({body})"
    ).fetchall()
    return int(con.execute("SELECT count(*) FROM h").fetchall()[0][0])


def hour_keys(
    con: duckdb.DuckDBPyConnection, source: str, column: Literal["keys", "pkeys"], sigs: list[int]
) -> list[str]:
    """The distinct names in ``column`` of the rows whose list hashes to one of ``sigs``."""
    listed = "[" + ", ".join(str(int(s)) for s in sigs) + "]::UBIGINT[]"
    rows = con.execute(
        f"SELECT DISTINCT unnest({column}) FROM ({source}) "
        f"WHERE list_contains({listed}, hash({column}))"
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


def _type(column: str) -> str:
    times = {"event_time": "TIMESTAMP", "user_creation_time": "TIMESTAMP"}
    return {"session_id": "BIGINT", **times}.get(column, "VARCHAR")


_EMPTY = (
    "SELECT "
    + ", ".join(f"NULL::{_type(c)} AS {c}" for c in _COLUMNS)
    + ", false AS is_pv, NULL::VARCHAR AS path, NULL::VARCHAR AS title, "
    "NULL::VARCHAR AS source, NULL::VARCHAR AS company, false AS extra, "
    "[]::VARCHAR[] AS keys, []::VARCHAR[] AS pkeys LIMIT 0"
)
