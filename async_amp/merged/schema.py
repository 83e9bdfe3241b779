"""The ``merged_ids`` table's schema, declared once: its Parquet files, its Delta table and
docs/merged-ids.md all come from ``MERGED_COLUMNS``.

Amplitude's merged-IDs feed has one JSON object per line: ``scope``, ``merge_time``,
``merge_server_time``, ``amplitude_id``, ``merged_amplitude_id``. Ids are int64 (as the
events' ``amplitude_id``); the two times are ``timestamp[us, tz=UTC]`` from either epoch
milliseconds (a JSON integer) or Amplitude's ``YYYY-MM-DD HH:MM:SS[.ffffff]`` text. A value of
another kind, and any key the feed adds, goes to ``_extra`` (JSON text), so nothing is lost.

Parsing is plain Python (``rows_of``): the feed is small (one line per merge, not per event).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import pyarrow as pa

__all__ = [
    "MERGED_COLUMNS",
    "MERGED_SCHEMA",
    "MergedColumn",
    "merged_column_table",
    "rows_of",
]

MergedKind = Literal["int64", "timestamp", "string"]

_ARROW: Final[dict[MergedKind, pa.DataType]] = {
    "int64": pa.int64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "string": pa.utf8(),
}
_ACCEPTS: Final[dict[MergedKind, str]] = {
    "int64": "a JSON integer within int64",
    "timestamp": "a JSON integer (epoch milliseconds) or a string `YYYY-MM-DD HH:MM:SS[.ffffff]` "
    "(UTC unless it ends in `Z` or an offset)",
    "string": "—",
}
_PARQUET: Final[dict[MergedKind, str]] = {
    "int64": "INT64",
    "timestamp": "INT64 (TIMESTAMP, µs, UTC)",
    "string": "BYTE_ARRAY (STRING)",
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INT64: Final = 2**63


@dataclass(frozen=True, slots=True)
class MergedColumn:
    name: str
    kind: MergedKind
    doc: str
    from_feed: bool = True

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.kind]


MERGED_COLUMNS: Final[tuple[MergedColumn, ...]] = (
    MergedColumn("scope", "int64", "What the merge belongs to in Amplitude (its organization)"),
    MergedColumn(
        "merge_time", "timestamp", "When the merge happened (the event that linked the two ids)"
    ),
    MergedColumn("merge_server_time", "timestamp", "When Amplitude's servers recorded the merge"),
    MergedColumn(
        "amplitude_id", "int64", "The Amplitude ID merged away: a later id of the same person"
    ),
    MergedColumn(
        "merged_amplitude_id",
        "int64",
        "The id it was merged into: the person's original Amplitude ID, which survives",
    ),
)
_LINEAGE: Final[tuple[MergedColumn, ...]] = (
    MergedColumn(
        "_extra",
        "string",
        "JSON object of every key the schema does not know and every value that did not fit "
        "its column; null when the line fit",
        from_feed=False,
    ),
    MergedColumn("_export_hour", "timestamp", "The feed's hour the row was read from", False),
    MergedColumn("_source_file", "string", "The feed's file the row came from", False),
)

MERGED_SCHEMA: Final = pa.schema(
    [pa.field(c.name, c.arrow_type) for c in (*MERGED_COLUMNS, *_LINEAGE)]
)


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not -_INT64 <= value * 1000 < _INT64:
            return None
        try:
            return _EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64:
        return value
    return None


_TYPED: Final = {"int64": _int, "timestamp": _time}


def rows_of(
    lines: Iterable[bytes], *, hour: datetime, source: str
) -> tuple[dict[str, list[Any]], int]:
    """The columns of a feed file's lines (blank lines skipped) and how many rows have
    ``_extra``. Raises ``ValueError`` naming the first line that is not a JSON object."""
    columns: dict[str, list[Any]] = {f.name: [] for f in MERGED_SCHEMA}
    extra_rows = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            msg = f"{source} line {number} is not JSON: {exc}"
            raise ValueError(msg) from None
        if not isinstance(record, dict):
            msg = f"{source} line {number} is not a JSON object"
            raise ValueError(msg)
        extra = {k: v for k, v in record.items() if k not in _KNOWN}
        for column in MERGED_COLUMNS:
            raw = record.get(column.name)
            value = None if raw is None else _TYPED[column.kind](raw)
            if raw is not None and value is None:
                extra[column.name] = raw
            columns[column.name].append(value)
        extra_rows += bool(extra)
        columns["_extra"].append(json.dumps(extra, ensure_ascii=False) if extra else None)
        columns["_export_hour"].append(hour)
        columns["_source_file"].append(source)
    return columns, extra_rows


_KNOWN: Final = frozenset(c.name for c in MERGED_COLUMNS)


def merged_column_table() -> str:
    """The Markdown table of the ``merged_ids`` columns, as docs/merged-ids.md shows it."""
    rows = [
        "| column | Arrow type | Parquet type | a value goes to `_extra` unless it is "
        "| what it holds |\n",
        "|---|---|---|---|---|\n",
    ]
    for c in (*MERGED_COLUMNS, *_LINEAGE):
        accepts = _ACCEPTS[c.kind] if c.from_feed else "—"
        rows.append(
            f"| `{c.name}` | `{c.arrow_type}` | {_PARQUET[c.kind]} | {accepts} | {c.doc} |\n"
        )
    return "".join(rows)
