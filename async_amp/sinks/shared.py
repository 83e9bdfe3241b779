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

from ..errors import StorageError
from ..manifest import FileEntry
from ..values import is_plain_name

__all__ = [
    "MANIFEST_CONTENT_TYPE",
    "PartBuffer",
    "PartedUpload",
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
_T = TypeVar("_T")
_CONTENT_TYPES = {
    ".json.gz": "application/gzip",
    ".json": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
}
MANIFEST_CONTENT_TYPE = "application/json"


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


class PartBuffer:
    """Bytes in, parts of exactly ``size`` bytes out (the last one shorter), for block and
    multipart uploads.

    It keeps the pieces it is given (no copy while a part fills) and joins them once, when the
    part is full: one allocation of ``size`` per part, none of a ``bytearray`` that grows and
    is copied again. Only a piece that straddles two parts is cut.
    """

    __slots__ = ("_held", "_pieces", "size", "total")

    def __init__(self, size: int) -> None:
        self.size = size
        self.total = 0  # bytes ever added
        self._pieces: list[bytes] = []
        self._held = 0

    def add(self, data: bytes) -> list[bytes]:
        """Take ``data``; return the parts it completed (usually none)."""
        self.total += len(data)
        full: list[bytes] = []
        while data:
            room = self.size - self._held
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self._pieces.append(bytes(piece))  # a no-op for bytes; memoryviews are copied
            self._held += len(piece)
            if self._held == self.size:
                full.append(self.rest())
        return full

    def rest(self) -> bytes:
        """What is held (the last, short part), and hold nothing."""
        part = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces, self._held = [], 0
        return part

    def __len__(self) -> int:
        return self._held


class PartedUpload:
    """One data file staged in parts of a fixed size (Azure blocks, S3 multipart parts).

    ``write`` cuts the bytes into parts and hands each full one to ``_flush`` (in the worker
    thread); ``finish`` flushes the last, short part and checks that every byte the file entry
    counts was staged. Subclasses say where the file goes (``_where``) and send a part
    (``_flush``); ``_seen`` sees every byte in order (a whole-file digest).
    """

    __slots__ = ("_buf", "entry")

    def __init__(self, part_size: int) -> None:
        self._buf = PartBuffer(part_size)
        self.entry: FileEntry | None = None

    def write(self, data: bytes) -> None:
        assert self.entry is None, "write() after finish()"
        self._seen(data)
        for part in self._buf.add(data):
            self._flush(part)

    def finish(self, entry: FileEntry) -> None:
        assert self.entry is None, "finish() twice"
        if self._buf:
            self._flush(self._buf.rest())
        if entry.bytes != self._buf.total:
            msg = (
                f"{self._where()}: {self._buf.total} bytes were staged "
                f"but the file entry says {entry.bytes}"
            )
            raise StorageError(msg)
        self._finished()
        self.entry = entry

    def _seen(self, data: bytes) -> None:
        """Every byte written, in order (nothing by default)."""

    def _finished(self) -> None:
        """Called once the last part is sent and the size checked (nothing by default)."""

    def _where(self) -> str:
        raise NotImplementedError

    def _flush(self, part: bytes) -> None:
        raise NotImplementedError


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
