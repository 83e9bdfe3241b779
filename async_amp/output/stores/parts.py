"""Parts of a data file on their way to an object store (Azure blocks, S3 multipart parts).

The decoding worker thread copies a file's bytes into a part buffer; a full part is sent from
the event loop while the thread goes on filling the next one, so decoding and uploading
overlap, with at most one part of each file in flight.

Memory is bounded by a byte budget, not by concurrency x part size: every part buffer comes
from the sink's ``PartPool``, which hands out at most ``budget // part_size`` buffers (at
least two) and blocks the worker thread that asks for more until an upload gives one back.
Buffers are allocated once and reused, so uploading gigabytes does not churn the allocator
(freed multi-MiB buffers stay resident as fragmentation, and fresh ones cost a page fault per
4 KiB). A part is never copied on its way out: its MD5 is taken over the buffer, and
``PartBody`` lets aiohttp write the buffer to the socket in slices.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import struct
import sys
import threading
import time
from typing import Any

import anyio.from_thread
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from ...errors import StorageError
from ..manifest import FileEntry

if sys.platform == "linux":
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ  # SIOCOUTQ: a socket's unacknowledged bytes
else:
    _OUTQ = None

__all__ = ["PART_BUDGET", "PartBody", "PartPool", "PartedUpload"]

MIB = 1024 * 1024
DRAIN_POLL_S = 0.02  # longest wait between two looks at a socket's send queue (PartBody)
PART_BUDGET = 16 * MIB  # part buffers of one sink, filling and in flight together
# What aiohttp is handed at a time; it waits for the socket between. 1 MiB rather than 256 KiB:
# the receiving end gets fuller reads (Azurite spent ~4% less CPU on the same blocks).
WRITE_SLICE = 1024 * 1024


class PartPool:
    """Reusable part buffers of one size, at most ``budget`` bytes of them (two at least).

    ``take`` blocks (it runs in a worker thread) while every buffer is out; ``give`` can be
    called from any thread. A buffer is made on first need, so a sink that uploads little
    holds little.
    """

    __slots__ = ("_cond", "_free", "_made", "limit", "part_size")

    def __init__(self, part_size: int, budget: int = PART_BUDGET) -> None:
        self.part_size = part_size
        self.limit = max(2, budget // part_size)
        self._free: list[bytearray] = []
        self._made = 0
        self._cond = threading.Condition()

    def take(self) -> bytearray:
        with self._cond:
            while not self._free and self._made >= self.limit:
                self._cond.wait()
            if self._free:
                return self._free.pop()
            self._made += 1
        return bytearray(self.part_size)

    def give(self, buffer: bytearray) -> None:
        with self._cond:
            self._free.append(buffer)
            self._cond.notify()

    @property
    def made(self) -> int:
        """Buffers allocated so far (never more than ``limit``)."""
        return self._made

    @property
    def out(self) -> int:
        """Buffers taken and not yet given back."""
        with self._cond:
            return self._made - len(self._free)


class _Held:
    """A buffer out of the pool until ``back()`` (idempotent, from any thread)."""

    __slots__ = ("_buffer", "_lock", "_pool")

    def __init__(self, pool: PartPool, buffer: bytearray) -> None:
        self._pool = pool
        self._buffer: bytearray | None = buffer
        self._lock = threading.Lock()

    def back(self) -> None:
        with self._lock:
            buffer, self._buffer = self._buffer, None
        if buffer is not None:
            self._pool.give(buffer)


class PartBody(Payload):
    """One part's bytes as a request body, straight from its buffer.

    For aiohttp it is a ``Payload`` (used as it is, no ``BytesIO`` copy, written in
    ``WRITE_SLICE`` slices of the buffer). For the SDKs it is a file: ``read``/``seek``/``tell``
    let the Azure retry policy rewind it and botocore hash it for its signature.

    ``stall_s``: a body that no byte of leaves for that long raises ``TimeoutError`` (which
    aiohttp hands to the request). aiohttp's read timeout starts only once the body is sent,
    and a peer that stops reading (a stalled store) otherwise holds the upload forever; a slow
    upload that moves goes on, however long it takes.
    """

    def __init__(self, view: memoryview, *, stall_s: float | None = None) -> None:
        super().__init__(view, content_type="application/octet-stream")
        self._view = view
        self._pos = 0
        self._size = len(view)
        self._stall_s = stall_s

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int = -1) -> bytes:
        end = (
            len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        )
        data = bytes(self._view[self._pos : end])
        self._pos = end
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = min(max(0, base + offset), len(self._view))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._view).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        end = len(self._view)
        if content_length is not None:
            end = min(end, self._pos + content_length)
        for start in range(self._pos, end, WRITE_SLICE):
            piece = self._view[start : min(end, start + WRITE_SLICE)]
            if self._stall_s is None:
                await writer.write(piece)
            else:
                await _moving(writer, piece, self._stall_s)
        self._pos = end
        if self._stall_s is not None:
            # aiohttp's read timeout starts now: first let the peer take what the kernel
            # still holds, so a slow link is not taken for a silent store
            await _watch(getattr(writer, "transport", None), self._stall_s)


async def _moving(writer: AbstractStreamWriter, piece: memoryview, stall_s: float) -> None:
    """``writer.write(piece)`` (which waits while the socket's buffer is full), unless no byte
    leaves for ``stall_s``: then ``TimeoutError``."""
    transport = getattr(writer, "transport", None)
    write = asyncio.ensure_future(writer.write(piece))
    try:
        await _watch(transport, stall_s, write)
    finally:
        if not write.done():
            write.cancel()
            with contextlib.suppress(BaseException):
                await write


async def _watch(
    transport: asyncio.WriteTransport | None,
    stall_s: float,
    work: asyncio.Future[None] | None = None,
) -> None:
    """Wait for ``work``, or (None) until the peer has every byte handed to the socket,
    while bytes move; ``TimeoutError`` once none has for ``stall_s``."""
    if transport is None:
        if work is not None:
            await work
        return
    unsent = _unsent(transport)
    moved = time.monotonic()
    pause = 0.0005
    while True:
        if work is None:
            if not unsent:
                return
            # polled: the kernel tells no one when its queue empties; a fast link waits a
            # millisecond or so, a slow one at most DRAIN_POLL_S more than it must
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, DRAIN_POLL_S, stall_s / 4)
        else:
            done, _ = await asyncio.wait({work}, timeout=stall_s / 4)
            if done:
                return work.result()
        now = time.monotonic()
        if (left := _unsent(transport)) != unsent:
            unsent, moved = left, now
        elif now - moved >= stall_s:
            msg = f"the store took no byte of the request body for {stall_s:g} s"
            raise TimeoutError(msg)


def _unsent(transport: asyncio.WriteTransport) -> int:
    """Bytes handed to the transport that the peer has not acknowledged: the transport's
    buffer and, on Linux, the kernel's send queue (``SIOCOUTQ``), which can hold megabytes
    that leave slowly, and whose size is the only sign that they do."""
    size = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if _OUTQ is not None and sock is not None:
        with contextlib.suppress(OSError, ValueError):
            size += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0" * 4))[0]
    return size


class PartedUpload:
    """One data file staged in parts of the pool's size, sent as they fill.

    ``write`` (worker thread) copies the bytes into a pooled buffer; each full one is prepared
    in the thread (``_prepare``: checks, its digest) and sent on the event loop (``_send``)
    while the thread fills the next; before sending a part it waits for the previous one, so a
    file has one part in flight. A failed send raises from the next ``write`` or ``finish``.
    ``finish`` sends the last, short part, waits for it and checks that every byte the file
    entry counts was staged. ``_seen`` sees every byte in order (a whole-file digest).
    """

    __slots__ = ("_buf", "_fill", "_in_flight", "_loop", "_pool", "_sent", "entry", "total")

    def __init__(self, pool: PartPool) -> None:
        self._pool = pool
        self._buf: bytearray | None = None
        self._fill = 0
        self._sent = 0  # parts handed to _send so far
        self._in_flight: concurrent.futures.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.entry: FileEntry | None = None
        self.total = 0  # bytes ever written

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self.entry is None, "write() after finish()"
        self._seen(data)
        view = memoryview(data).cast("B")
        size = self._pool.part_size
        while view:
            if self._buf is None:
                self._buf = self._pool.take()
            room = size - self._fill
            n = min(room, len(view))
            self._buf[self._fill : self._fill + n] = view[:n]
            self._fill += n
            self.total += n
            view = view[n:]
            if self._fill == size:
                self._ship()

    def finish(self, entry: FileEntry) -> None:
        assert self.entry is None, "finish() twice"
        if self._fill:
            self._ship()
        self._wait()
        if entry.bytes != self.total:
            staged = f"{self.total} bytes were staged"
            msg = f"{self._where()}: {staged} but the file entry says {entry.bytes}"
            raise StorageError(msg)
        self._finished()
        self.entry = entry

    def discard(self) -> None:
        """Drop what is buffered (from any thread; again is fine). A part in flight goes on
        and hands its buffer back when it ends: ``settle`` waits for that."""
        if self._buf is not None:
            self._pool.give(self._buf)
            self._buf, self._fill = None, 0

    async def settle(self) -> None:
        """Wait (on the event loop) for the part in flight, whatever its outcome."""
        future = self._in_flight
        if future is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(future)

    # --- what the sinks fill in ----------------------------------------------------------------

    def _prepare(self, part: memoryview, number: int) -> Any:
        """Checks and digests of part ``number`` (0-based), in the worker thread."""
        raise NotImplementedError

    async def _send(self, part: PartBody, number: int, prepared: Any) -> None:
        """Upload one part (on the event loop); raise an ``AsyncAmpError`` when it fails."""
        raise NotImplementedError

    def _seen(self, data: bytes | bytearray | memoryview) -> None:
        """Every byte written, in order (nothing by default)."""

    def _finished(self) -> None:
        """Called once the last part is sent and the size checked (nothing by default)."""

    def _where(self) -> str:
        raise NotImplementedError

    def _stall_s(self) -> float | None:
        """How long a part's body may stand still on its way out (``PartBody``); None: forever
        (the sink's client has its own bound)."""
        return None

    # --- the hand-off to the event loop ----------------------------------------------------------

    def _ship(self) -> None:
        buffer, fill = self._buf, self._fill
        assert buffer is not None
        self._buf, self._fill = None, 0
        number = self._sent
        try:
            view = memoryview(buffer)[:fill]
            prepared = self._prepare(view, number)
            self._wait()
            if self._loop is None:
                self._loop = anyio.from_thread.run_sync(asyncio.get_running_loop)
        except BaseException:
            self._pool.give(buffer)
            raise
        self._sent += 1
        held = _Held(self._pool, buffer)
        future = asyncio.run_coroutine_threadsafe(
            self._upload(view, number, prepared, held), self._loop
        )
        # A task cancelled before it started never runs its ``finally``: the buffer goes back
        # once the future is done (never earlier: it is never cancelled from here).
        future.add_done_callback(lambda _: held.back())
        self._in_flight = future

    async def _upload(self, view: memoryview, number: int, prepared: Any, held: _Held) -> None:
        try:
            await self._send(PartBody(view, stall_s=self._stall_s()), number, prepared)
        finally:
            # back before the result is set: the writer waiting for this part then finds it
            # free instead of making another (aiohttp is done with it: the request is over)
            held.back()

    def _wait(self) -> None:
        """Wait for the part in flight; raise its error."""
        future, self._in_flight = self._in_flight, None
        if future is not None:
            future.result()
