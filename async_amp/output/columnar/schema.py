"""The event table's schema, declared once: Parquet files, Delta tables and docs/schema.md
all come from ``COLUMNS``.

It follows what Amplitude's own warehouse exports, Fivetran and Airbyte agree on: every
documented top-level field as its own column (``$`` dropped from ``$insert_id`` and friends),
ids and names as strings, counters and epoch-ms ids as int64, coordinates and rates as
float64, the raw ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC, no zone) times as
``timestamp[us, tz=UTC]`` (tz-aware, so a Delta table stays at reader 1 / writer 2), and the
schemaless parts kept whole as JSON text. What fits no column goes to ``_extra``, so nothing
the archive held is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import pyarrow as pa

__all__ = [
    "COLUMNS",
    "EVENT_SCHEMA",
    "EXTRA",
    "JSON_TYPE",
    "LINEAGE",
    "Column",
    "Kind",
    "column_table",
    "plain_schema",
]

Kind = Literal["string", "int64", "float64", "bool", "timestamp", "json"]

JSON_TYPE: Final = pa.json_(pa.utf8())
"""Arrow's canonical JSON extension type: written with Parquet's JSON logical type."""

_ARROW: Final[dict[Kind, pa.DataType]] = {
    "string": pa.utf8(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": JSON_TYPE,
}

ACCEPTS: Final[dict[Kind, str]] = {
    "string": "a JSON string",
    "int64": "a JSON integer within int64",
    "float64": "a finite JSON number (an integer up to 2^53; not NaN or Infinity)",
    "bool": "true or false",
    "timestamp": "a string `YYYY-MM-DD HH:MM:SS[.ffffff]` (or `T`), UTC unless it ends in `Z` "
    "or an offset, of years 1-9999 in UTC (not `infinity`, `epoch`, a date alone, nanoseconds)",
    "json": "any JSON value but null, kept as its JSON text",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name in the table, the event key it comes from, its kind."""

    name: str
    key: str
    kind: Kind
    doc: str

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.kind]


def _c(key: str, kind: Kind, doc: str) -> Column:
    return Column(key.removeprefix("$"), key, kind, doc)


COLUMNS: Final[tuple[Column, ...]] = (
    _c("uuid", "string", "Row identity: unique per event (the key to merge and de-duplicate on)"),
    _c("event_time", "timestamp", "When the event happened (client time, corrected by Amplitude)"),
    _c("event_type", "string", "Event name, e.g. `[Amplitude] Page Viewed`"),
    _c("event_id", "int64", "Event counter within the device"),
    _c("session_id", "int64", "Session start in epoch milliseconds; -1 outside a session"),
    _c("user_id", "string", "Your user id, when set"),
    _c("device_id", "string", "Device or browser id"),
    _c("amplitude_id", "int64", "Amplitude's internal user id"),
    _c("app", "int64", "Amplitude project id"),
    _c("$insert_id", "string", "Client-side de-duplication id (`$insert_id`)"),
    _c("$insert_key", "string", "`$insert_key`"),
    _c("$schema", "int64", "`$schema`"),
    _c("amplitude_event_type", "string", "Amplitude-generated event kind, when any"),
    _c("data_type", "string", "`event` or `identify`..."),
    _c("client_event_time", "timestamp", "Event time on the client clock"),
    _c("client_upload_time", "timestamp", "When the client sent it"),
    _c("server_received_time", "timestamp", "When Amplitude received it"),
    _c("server_upload_time", "timestamp", "When Amplitude stored it (the export's hour)"),
    _c("processed_time", "timestamp", "When Amplitude processed it"),
    _c("user_creation_time", "timestamp", "When the user was first seen"),
    _c("platform", "string", "`Web`, `iOS`, `Android`..."),
    _c("os_name", "string", "OS, or browser for web events"),
    _c("os_version", "string", "OS or browser version"),
    _c("device_brand", "string", "Device brand"),
    _c("device_carrier", "string", "Mobile carrier"),
    _c("device_family", "string", "Device family"),
    _c("device_manufacturer", "string", "Device manufacturer"),
    _c("device_model", "string", "Device model"),
    _c("device_type", "string", "Device type"),
    _c("language", "string", "Language"),
    _c("library", "string", "SDK that sent the event"),
    _c("version_name", "string", "App version"),
    _c("start_version", "string", "App version first seen"),
    _c("country", "string", "Country (from the IP address)"),
    _c("region", "string", "Region"),
    _c("city", "string", "City"),
    _c("dma", "string", "Designated market area (US)"),
    _c("ip_address", "string", "IP address"),
    _c("location_lat", "float64", "Latitude"),
    _c("location_lng", "float64", "Longitude"),
    _c("adid", "string", "Android advertising id"),
    _c("idfa", "string", "iOS advertising id"),
    _c("partner_id", "string", "Partner id"),
    _c("source_id", "string", "Source id"),
    _c("paying", "bool", "Whether the user has paid (when the value is a boolean)"),
    _c("is_attribution_event", "bool", "Whether the event came from an attribution partner"),
    _c("sample_rate", "float64", "Sampling rate, when sampled"),
    _c("event_properties", "json", "The event's properties (JSON object)"),
    _c("user_properties", "json", "The user's properties at the event (JSON object)"),
    _c("group_properties", "json", "Group properties (JSON object)"),
    _c("groups", "json", "Groups the user belongs to (JSON object)"),
    _c("global_user_properties", "json", "Global user properties (JSON object)"),
    _c("plan", "json", "Tracking plan branch/source/version (JSON object)"),
    _c("data", "json", "Amplitude's metadata about the event (JSON object)"),
    _c("amplitude_attribution_ids", "json", "Attribution ids (JSON)"),
)

EXTRA: Final = Column(
    "_extra",
    "",
    "json",
    "JSON object of every top-level key the schema does not know and of every value that did "
    "not fit its column (under its original key); null when the event fit the schema",
)

LINEAGE: Final[tuple[Column, ...]] = (
    Column("_export_hour", "", "timestamp", "The hour the row was exported for"),
    Column("_source_file", "", "string", "The archive member the row came from"),
)

EVENT_SCHEMA: Final = pa.schema(
    [pa.field(c.name, c.arrow_type) for c in (*COLUMNS, EXTRA, *LINEAGE)]
)
"""The Arrow schema of every batch and file: the columns above, ``_extra``, lineage."""


def plain_schema() -> pa.Schema:
    """``EVENT_SCHEMA`` with the JSON columns as plain strings (for writers that do not know
    Arrow's JSON extension type; the text is the same)."""
    return pa.schema(
        [pa.field(f.name, pa.utf8()) if f.type == JSON_TYPE else f for f in EVENT_SCHEMA]
    )


_PARQUET: Final[dict[Kind, str]] = {
    "string": "BYTE_ARRAY (STRING)",
    "int64": "INT64",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "INT64 (TIMESTAMP, µs, UTC)",
    "json": "BYTE_ARRAY (JSON)",
}


def column_table() -> str:
    """The Markdown table of every column, as docs/schema.md shows it."""
    rows = [
        "| column | Arrow type | Parquet type | from the event's | a value goes to `_extra` "
        "unless it is | what it holds |\n",
        "|---|---|---|---|---|---|\n",
    ]
    for c in (*COLUMNS, EXTRA, *LINEAGE):
        source = f"`{c.key}`" if c.key else "—"
        accepts = ACCEPTS[c.kind] if c.key else "—"
        rows.append(
            f"| `{c.name}` | `{c.arrow_type}` | {_PARQUET[c.kind]} | {source} | {accepts} "
            f"| {c.doc} |\n"
        )
    return "".join(rows)
