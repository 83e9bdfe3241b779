"""What the sinks share: object names, content types and checks of the object-store sinks
(Azure Blob Storage, S3), and telling a live run from a dead one.

The object stores lay an hour out as ``<prefix>/<project>/date=YYYY-MM-DD/hour=HH/<file>``
objects plus a ``_manifest.json`` written last, and both describe their objects the same way.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol, TypeVar
from urllib.parse import quote

import anyio

from ...config.values import is_plain_name
from ...errors import StorageError

__all__ = [
    "MANIFEST_CONTENT_TYPE",
    "TIMEOUT_RETRIES",
    "Answers",
    "check_file_name",
    "common_prefix",
    "content_type",
    "each_at_once",
    "header_safe",
    "join",
    "pid_alive",
    "staged_for",
]


# A ``.json.gz`` is stored as an opaque gzip file, not as NDJSON with ``Content-Encoding: gzip``:
# with that header browsers and HTTP clients (and the Azure SDK's own ``download_blob``)
# decompress on the fly and then hold a ``.json.gz`` that is not gzip, its sha256 no longer
# matches the manifest, and ranged reads get confused. DuckDB, Spark, Athena and Synapse pick
# the codec from the ``.gz`` extension and read ``application/gzip`` objects as they are.
AT_ONCE = 8  # object calls of one hour in flight together (completions, deletions)
# a storage call that timed out is tried once more at most, whatever `retries` says: each try
# costs a whole timeout, and a store that stalls every call is the run guard's to judge
TIMEOUT_RETRIES = 1
_T = TypeVar("_T")
_CONTENT_TYPES = {
    ".json.gz": "application/gzip",
    ".json": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
}
MANIFEST_CONTENT_TYPE = "application/json"


class Answers:
    """Whether the store answered the latest try of a call (any status) or left it unanswered
    (a timeout, no connection). While it is ``silent``, best-effort calls are skipped (aborting
    a discarded upload, releasing a lease): on a stalled store each would wait whole timeouts
    after the run has stopped, and what they would clean up the next run's ``prepare()`` or
    the store itself clears."""

    __slots__ = ("silent",)

    def __init__(self) -> None:
        self.silent = False

    def heard(self) -> None:
        self.silent = False

    def missed(self) -> None:
        self.silent = True


def join(*parts: str) -> str:
    """``a/b/c`` from the non-empty parts."""
    return "/".join(p for p in parts if p)


def header_safe(value: str) -> str:
    """Object metadata values are HTTP header values: printable ASCII only."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="/#_-.:+@ ")


def content_type(name: str) -> str:
    for suffix, kind in _CONTENT_TYPES.items():
        if name.endswith(suffix):
            return kind
    return "application/octet-stream"


def common_prefix(names: Iterable[str]) -> str:
    """The longest prefix every name shares: one listing covers them all."""
    ordered = sorted(names)
    first, last = ordered[0], ordered[-1]
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


async def each_at_once(call: Callable[[_T], Awaitable[None]], items: Iterable[_T]) -> None:
    """``call`` on every item, ``AT_ONCE`` at a time; the first failure is raised as it is (not
    in an exception group), so callers see the ``StorageError`` the pipeline re-queues on."""
    limit = anyio.CapacityLimiter(AT_ONCE)

    async def one(item: _T) -> None:
        async with limit:
            await call(item)

    try:
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(one, item)
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is still running (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Staged(Protocol):
    @property
    def entry(self) -> object | None: ...


_M = TypeVar("_M", bound=_Staged)


def staged_for(
    names: Iterable[str], members: Mapping[str, _M], where: Callable[[str], str]
) -> list[_M]:
    """The finished staged member of every file the manifest names, in its order; a file that
    was never staged (or never finished) is a ``StorageError`` before anything changes."""
    staged: list[_M] = []
    for name in names:
        member = members.get(name)
        if member is None or member.entry is None:
            msg = f"cannot commit {where(name)}: not staged"
            raise StorageError(msg)
        staged.append(member)
    return staged


def check_file_name(name: str) -> None:
    """Refuse anything but a plain file name (no folders, no ``..``): reads stay in the hour."""
    if not is_plain_name(name):
        msg = f"refusing to read {name!r}: not a plain file name"
        raise StorageError(msg)
