"""What every module of the Delta package uses: where a table is, opening it, retrying commits.

Apart from ``table.py`` so that ``files``, ``rewrite`` and ``checkpoint`` need not import the
module that calls them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from deltalake import DeltaTable, PostCommitHookProperties
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from ...backoff import backoff_delay

__all__ = [
    "COMMIT_ATTEMPTS",
    "NO_HOOK",
    "CommitConflictError",
    "TableLocation",
    "local_path",
    "log_entry",
    "open_table",
    "with_conflict_retries",
]

NO_HOOK = PostCommitHookProperties(create_checkpoint=False)
"""async-amp's commits write their checkpoints themselves (``checkpoint.py``)."""
COMMIT_ATTEMPTS = 12
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0


class CommitConflictError(RuntimeError):
    """Every attempt at a commit met a concurrent commit of the same hour (or day, compacting)."""


@dataclass(frozen=True, slots=True)
class TableLocation:
    """Where a table lives: a local path or an ``az://``/``abfss://``/``s3://`` URI."""

    uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    refresh: Callable[[], Mapping[str, str]] | None = field(default=None, repr=False, compare=False)

    def options(self) -> dict[str, str] | None:
        """The storage options for one call (a fresh bearer token when the location has one)."""
        opts = dict(self.storage_options)
        if self.refresh is not None:
            opts.update(self.refresh())
        return opts or None

    def scrub(self, text: str) -> str:
        """``text`` with every credential of this location replaced by ``***``."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


OPEN_ATTEMPTS: Final = 3


def open_table(location: TableLocation, version: int | None = None) -> DeltaTable | None:
    """The table's latest snapshot (or ``version``), ``None`` when there is no table yet.

    delta-rs can panic (``PanicException``, a ``BaseException``) when a log file changes size
    while it reads it. async-amp's writers never change one (``checkpoint.py`` puts each
    checkpoint once, whole), but an older async-amp re-encoded its checkpoints in place, and
    another tool may: the read is tried again with the file as it now is; a panic that
    persists becomes a ``DeltaError`` the hour's retries handle, never a crash of the run."""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            table = DeltaTable(location.uri, version=version, storage_options=location.options())
            break
        except TableNotFoundError:
            return None
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
            if attempt == OPEN_ATTEMPTS - 1:
                msg = f"delta-rs failed reading {location.scrub(location.uri)}: {exc}"
                raise DeltaError(msg) from None
            time.sleep(0.05 * (attempt + 1))
    # a log folder whose first commit is still being written (another writer creating the
    # table right now) opens as version -1: no table yet either
    return table if table.version() >= 0 else None


def with_conflict_retries(
    what: str,
    action: Callable[[], Any],
    *,
    rng: random.Random,
    sleep: Callable[[float], None],
    on_conflict: Callable[[int, str], None] | None,
) -> Any:
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            return action()
        except CommitFailedError as exc:
            if attempt == COMMIT_ATTEMPTS - 1:
                msg = f"{what}: {COMMIT_ATTEMPTS} commits in a row met concurrent commits ({exc})"
                raise CommitConflictError(msg) from exc
            if on_conflict is not None:
                on_conflict(attempt + 1, str(exc).splitlines()[0])
            delay = backoff_delay(
                attempt + 1,  # full jitter, as the hours' retries
                base_s=BACKOFF_FIRST_S,
                max_s=BACKOFF_MAX_S,
                retry_after=None,
                rng=rng,
            )
            sleep(delay)
    raise AssertionError  # pragma: no cover - the loop returns or raises


def local_path(uri: str) -> Path | None:
    """The folder of a table on a local file system (a path or a ``file://`` URI)."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri)


def log_entry(location: TableLocation, version: int) -> bytes | None:
    """The JSON commit ``version`` of the table's log, ``None`` when there is none (yet)."""
    name = f"_delta_log/{version:020d}.json"
    folder = local_path(location.uri)
    try:
        if folder is not None:
            return (folder / name).read_bytes()
        from deltalake._internal import DeltaFileSystemHandler  # noqa: PLC0415

        entry = DeltaFileSystemHandler(location.uri, location.options()).open_input_file(name)
        return bytes(entry.read(entry.size()))
    except (FileNotFoundError, DeltaError):
        return None
