"""The ``merged_ids`` table: Amplitude's merged-IDs feed, read beside the cloud export's events
(``feed.py``), stored per the output's format (``store.py``), read back for the models
(``read.py``). Its columns: ``schema.py`` and docs/merged-ids.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .names import MERGED_ROOT, merged_hour_of, merged_name, merged_root

if TYPE_CHECKING:
    from ..output.stores.base import Sink, Store
    from .store import MergedTable

__all__ = [
    "MERGED_ROOT",
    "merged_hour_of",
    "merged_name",
    "merged_root",
    "merged_table",
]


def merged_table(data_format: str, store: Store, sink: Sink, project: str) -> MergedTable:
    """``project``'s ``merged_ids`` table in ``store``, in the output's format (``sink``: the
    format's sink over ``store``, which knows where a Delta table lives)."""
    from .store import DeltaMergedTable, FilesTable  # noqa: PLC0415 - pyarrow only when used

    if data_format == "delta":
        from ..output.delta.sink import DeltaSink  # noqa: PLC0415 - deltalake only when used

        assert isinstance(sink, DeltaSink)
        return DeltaMergedTable(store, sink.locate(merged_root(project)), project)
    return FilesTable(store, project, data_format)
