"""Hours that change after the fact: is a re-asked complete hour different from what is stored?

Amplitude's backfills and late processing can change an hour after it was exported.
``extract --recheck 48h`` asks the complete hours of the last 48 hours again; each answer
goes through the usual attempt (staged, never visible) and then through ``judge`` here:

- **unchanged**: every source member has the digest the stored manifest records: the staging
  is dropped and the stored files are not touched (same bytes, same mtime, same etag);
- **changed**: members were added, removed or differ: the hour is committed over the old one
  (manifest removed first, data files renamed in, new manifest last) and logged as
  ``hour.changed`` with the events before and after;
- **kept**: the API now answers "no data" (404) for an hour that had events: the stored data
  is kept, with a warning. A row that was exported once is not deleted on a 404's word.

The comparison is by source member (the ``#n`` files of Amplitude's archive), not by output
file, so it does not depend on the output format: whatever a format writes, its manifest
records each source member's name and the digest of its decompressed bytes
(``source_digests``; a Delta hour written before its manifest typed them lists the side record
that does, ``_delta_commit.json``: ``stored_digests``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ..errors import StorageError
from ..hours import HOUR
from ..output.manifest import Manifest
from ..output.stores.base import Sink

__all__ = [
    "Verdict",
    "judge",
    "recheck_since",
    "source_digests",
    "stored_digests",
]


def recheck_since(now: datetime, recheck: timedelta) -> datetime | None:
    """The oldest hour that is still "younger than ``recheck``" at ``now`` (None: off).

    An hour is younger than the duration when it ended less than ``recheck`` ago.
    """
    if recheck <= timedelta(0):
        return None
    cutoff = now - recheck  # hours ending after this are rechecked
    start = cutoff.replace(minute=0, second=0, microsecond=0)
    return start if start + HOUR > cutoff else start + HOUR


def source_digests(manifest: Manifest) -> dict[str, str]:
    """Each source member's name -> the digest of its content, as the manifest records it.

    A file entry's ``sha256`` is the digest of the bytes stored for its member, which for the
    NDJSON and gzip formats is a pure function of the member; Parquet and Delta record the
    digest of each decompressed member in the manifest's ``sources``.
    """
    if manifest.table is not None and manifest.table.sources:  # converted (Parquet, Delta)
        return {s.name: s.sha256 for s in manifest.table.sources}
    digests: dict[str, str] = {}
    for entry in manifest.files:
        name = entry.source or entry.name
        digests[name] = entry.sha256
    return digests


async def stored_digests(
    sink: Sink, project: str, hour: datetime, manifest: Manifest
) -> dict[str, str] | None:
    """The stored hour's source digests: from its manifest, or from the side record an older
    Delta hour's manifest lists. ``None`` when they cannot be read (the hour is then replaced)."""
    legacy = manifest.side_record
    if legacy is None:
        return source_digests(manifest)
    try:
        body = b"".join([chunk async for chunk in sink.iter_file(project, hour, legacy.name)])
        return source_digests(manifest.with_side_record(body))
    except (StorageError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Literal["unchanged", "changed", "kept"]
    before: Manifest | None
    added: int = 0
    removed: int = 0
    differ: int = 0

    @property
    def replace(self) -> bool:
        return self.outcome == "changed"

    @property
    def events_before(self) -> int:
        return self.before.events if self.before is not None else 0


def judge(
    before: Manifest | None, after: Manifest, stored: Mapping[str, str] | None = None
) -> Verdict:
    """Pure: what to do with a re-asked hour, given the stored manifest (and its source
    digests, when they are kept elsewhere than its file entries) and the new answer's."""
    if before is None:
        return Verdict("changed", None, added=len(after.files))
    old = dict(stored) if stored is not None else source_digests(before)
    new = source_digests(after)
    if old == new:
        return Verdict("unchanged", before)
    if not new and before.events > 0:
        return Verdict("kept", before)
    return Verdict(
        "changed",
        before,
        added=len(new.keys() - old.keys()),
        removed=len(old.keys() - new.keys()),
        differ=sum(1 for k in new.keys() & old.keys() if new[k] != old[k]),
    )
