"""Reading the ``merged_ids`` table back, from any store and format: for the models, which
count one person once across devices and merges (``resolve_ids``), and for anyone in Python::

    from async_amp.merged.read import merged_ids, resolve_ids
    table = await merged_ids(config, "website")    # every committed row, a pyarrow Table
    survivor = resolve_ids(table)                  # {amplitude_id: the id it ends up as}
    person = survivor.get(amplitude_id, amplitude_id)

``merged_ids_sync`` is the same without an event loop; ``load_merged_ids(output, project)``
reads through an output already open (what the models hold). Only hours with a manifest
count (committed hours); an output without the table gives an empty table of its columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..api import reading_output, sync_twin
from . import merged_table

if TYPE_CHECKING:
    from ..config import Config
    from ..output.open import Output

__all__ = ["load_merged_ids", "merged_ids", "merged_ids_sync", "resolve_ids"]


async def load_merged_ids(output: Output, project: str) -> pa.Table:
    """Every committed row of ``project``'s ``merged_ids`` table in ``output``."""
    fmt = output.config.output.data_format
    return await merged_table(fmt, output.store, output.sink, project).read_all()


async def merged_ids(config: Config, project: str) -> pa.Table:
    """Every committed row of ``project``'s ``merged_ids`` table in the configured output
    (a local folder, Azure, S3 or GCS; only reads)."""
    async with reading_output(config, [project]) as output:
        return await load_merged_ids(output, project)


merged_ids_sync = sync_twin(merged_ids)


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
    for start, first in step.items():
        seen = {start}
        current = first
        while current in step and step[current] not in seen:
            seen.add(current)
            current = step[current]
        resolved[start] = current
    return resolved
