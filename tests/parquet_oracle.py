"""A plain-Python oracle of the Parquet schema: what each event must become, column by column."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from async_amp.output.columnar import COLUMNS, EVENT_SCHEMA, JSON_TYPE

_INT64 = (-(2**63), 2**63 - 1)


def _fits(kind: str, value: Any) -> Any:
    """The oracle: the column value for a JSON value, or ``_MISFIT``."""
    if value is None:
        return None
    if kind == "json":
        return value
    if kind == "string":
        return value if isinstance(value, str) else _MISFIT
    if kind == "bool":
        return value if isinstance(value, bool) else _MISFIT
    if isinstance(value, bool):
        return _MISFIT
    if kind == "int64":
        return value if isinstance(value, int) and _INT64[0] <= value <= _INT64[1] else _MISFIT
    if kind == "float64":
        if isinstance(value, float):
            return value if math.isfinite(value) else _MISFIT
        return float(value) if isinstance(value, int) and abs(value) <= 2**53 else _MISFIT
    assert kind == "timestamp"
    if not isinstance(value, str) or not _MOMENT.fullmatch(value):
        return _MISFIT
    try:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return _MISFIT


# docs/schema.md: a date, a time to the second, at most six decimals, an optional zone
_MOMENT = re.compile(
    r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d(:?\d\d)?)?", re.ASCII
)


_MISFIT = object()


def expected_row(obj: dict[str, Any], export_hour: datetime, source: str) -> dict[str, Any]:
    """The row the converter must make of one event (a plain-Python reading of docs/schema.md)."""
    row: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for column in COLUMNS:
        value = _fits(column.kind, obj.get(column.key))
        if value is _MISFIT:
            extra[column.key] = obj[column.key]
            value = None
        row[column.name] = value
    known = {c.key for c in COLUMNS}
    extra.update({k: v for k, v in obj.items() if k not in known and v is not None})
    row["_extra"] = extra or None
    row["_export_hour"] = export_hour
    row["_source_file"] = source
    return row


def actual_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for row in rows:
        for field in EVENT_SCHEMA:
            if field.type == JSON_TYPE and row[field.name] is not None:
                row[field.name] = json.loads(row[field.name])
    return rows


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def assert_rows_match(
    lines: list[dict[str, Any]], table: pa.Table, *, export_hour: datetime, source: str
) -> None:
    """Every row of ``table`` is what the oracle makes of the same line, in line order."""
    got = actual_rows(table)
    assert len(got) == len(lines)
    for number, (obj, row) in enumerate(zip(lines, got, strict=True), start=1):
        want = expected_row(obj, export_hour, source)
        bad = {k: (want[k], row[k]) for k in want if not _same(want[k], row[k])}
        assert not bad, f"{source} line {number}: {bad}"
