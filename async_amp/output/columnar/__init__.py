"""Analytics-ready output formats: the event schema and the NDJSON -> Arrow/Parquet converter."""

from .convert import BATCH_ROWS, ParquetFacts, iter_event_batches, write_parquet
from .schema import COLUMNS, EVENT_SCHEMA, EXTRA, JSON_TYPE, LINEAGE, Column, plain_schema

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
