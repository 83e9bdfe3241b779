"""Checkpoints every reader can read: plain-encoded, and whole before anything names them.

delta-rs (1.6.6) writes its checkpoints with dictionary (``RLE_DICTIONARY``) encoding on
nearly every column and with column indexes, whatever the table says
(``delta-rs.checkpoint.useRunLengthEncoding = false`` changed nothing here). Public reports
name such checkpoints as what Fabric's SQL analytics endpoint (delta-rs #3212), Databricks
Photon (#4247) and Trino (trino #18760, column indexes) fail on. So async-amp's commits do not
let delta-rs checkpoint (``base.NO_HOOK``); after a commit whose version is a multiple of
``delta.checkpointInterval`` (``layout.CHECKPOINT_INTERVAL``; or a quarter interval past a
multiple no checkpoint was written for), ``Checkpoints.after_commit``:

1. copies the log a reader would read for that version (the newest checkpoint before it and
   the JSON commits after that one) into a local scratch folder, and has delta-rs write the
   checkpoint there (the actions, reconciled as delta-rs reconciles them);
2. re-encodes it with pyarrow: the same rows and schema, ``PLAIN`` encoding on every column
   (no dictionary), data page v1, no page index (column/offset indexes), snappy;
3. puts that file into the table's log under its final name, once, whole, only if the name
   is free (a hard link of a complete file locally, which fails if the name exists; one PUT
   with ``If-None-Match: *`` on Azure or S3): two writers checkpointing the same version
   never replace each other's file under a reader (``store.TableFiles.put``);
4. only then writes ``_last_checkpoint`` naming it, if it named an older one, and never
   over a newer one another writer put meanwhile (locally under a lock of the log folder,
   on Azure and S3 a put ``If-Match`` the etag read: ``store.TableFiles.advance``);
5. deletes log entries older than ``delta.logRetentionDuration`` (delta-rs' cleanup).

A checkpoint's name thus appears in the table's log once, with its final bytes: a reader
listing the log never sees a file that changes under it (delta-rs panicked reading a
checkpoint rewritten in place after it was listed). A checkpoint another tool left in
another encoding is not rewritten: the next commit's checkpoint supersedes it.

A checkpoint is an optional shortcut for readers: one that fails here is logged by the
caller, never fails the commit already made.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from .base import TableLocation, open_table
from .store import TableFiles

__all__ = [
    "PLAIN_OPTIONS",
    "Checkpoints",
    "after_commit",
    "checkpoint_name",
    "interval_of",
    "is_plain",
]

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
LOG: Final = "_delta_log"
LAST: Final = f"{LOG}/_last_checkpoint"
_CHECKPOINT = re.compile(r"(\d{20})\.checkpoint\.parquet")


def checkpoint_name(version: int) -> str:
    return f"{LOG}/{version:020d}.checkpoint.parquet"


def _commit_name(version: int) -> str:
    return f"{LOG}/{version:020d}.json"


def is_plain(meta: pq.FileMetaData) -> bool:
    """Whether a checkpoint's Parquet is encoded as ``PLAIN_OPTIONS`` write it."""
    return all(
        set(meta.row_group(g).column(c).encodings) <= {"PLAIN", "RLE"}
        and not meta.row_group(g).column(c).has_column_index
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    )


def _version_in(last_checkpoint: bytes | None) -> int:
    """The version a ``_last_checkpoint`` names (0 when there is none or it is unreadable)."""
    try:
        return int(json.loads(last_checkpoint or b"")["version"])
    except (ValueError, KeyError, TypeError):
        return 0


def _last_version(log: TableFiles) -> int:
    """The version ``_last_checkpoint`` names (0 when there is none or it is unreadable)."""
    try:
        return _version_in(log.read(LAST))
    except (FileNotFoundError, DeltaError):
        return 0


def _render(log: TableFiles, names: set[str], version: int) -> tuple[bytes, dict[str, Any]]:
    """The plain checkpoint of ``version`` and its ``_last_checkpoint`` (see the module)."""
    older = [int(m[1]) for n in names if (m := _CHECKPOINT.fullmatch(n.removeprefix(f"{LOG}/")))]
    base = max((v for v in older if v < version), default=-1)
    wanted = [checkpoint_name(base)] if base >= 0 else []
    wanted += [_commit_name(v) for v in range(base + 1, version + 1)]
    missing = [n for n in wanted if n not in names]
    if missing:
        msg = f"checkpoint of version {version}: {missing[0]} is not in the log"
        raise FileNotFoundError(msg)
    with tempfile.TemporaryDirectory(prefix="async-amp-checkpoint-") as work:
        (Path(work) / LOG).mkdir()
        for name in wanted:
            (Path(work) / name).write_bytes(log.read(name))
        DeltaTable(work, version=version).create_checkpoint()
        rows = pq.read_table(Path(work) / checkpoint_name(version))
        hint = json.loads((Path(work) / LAST).read_text())
    buffer = io.BytesIO()
    pq.write_table(rows, buffer, **PLAIN_OPTIONS)
    body = buffer.getvalue()
    hint["sizeInBytes"] = len(body)
    return body, hint


@dataclass(slots=True)
class Checkpoints:
    """One writer's checkpoints of the tables it commits to: which it knows to be plain
    (owned by the writer, so that a footer is read once per writer, not once per commit)."""

    plain: set[tuple[str, int]] = field(default_factory=set)

    def _superseded(self, location: TableLocation, log: TableFiles, last: int) -> bool:
        """Whether the checkpoint ``last`` is another tool's, in another encoding."""
        if not last or (location.uri, last) in self.plain:
            return False
        try:
            plain = is_plain(log.footer(checkpoint_name(last)))
        except (FileNotFoundError, DeltaError, pa.ArrowException):
            return False  # deleted by a cleanup meanwhile: a newer one exists
        if plain:
            self.plain.add((location.uri, last))
        return not plain

    def after_commit(
        self, location: TableLocation, version: int, *, interval: int | None = None
    ) -> bool:
        """Checkpoint ``version`` when the table's interval says so (blocking); True if this
        call wrote it. Call it with the version of a commit the caller made; ``interval``:
        the table's (``interval_of``) when the caller has a snapshot at hand (the table is
        then opened only to write a checkpoint)."""
        if version <= 0:
            return False
        if interval is None:
            table = open_table(location, version)
            if table is None:
                return False
            interval = interval_of(table.metadata().configuration)
        log = TableFiles(location)
        last = _last_version(log)
        if last >= version:
            return False
        # a version that is a multiple of the interval (as Spark does): the one writer that
        # made it checkpoints it while others commit on (``_last_checkpoint``, written last,
        # cannot tell them yet). A multiple nobody checkpointed (vacuum's first commit, a
        # writer that died): a quarter interval later, when that one would be published
        past = version % interval
        crossed = version // interval > last // interval
        due = past == 0 or (crossed and past >= max(1, interval // 4))
        if not due and not self._superseded(location, log, last):
            return False
        names = log.names(LOG)
        if checkpoint_name(version) in names:
            return False  # another writer's, already whole
        body, hint = _render(log, names, version)
        if not log.put(checkpoint_name(version), body, exclusive=True):
            return False
        self.plain.add((location.uri, version))
        # the pointer last, and never backwards, even between two writers at once
        log.advance(LAST, json.dumps(hint).encode(), lambda now: _version_in(now) < version)
        table = open_table(location, version)
        if table is not None:
            table.cleanup_metadata()
        return True


def interval_of(configuration: Mapping[str, str | None]) -> int:
    """The table's ``delta.checkpointInterval`` (delta-rs' default when it sets none)."""
    setting = configuration.get("delta.checkpointInterval")
    return max(1, int(setting)) if setting and setting.isdigit() else DEFAULT_INTERVAL


def after_commit(location: TableLocation, version: int) -> bool:
    """``Checkpoints.after_commit`` for a caller that keeps no writer (one commit)."""
    return Checkpoints().after_commit(location, version)
