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
_STRINGS: Final = frozenset(i for i, c in enumerate(COLUMNS) if c.kind == "string")


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
        # integers are accepted only where a double holds them exactly
        return (
            f"CASE WHEN NOT {quoted} AND {text} NOT IN ('true', 'false') "
            f"AND (regexp_matches({text}, '[.eE]') "
            f"OR abs(TRY_CAST({text} AS HUGEINT)) <= 9007199254740992) "
            f"THEN TRY_CAST({text} AS DOUBLE) END"
        )
    if column.kind == "bool":
        return f"CASE {text} WHEN 'true' THEN true WHEN 'false' THEN false END"
    if column.kind == "timestamp":
        return (
            f"CASE WHEN {quoted} AND NOT contains({text}, '\\') "
            f"THEN TRY_CAST({raw} AS TIMESTAMPTZ) END"
        )
    return raw


def explicit_read(path: str, keys: Iterable[str]) -> str:
    """``read_json`` of ``path`` with exactly ``keys`` as JSON columns (other keys ignored)."""
    columns = "{" + ", ".join(f"{sql_str(k)}: 'JSON'" for k in keys) + "}"
    return (
        f"read_json({sql_str(path)}, format = 'newline_delimited', records = true, "
        f"columns = {columns}, maximum_object_size = {MAX_EVENT_BYTES})"
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
    """``build_query`` with the hour and the source as SQL (literals, or a macro's parameters)."""
    extra_keys = sorted(unknown)
    typed = ", ".join(f"{_typed(c, ident(c.key))} AS {ident('t.' + c.key)}" for c in COLUMNS)
    raws = ", ".join(ident(k) for k in keys)
    pieces: list[str] = []
    misfit: list[str] = []
    for c in COLUMNS:
        if c.kind == "json":
            continue
        bad = f"({ident(c.key)} IS NOT NULL AND {ident('t.' + c.key)} IS NULL)"
        misfit.append(bad)
        pieces.append(
            f"CASE WHEN {bad} THEN {sql_str(json.dumps(c.key) + ':')} || {ident(c.key)} END"
        )
    for key in extra_keys:
        misfit.append(f"{ident(key)} IS NOT NULL")
        pieces.append(
            f"CASE WHEN {ident(key)} IS NOT NULL "
            f"THEN {sql_str(json.dumps(key) + ':')} || {ident(key)} END"
        )
    joined = ", ".join(pieces)
    extra = f"CASE WHEN {' OR '.join(misfit)} THEN '{{' || concat_ws(',', {joined}) || '}}' END"
    outputs = ", ".join(
        f"{ident('t.' + c.key) if c.kind != 'json' else ident(c.key)} AS {ident(c.name)}"
        for c in COLUMNS
    )
    # every name and value below is quoted by sql_str or ident
    return (
        f"SELECT {outputs}, {extra} AS {ident(EXTRA.name)}, "  # noqa: S608
        f"{hour_sql} AS _export_hour, {source_sql} AS _source_file "
        f"FROM (SELECT {raws}, {typed} FROM {read})"
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
        "SELECT DISTINCT unnest(CASE WHEN starts_with(ltrim(json), '{') "  # noqa: S608
        f"THEN list_filter(json_keys(json), lambda k: NOT list_contains({known}, k)) "
        f"ELSE [{sql_str(NOT_AN_OBJECT)}] END) FROM {rel} "
        f"WHERE json_keys(json) IS DISTINCT FROM {known}"
    )


def unquote_strings(batch: pa.RecordBatch, pool: pa.MemoryPool) -> list[pa.Array]:
    """The batch's columns, the schema's string columns without their JSON quotes."""
    return [
        pc.utf8_slice_codeunits(a, 1, -1, memory_pool=pool) if i in _STRINGS else a
        for i, a in enumerate(batch.columns)
    ]
