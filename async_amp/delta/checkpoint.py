"""Checkpoints every reader can read: written by delta-rs, then re-encoded plainly.

delta-rs (1.6.6) writes its checkpoints with dictionary (``RLE_DICTIONARY``) encoding on
nearly every column and with column indexes, whatever the table says
(``delta-rs.checkpoint.useRunLengthEncoding = false`` changed nothing here). Public reports
name such checkpoints as what Fabric's SQL analytics endpoint (delta-rs #3212), Databricks
Photon (#4247) and Trino (trino #18760, column indexes) fail on. So async-amp's commits do not
let delta-rs checkpoint (``table.NO_HOOK``); after a commit that is ``delta.checkpointInterval``
(``layout.CHECKPOINT_INTERVAL``) or more versions past the last checkpoint, ``after_commit``:

1. has delta-rs write the checkpoint of that version (the actions, as delta-rs reconciles them);
2. rewrites the same file with pyarrow: the same rows and schema, ``PLAIN`` encoding on every
   column (no dictionary), data page v1, no page index (column/offset indexes), snappy;
3. brings ``_last_checkpoint``'s ``sizeInBytes`` up to date;
4. deletes log entries older than ``delta.logRetentionDuration`` (delta-rs' cleanup).

Each file is replaced whole (a rename locally, one PUT on Azure or S3): a reader sees the
old bytes or the new ones. A checkpoint is an optional shortcut for readers: one that fails
here is logged by the caller, never fails the commit already made.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake.exceptions import DeltaError

from .base import TableLocation, local_path, open_table

__all__ = ["PLAIN_OPTIONS", "after_commit", "checkpoint_name", "rewrite_plain"]

DEFAULT_INTERVAL: Final = 100
"""delta-rs' default ``delta.checkpointInterval`` (Spark's is 10)."""
PLAIN_OPTIONS: Final = {
    "use_dictionary": False,
    "column_encoding": "PLAIN",
    "write_page_index": False,
    "data_page_version": "1.0",
    "compression": "snappy",
    "store_schema": False,
}


def checkpoint_name(version: int) -> str:
    return f"_delta_log/{version:020d}.checkpoint.parquet"


def _read(location: TableLocation, name: str) -> bytes:
    folder = local_path(location.uri)
    if folder is not None:
        return (folder / name).read_bytes()
    from deltalake._internal import DeltaFileSystemHandler  # noqa: PLC0415

    store = DeltaFileSystemHandler(location.uri, location.options())
    entry = store.open_input_file(name)
    return bytes(entry.read(entry.size()))


def _replace(location: TableLocation, name: str, body: bytes) -> None:
    folder = local_path(location.uri)
    if folder is not None:
        temp = folder / f"{name}.{os.getpid()}.tmp"
        temp.write_bytes(body)
        temp.replace(folder / name)
        return
    from deltalake._internal import DeltaFileSystemHandler  # noqa: PLC0415

    store = DeltaFileSystemHandler(location.uri, location.options())
    out = store.open_output_stream(name)
    out.write(body)
    out.close()  # type: ignore[attr-defined]


def rewrite_plain(location: TableLocation, version: int) -> int:
    """Re-encode the checkpoint of ``version`` plainly (see the module); return its size."""
    name = checkpoint_name(version)
    rows = pq.read_table(pa.BufferReader(_read(location, name)))
    buffer = io.BytesIO()
    pq.write_table(rows, buffer, **PLAIN_OPTIONS)
    body = buffer.getvalue()
    _replace(location, name, body)
    with contextlib.suppress(FileNotFoundError, DeltaError, ValueError):
        last = json.loads(_read(location, "_delta_log/_last_checkpoint"))
        if last.get("version") == version and "sizeInBytes" in last:
            last["sizeInBytes"] = len(body)
            _replace(location, "_delta_log/_last_checkpoint", json.dumps(last).encode())
    return len(body)


_PLAIN: set[tuple[str, int]] = set()
"""Checkpoints (table, version) this process knows to be plain."""


def _is_plain(location: TableLocation, version: int) -> bool:
    meta = pq.ParquetFile(pa.BufferReader(_read(location, checkpoint_name(version)))).metadata
    return all(
        set(meta.row_group(g).column(c).encodings) <= {"PLAIN", "RLE"}
        and not meta.row_group(g).column(c).has_column_index
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    )


def after_commit(location: TableLocation, version: int) -> bool:
    """Checkpoint ``version`` when the table's interval says so (blocking); True if written.

    A checkpoint another writer left (delta-rs' vacuum writes its own) is re-encoded too."""
    if version <= 0:
        return False
    table = open_table(location, version)
    if table is None:
        return False
    setting = table.metadata().configuration.get("delta.checkpointInterval")
    interval = int(setting) if setting and setting.isdigit() else DEFAULT_INTERVAL
    try:
        last = int(json.loads(_read(location, "_delta_log/_last_checkpoint"))["version"])
    except (FileNotFoundError, DeltaError, ValueError, KeyError, TypeError):
        last = 0
    if last and (location.uri, last) not in _PLAIN:
        with contextlib.suppress(FileNotFoundError, DeltaError):
            if not _is_plain(location, last):
                rewrite_plain(location, last)
            _PLAIN.add((location.uri, last))
    if version - last < max(1, interval):
        return False
    table.create_checkpoint()
    rewrite_plain(location, version)
    _PLAIN.add((location.uri, version))
    table.cleanup_metadata()
    return True
