"""Reading the ``merged_ids`` table back (local output): for the models, which count one
person once across devices and merges (``resolve_ids``), and for anyone in Python::

    from async_amp.merged.read import read_merged_ids, resolve_ids
    table = read_merged_ids(config, "website")     # every committed row, a pyarrow Table
    survivor = resolve_ids(table)                  # {amplitude_id: the id it ends up as}
    person = survivor.get(amplitude_id, amplitude_id)

Only hours with a manifest count (a committed hour); an output without the table gives an
empty table of the same columns.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..manifest import MANIFEST_NAME, Manifest
from .names import merged_root
from .schema import MERGED_SCHEMA, rows_of

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["read_merged_ids", "resolve_ids"]


def _file_rows(path: Path, hour: datetime, source: str) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path, schema=MERGED_SCHEMA)
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    columns, _ = rows_of(data.splitlines(), hour=hour, source=source or path.name)
    return pa.table(columns, schema=MERGED_SCHEMA)


def read_merged_ids(config: Config, project: str) -> pa.Table:
    """Every committed row of ``project``'s ``merged_ids`` table in the local output
    ``[output] dir`` (Delta: the table's latest version)."""
    root = config.output.dir.expanduser().resolve() / merged_root(project)
    if config.output.data_format == "delta":
        from deltalake import DeltaTable  # noqa: PLC0415 - only for Delta outputs

        if not (root / "_delta_log").is_dir():
            return MERGED_SCHEMA.empty_table()
        return DeltaTable(str(root)).to_pyarrow_table().cast(MERGED_SCHEMA)
    tables = [MERGED_SCHEMA.empty_table()]
    for manifest_path in sorted(root.glob(f"date=*/hour=*/{MANIFEST_NAME}")):
        manifest = Manifest.loads(manifest_path.read_bytes())
        for entry in manifest.files:
            tables.append(
                _file_rows(manifest_path.parent / entry.name, manifest.hour, entry.source)
            )
    return pa.concat_tables(tables)


def resolve_ids(merges: pa.Table | Mapping[int, int]) -> dict[int, int]:
    """``amplitude_id`` -> the id it finally resolves to, following merges to their end
    (c -> b -> a gives c: a and b: a). An id merged twice keeps its first merge (by
    ``merge_server_time``); a loop, which Amplitude never makes, stops where it would repeat."""
    if isinstance(merges, pa.Table):
        rows: list[dict[str, Any]] = merges.select(
            ["amplitude_id", "merged_amplitude_id", "merge_server_time"]
        ).to_pylist()
        rows.sort(key=lambda r: (r["merge_server_time"] is None, r["merge_server_time"] or 0))
        step: dict[int, int] = {}
        for row in rows:
            old, new = row["amplitude_id"], row["merged_amplitude_id"]
            if old is not None and new is not None and old != new:
                step.setdefault(old, new)
    else:
        step = dict(merges)
    resolved: dict[int, int] = {}
    for start in step:
        seen = {start}
        current = step[start]
        while current in step and step[current] not in seen:
            seen.add(current)
            current = resolved.get(current, step[current])
        resolved[start] = current
    return resolved
