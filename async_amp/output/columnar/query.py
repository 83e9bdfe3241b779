"""The SQL that types one member's NDJSON: DuckDB reads every key as its JSON text, and these
expressions check each value's kind before typing it, so a value of the wrong kind lands in
``_extra`` instead of being coerced.

Two ways to read a member, giving the same rows (tests/test_formats.py compares the files):

- ``explicit_read``: the columns named (the schema's keys plus the unknown keys a first pass
  found); DuckDB ignores any other key, so that pass must list them all;
- ``sampled_read``: for a spool whose first line is ``header_line(keys)``, an object with every
  key DuckDB should read (each an empty object, so each is read as JSON). DuckDB then takes its
  columns from that line alone and fails, naming the line, on any other top-level key
  ("has unknown key"): no separate pass is needed, and the failure sends the member to the
  explicit read. The header line itself is skipped (``OFFSET 1``).

String columns come out with their JSON quotes on (``unquote_strings`` takes them off in Arrow:
cheaper than slicing in SQL); strings with escapes are unescaped by the JSON parser first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from .schema import COLUMNS, EXTRA, Column

__all__ = [
    "HEADER_BYTES",
    "KNOWN",
    "MAX_EVENT_BYTES",
    "bindable",
    "blank_header",
    "build_query",
    "explicit_read",
    "header_line",
    "macro_call",
    "sampled_macro",
    "sampled_read",
    "scan_query",
    "sql_str",
    "unquote_strings",
]

MAX_EVENT_BYTES: Final = 16 * 1024**2
"""The longest line DuckDB accepts (its reader buffers about twice this per thread)."""
HEADER_BYTES: Final = 64 * 1024
"""Room reserved at the start of a spool for ``header_line`` (newline included)."""
KNOWN: Final = frozenset(c.key for c in COLUMNS)
NOT_AN_OBJECT: Final = "\x00not an object"
DUPLICATE_KEY: Final = "\x00duplicate key"
_STRINGS: Final = frozenset(i for i, c in enumerate(COLUMNS) if c.kind == "string")


_MOMENT: Final = (
    r'"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[ T]([01]\d|2[0-3]):[0-5]\d:[0-5]\d'
    r'(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)?"'
)
"""What a timestamp's JSON text must look like (quotes included): Amplitude's
``2026-11-01 05:12:34.123456``, ISO 8601's ``T``, an optional ``Z`` or offset."""
_FIRST: Final = "TIMESTAMPTZ '0001-01-01 00:00:00+00'"
_LAST: Final = "TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'"


def sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _typed(column: Column, raw: str) -> str:
    """SQL giving the column's value from ``raw`` (its JSON text), NULL when it does not fit.

    The first character of a value's JSON text tells its kind, so the checks are plain
    string tests; only strings with escapes are unescaped by the JSON parser.
    """
    text = f"({raw})::VARCHAR"
    quoted = f"starts_with({text}, '\"')"
    if column.kind == "string":  # still quoted: unquote_strings takes the quotes off
        return (
            f"CASE WHEN {quoted} THEN CASE WHEN contains({text}, '\\') "
            f"THEN '\"' || json_extract_string({raw}, '$') || '\"' ELSE {text} END END"
        )
    if column.kind == "int64":
        return (
            f"CASE WHEN NOT {quoted} AND NOT regexp_matches({text}, '[.eE]') "
            f"THEN TRY_CAST({text} AS BIGINT) END"
        )
    if column.kind == "float64":
        # integers only where a double holds them exactly; no overflow to infinity, no NaN
        number = f"TRY_CAST({text} AS DOUBLE)"
        return (
            f"CASE WHEN NOT {quoted} AND {text} NOT IN ('true', 'false') "
            f"AND (regexp_matches({text}, '[.eE]') "
            f"OR abs(TRY_CAST({text} AS HUGEINT)) <= 9007199254740992) "
            f"AND isfinite({number}) "
            f"THEN {number} END"
        )
    if column.kind == "bool":
        return f"CASE {text} WHEN 'true' THEN true WHEN 'false' THEN false END"
    if column.kind == "timestamp":
        # only a full date and time that a microsecond timestamp of years 1-9999 holds
        # exactly: not `infinity`, `epoch`, a date alone, nanoseconds or year 10000
        moment = f"TRY_CAST({raw} AS TIMESTAMPTZ)"
        return (
            f"CASE WHEN regexp_full_match({text}, '{_MOMENT}') "
            f"AND {moment} BETWEEN {_FIRST} AND {_LAST} THEN {moment} END"
        )
    return raw


def bindable(keys: Iterable[str]) -> bool:
    """Whether DuckDB can read ``keys`` as columns by name (``explicit_read``, a header line):
    none empty, and no two differing only in case (DuckDB binds names case-insensitively)."""
    folded = [k.casefold() for k in keys]
    return all(folded) and len(set(folded)) == len(folded)


def explicit_read(path: str, keys: Sequence[str]) -> str:
    """``read_json`` of ``path`` with exactly ``keys`` as JSON columns (other keys ignored);
    when DuckDB cannot bind them by name (``bindable``), each value is taken by its exact
    key instead (a JSON pointer: slower, but any key is only data)."""
    if not bindable(keys):
        return _pointer_read(path, keys)
    columns = "{" + ", ".join(f"{sql_str(k)}: 'JSON'" for k in keys) + "}"
    return (
        f"read_json({sql_str(path)}, format = 'newline_delimited', records = true, "
        f"columns = {columns}, maximum_object_size = {MAX_EVENT_BYTES})"
    )


def _pointer(key: str) -> str:
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _pointer_read(path: str, keys: Sequence[str]) -> str:
    paths = "[" + ", ".join(sql_str(_pointer(k)) for k in keys) + "]"
    values = ", ".join(
        f"CASE WHEN _aa_v[{i}]::VARCHAR <> 'null' THEN _aa_v[{i}] END"
        for i in range(1, len(keys) + 1)
    )
    return (
        f"(SELECT {values} FROM (SELECT json_extract(json, {paths}) AS _aa_v "  # noqa: S608
        f"FROM read_ndjson_objects({sql_str(path)}, maximum_object_size = {MAX_EVENT_BYTES})))"
    )


def sampled_read(path: str) -> str:
    """The rows of a spool that starts with ``header_line``, its columns taken from that line;
    DuckDB fails on a top-level key the line does not name."""
    return _sampled(sql_str(path))


def _sampled(path_sql: str) -> str:
    # the path is quoted by sql_str, or is the macro's parameter
    return (
        f"(SELECT * FROM read_json({path_sql}, format = 'newline_delimited', "  # noqa: S608
        f"records = true, sample_size = 1, maximum_depth = 1, "
        f"maximum_object_size = {MAX_EVENT_BYTES}) OFFSET 1)"
    )


_PARAMS: Final = ("_aa_spool_path", "_aa_export_hour", "_aa_source_file")


def sampled_macro(name: str, keys: Sequence[str], unknown: Iterable[str]) -> str:
    """SQL making ``name(path, hour, source)`` a table macro of ``build_query``'s rows for the
    spool at ``path`` (``sampled_read``): defined once, each member's query is one short call
    (``macro_call``) instead of ~20 kB of SQL to parse, bind and plan (measured: ~50 -> ~25 ms
    of CPU per member, whatever its size). ``""`` when a key has a parameter's name (DuckDB
    would read the parameter for that column)."""
    if any(k.casefold() in _PARAMS for k in keys):
        return ""
    path, hour, source = _PARAMS
    select = _select(_sampled(path), keys, unknown, hour, source)
    return f"CREATE OR REPLACE TEMP MACRO {ident(name)}({', '.join(_PARAMS)}) AS TABLE {select}"


def macro_call(name: str, path: str, export_hour: datetime, source: str) -> str:
    """The rows of ``sampled_macro``'s ``name`` for one spool."""
    return f"SELECT * FROM {ident(name)}({sql_str(path)}, {_hour(export_hour)}, {sql_str(source)})"  # noqa: S608


def header_line(keys: Sequence[str]) -> bytes:
    """The spool's first line naming ``keys``, padded to ``HEADER_BYTES``; ``b""`` when they do
    not fit."""
    text = ("{" + ",".join(f"{json.dumps(k)}:{{}}" for k in keys) + "}").encode()
    if len(text) >= HEADER_BYTES:
        return b""
    return text.ljust(HEADER_BYTES - 1) + b"\n"


def blank_header() -> bytes:
    """What a spool starts with before any key is known: an empty object, padded."""
    return header_line([])


def build_query(
    read: str, keys: Sequence[str], unknown: Iterable[str], export_hour: datetime, source: str
) -> str:
    """The SQL turning the rows of ``read`` (columns: the schema's keys, then ``unknown``'s, as
    JSON) into rows of ``EVENT_SCHEMA`` (string columns still quoted)."""
    return _select(read, keys, unknown, _hour(export_hour), sql_str(source))


def _hour(export_hour: datetime) -> str:
    return f"TIMESTAMPTZ {sql_str(export_hour.strftime('%Y-%m-%d %H:%M:%S') + '+00')}"


def _select(
    read: str, keys: Sequence[str], unknown: Iterable[str], hour_sql: str, source_sql: str
) -> str:
    """``build_query`` with the hour and the source as SQL (literals, or a macro's parameters).

    The read's columns are renamed by position (``_aa_k0``...) and the typed values named
    ``_aa_t0``...: a key's name is only ever data (a key spelled ``t.uuid``, ``_aa_k0`` or
    like a column in another case reads nothing but its own value)."""
    position = {k: i for i, k in enumerate(keys)}
    raw = [f"_aa_k{i}" for i in range(len(keys))]
    typed_name = {c.key: f"_aa_t{position[c.key]}" for c in COLUMNS}
    typed = ", ".join(f"{_typed(c, raw[position[c.key]])} AS {typed_name[c.key]}" for c in COLUMNS)
    pieces: list[str] = []
    misfit: list[str] = []
    for c in COLUMNS:
        if c.kind == "json":
            continue
        value = raw[position[c.key]]
        bad = f"({value} IS NOT NULL AND {typed_name[c.key]} IS NULL)"
        misfit.append(bad)
        pieces.append(f"CASE WHEN {bad} THEN {sql_str(json.dumps(c.key) + ':')} || {value} END")
    for key in sorted(unknown):
        value = raw[position[key]]
        misfit.append(f"{value} IS NOT NULL")
        pieces.append(
            f"CASE WHEN {value} IS NOT NULL THEN {sql_str(json.dumps(key) + ':')} || {value} END"
        )
    joined = ", ".join(pieces)
    extra = f"CASE WHEN {' OR '.join(misfit)} THEN '{{' || concat_ws(',', {joined}) || '}}' END"
    outputs = ", ".join(
        f"{typed_name[c.key] if c.kind != 'json' else raw[position[c.key]]} AS {ident(c.name)}"
        for c in COLUMNS
    )
    # every name and value below is quoted by sql_str or ident
    return (
        f"SELECT {outputs}, {extra} AS {ident(EXTRA.name)}, "  # noqa: S608
        f"{hour_sql} AS _export_hour, {source_sql} AS _source_file "
        f"FROM (SELECT {', '.join(raw)}, {typed} FROM {read} AS _aa_read({', '.join(raw)}))"
    )


def scan_query(path: str, *, skip_header: bool) -> str:
    """The distinct top-level keys of ``path`` the schema does not know, ``NOT_AN_OBJECT``
    among them when a line is not an object. Lines whose keys are exactly the schema's, in
    order (as Amplitude sends them), are let through by one list comparison."""
    rel = f"read_ndjson_objects({sql_str(path)}, maximum_object_size = {MAX_EVENT_BYTES})"
    if skip_header:
        rel = f"(SELECT json FROM {rel} OFFSET 1)"  # noqa: S608
    known = "[" + ", ".join(sql_str(k) for k in sorted(KNOWN)) + "]"
    return (
        "SELECT DISTINCT unnest(CASE WHEN NOT starts_with(ltrim(json), '{') "  # noqa: S608
        f"THEN [{sql_str(NOT_AN_OBJECT)}] "
        "WHEN len(list_distinct(json_keys(json))) < len(json_keys(json)) "
        f"THEN [{sql_str(DUPLICATE_KEY)}] "
        f"ELSE list_filter(json_keys(json), lambda k: NOT list_contains({known}, k)) END) "
        f"FROM {rel} WHERE json_keys(json) IS DISTINCT FROM {known}"
    )


def unquote_strings(batch: pa.RecordBatch, pool: pa.MemoryPool) -> list[pa.Array]:
    """The batch's columns, the schema's string columns without their JSON quotes."""
    return [
        pc.utf8_slice_codeunits(a, 1, -1, memory_pool=pool) if i in _STRINGS else a
        for i, a in enumerate(batch.columns)
    ]
