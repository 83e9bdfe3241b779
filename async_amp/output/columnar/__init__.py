"""Analytics-ready output formats: the event schema and the NDJSON -> Arrow/Parquet converter.

The converter (and what it pulls in: pyarrow.compute, the archive reader) loads on first use,
so what only needs the schema (the report's and the models' readers) does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports

if TYPE_CHECKING:
    from .convert import BATCH_ROWS, ParquetFacts, iter_event_batches, write_parquet
    from .schema import (
        COLUMNS,
        EVENT_SCHEMA,
        EXTRA,
        JSON_TYPE,
        LINEAGE,
        Column,
        plain_schema,
    )

_HOMES = {
    "convert": ("BATCH_ROWS", "ParquetFacts", "iter_event_batches", "write_parquet"),
    "schema": (
        "COLUMNS",
        "EVENT_SCHEMA",
        "EXTRA",
        "JSON_TYPE",
        "LINEAGE",
        "Column",
        "plain_schema",
    ),
}
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())

__all__ = [
    "BATCH_ROWS",
    "COLUMNS",
    "EVENT_SCHEMA",
    "EXTRA",
    "JSON_TYPE",
    "LINEAGE",
    "Column",
    "ParquetFacts",
    "iter_event_batches",
    "plain_schema",
    "write_parquet",
]
