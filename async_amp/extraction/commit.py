"""Committing one hour: its files become visible, then its manifest, last; all or nothing.

Once data starts moving into place the commit finishes even if the run is being cancelled (a
half-committed hour would show data with no manifest), within ``COMMIT_TIMEOUT_S`` of its own
time (not counting its wait for its turn at a table that other commits hold). A commit
that fails or times out says why and leaves the staging to the caller: to commit again (the
store failed for a passing reason: the archive is not downloaded again) or to discard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import anyio

from ..deadline import Deadline, current
from ..errors import StorageError, storage_failure
from ..hours import iso_hour
from ..logs import log
from ..output.manifest import Manifest
from ..output.stores.base import HourStaging
from ..source.archive import ProcessedMember

__all__ = ["COMMIT_TIMEOUT_S", "commit_hour", "manifest_for"]

COMMIT_TIMEOUT_S = 120.0
"""The commit's own time: waiting for its turn at a table other commits of the run hold
(``deadline.turn``) does not count; uploads, retries after conflicts and the manifest do."""
T = TypeVar("T")


def manifest_for(
    hour: datetime,
    members: Sequence[ProcessedMember],
    *,
    attempts: int,
    run_id: str,
    warnings: tuple[str, ...] = (),
) -> Manifest:
    """The manifest of an hour whose attempt brought ``members`` (none: an empty hour)."""
    files = tuple(p.entry for p in members)
    ids = {p.member.project_id for p in members}
    return Manifest(
        project_id=ids.pop() if len(ids) == 1 else "",
        hour=hour,
        status="complete" if files else "empty",
        files=files,
        attempts=attempts,
        extracted_at=datetime.now(UTC),
        run_id=run_id,
        warnings=warnings,
        received_bytes=sum(p.received for p in members),
        ndjson_bytes=sum(p.ndjson_bytes for p in members),
    )


async def _within(deadline: Deadline, work: Awaitable[T]) -> T:
    """``work``'s result; ``TimeoutError`` once its own time passes ``deadline`` (checked as
    the deadline would expire, and at least once a second while the work waits its turn)."""
    result: list[T] = []
    failed: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                result.append(await work)
            except Exception as exc:  # noqa: BLE001 - raised as itself below, not in a group
                failed.append(exc)
            group.cancel_scope.cancel()

        group.start_soon(run)
        while True:
            left = deadline.remaining()
            if left <= 0 and not deadline.waiting:
                group.cancel_scope.cancel()
                break
            await anyio.sleep(max(left, 1.0) if deadline.waiting else left)
    if failed:
        raise failed[0]
    if not result:
        raise TimeoutError
    return result[0]


async def commit_hour(staging: HourStaging, manifest: Manifest) -> Manifest | StorageError:
    """Commit ``staging`` with ``manifest``; the manifest stored (a format may have rewritten
    its files: Parquet's, a Delta table's) when done, else why it failed (a
    ``StorageBlockedError`` when the storage refuses until someone acts). The staging is
    kept either way: on failure the caller commits it again or discards it."""
    deadline = Deadline(COMMIT_TIMEOUT_S)
    try:
        with anyio.CancelScope(shield=True), current(deadline):
            stored = await _within(deadline, staging.commit(manifest))
    except TimeoutError:
        error = StorageError(f"commit did not finish within {COMMIT_TIMEOUT_S:.0f} s")
    except StorageError as exc:
        error = exc
    except OSError as exc:  # a Delta commit's data file or log entry, written in a thread
        error = storage_failure(exc, iso_hour(manifest.hour)) or StorageError(str(exc))
    else:
        return stored or manifest
    log.warning("hour.commit_failed", hour=iso_hour(manifest.hour), error=str(error))
    return error
