"""One attempt at one hour in an object store (Azure Blob Storage, S3): the commit protocol
both object-store sinks follow, with the store's own calls left to each sink.

Members are staged (uncommitted blocks, open multipart uploads) as they are decoded; nothing
is visible until ``commit``, which runs in this order so that a crash at any point leaves no
hour that looks complete with data it does not hold:

1. every file the manifest names must have been staged and finished (else nothing changes);
2. the old manifest goes (a re-extraction stops looking done before its data changes);
3. the staged files are committed (made visible);
4. data files of the hour the manifest does not name go (no stale file after ``--force``);
5. the manifest is written, last.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from ...hours import iso_hour
from ..manifest import MANIFEST_NAME, Manifest, hour_folder
from .base import DATA_SUFFIXES
from .shared import common_prefix, header_safe, join, staged_for

__all__ = ["ObjectHourStaging", "ObjectStoreReads"]


class _Member(Protocol):
    @property
    def entry(self) -> object | None: ...

    def discard(self) -> None: ...

    async def settle(self) -> None: ...


_M = TypeVar("_M", bound=_Member)


class ObjectHourStaging(Generic[_M]):
    """The members of one hour's attempt and its commit; a sink fills in the store's calls."""

    def __init__(self, folder: str, hour: datetime, run_id: str) -> None:
        self._folder = folder
        self._hour = hour
        self._run_id = run_id
        self._members: dict[str, _M] = {}
        self._lock = threading.Lock()

    def _add(self, file_name: str, member: _M) -> _M:
        with self._lock:
            self._members[file_name] = member
        return member

    async def commit(self, manifest: Manifest) -> None:
        with self._lock:
            members = dict(self._members)
        names = [entry.name for entry in manifest.files]
        staged = staged_for(names, members, lambda name: self._where(f"{self._folder}/{name}"))
        marker = f"{self._folder}/{MANIFEST_NAME}"
        await self._delete([marker])
        await self._commit_members(staged)
        keep = set(names)
        stale = [
            f"{self._folder}/{name}"
            for name in await self._list_names(self._folder)
            if name not in keep and name.endswith(DATA_SUFFIXES)
        ]
        await self._delete(stale)
        metadata = {
            "hour": iso_hour(self._hour),
            "status": manifest.status,
            "events": str(manifest.events),
            "run_id": header_safe(self._run_id),
        }
        await self._put_manifest(marker, manifest.dumps(), metadata)
        with self._lock:
            self._members.clear()
        await self._committed()

    async def discard(self) -> None:
        with self._lock:
            members = list(self._members.values())
            self._members.clear()
        for member in members:
            member.discard()
        for member in members:
            await member.settle()  # a part in flight ends (and gives its buffer back) first
            await self._dropped(member)

    # --- what each store fills in ------------------------------------------------------------

    def _where(self, name: str) -> str:
        """``name`` as the store's address, for messages."""
        raise NotImplementedError

    async def _list_names(self, folder: str) -> list[str]:
        """The file names under ``folder``."""
        raise NotImplementedError

    async def _delete(self, names: Sequence[str]) -> None:
        """Delete these objects (missing ones are fine)."""
        raise NotImplementedError

    async def _commit_members(self, staged: Sequence[_M]) -> None:
        """Make the staged files visible."""
        raise NotImplementedError

    async def _put_manifest(self, name: str, data: bytes, metadata: dict[str, str]) -> None:
        """Write the manifest object."""
        raise NotImplementedError

    async def _committed(self) -> None:
        """After the manifest is written and the members let go (nothing by default)."""

    async def _dropped(self, member: _M) -> None:
        """After a discarded member has settled (nothing by default)."""


class ObjectStoreReads:
    """What the S3 and GCS sinks read the same way, from ``prefix``, ``list_keys`` and
    ``get_bytes``."""

    prefix: str

    def name(self, path: str) -> str:
        return join(self.prefix, path)

    def hour_prefix(self, project: str, hour: datetime) -> str:
        return self.name(hour_folder(project, hour))

    async def list_keys(self, start: str) -> list[str]:
        """Every object name under ``start``."""
        raise NotImplementedError

    async def get_bytes(self, key: str) -> bytes | None:
        """A small object's bytes, or ``None`` when there is none."""
        raise NotImplementedError

    spool_dir = None  # a format's temporary files go to the system's temporary folder

    async def read_object(self, path: str) -> bytes | None:
        return await self.get_bytes(self.name(path))

    async def completed_hours(self, project: str, hours: Iterable[datetime]) -> set[datetime]:
        """One listing: the longest prefix shared by every wanted manifest name."""
        wanted = {f"{self.hour_prefix(project, h)}/{MANIFEST_NAME}": h for h in hours}
        if not wanted:
            return set()
        names = await self.list_keys(common_prefix(wanted))
        return {wanted[n] for n in names if n in wanted}

    async def read_manifest(self, project: str, hour: datetime) -> Manifest | None:
        data = await self.get_bytes(f"{self.hour_prefix(project, hour)}/{MANIFEST_NAME}")
        return None if data is None else Manifest.loads(data)
