"""A fault-injecting TCP proxy, to sit between the tool and the simulated Export API.

The simulator misbehaves at the HTTP level (statuses, broken archives); this proxy misbehaves at
the TCP level, where the network does: a response that trickles, a connection reset in the
middle of the body, a connection that is accepted but never answered (half-open), a latency
spike before the answer, a connection closed as soon as it is accepted; and for uploads, a
request body taken slowly, or no more of it taken at all (a store that stopped reading).

Each accepted connection asks ``proxy.faults`` (a callable given the connection's number,
counting from 1) for a :class:`Hitch`, or ``None`` to pass bytes through untouched. The
callable can be swapped at any time, so a test can make the network heal mid-run.

    async with run_proxy(sim.base_url, faults=lambda n: Hitch.trickle(1024)) as proxy:
        ...  # point the client at proxy.base_url

:class:`BackgroundProxy` runs it on its own loop in a thread, for CLI subprocess tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from async_amp.simulator.background import Background

__all__ = ["BackgroundProxy", "FaultProxy", "Hitch", "HitchFn", "HitchKind", "run_proxy"]

_PIECE = 16 * 1024
_RCVBUF = 64 * 1024


class HitchKind(enum.Enum):
    TRICKLE = "trickle"  # the response flows at ``rate`` bytes/s, however long that takes
    RESET = "reset"  # ``after`` bytes of the response, then a TCP reset
    HALF_OPEN = "half_open"  # the request is read, nothing is ever answered, nothing closed
    LATENCY = "latency"  # ``delay_s`` of silence before the response's first byte
    CLOSE = "close"  # the connection is closed as soon as it is accepted
    SLOW_UPLOAD = "slow_upload"  # the request is taken at ``rate`` bytes/s (then answered)
    DEAF = "deaf"  # ``after`` bytes of the request, then none: nothing is answered or closed


@dataclass(frozen=True, slots=True)
class Hitch:
    """What goes wrong with one connection."""

    kind: HitchKind
    rate: int = 0
    after: int = 0
    delay_s: float = 0.0

    @classmethod
    def trickle(cls, bytes_per_s: int) -> Hitch:
        return cls(HitchKind.TRICKLE, rate=max(1, bytes_per_s))

    @classmethod
    def reset(cls, after_bytes: int) -> Hitch:
        return cls(HitchKind.RESET, after=after_bytes)

    @classmethod
    def half_open(cls) -> Hitch:
        return cls(HitchKind.HALF_OPEN)

    @classmethod
    def latency(cls, delay_s: float) -> Hitch:
        return cls(HitchKind.LATENCY, delay_s=delay_s)

    @classmethod
    def close(cls) -> Hitch:
        return cls(HitchKind.CLOSE)

    @classmethod
    def slow_upload(cls, bytes_per_s: int) -> Hitch:
        return cls(HitchKind.SLOW_UPLOAD, rate=max(1, bytes_per_s))

    @classmethod
    def deaf(cls, after_bytes: int) -> Hitch:
        return cls(HitchKind.DEAF, after=after_bytes)


HitchFn = Callable[[int], Hitch | None]


def _none(_: int) -> Hitch | None:
    return None


class FaultProxy:
    """Forwards every connection to ``upstream`` (``http://host:port``), hitched as told."""

    def __init__(self, upstream: str, *, faults: HitchFn | None = None) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            msg = f"upstream must be http://host:port, not {upstream!r}"
            raise ValueError(msg)
        self._upstream = (parts.hostname, parts.port)
        self.faults: HitchFn = faults or _none
        self.connections = 0
        self.hitched: list[tuple[int, HitchKind]] = []  # (connection number, what was done)
        self.base_url = ""
        self._server: asyncio.Server | None = None
        self._bound = ("127.0.0.1", 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = await self._listen(host, port)
        bound = self._server.sockets[0].getsockname()
        self._bound = (bound[0], bound[1])
        self.base_url = f"http://{bound[0]}:{bound[1]}"
        return self.base_url

    async def refuse(self) -> None:
        """Stop listening (connections are refused) and drop the open ones; ``accept()``
        listens again on the same port: an endpoint that goes away and comes back."""
        if self._server is not None:
            self._server.close()
            await self._drop_connections()
            await self._server.wait_closed()
            self._server = None

    async def accept(self) -> None:
        if self._server is None:
            self._server = await self._listen(*self._bound)

    async def _listen(self, host: str, port: int) -> asyncio.Server:
        """Connections accepted with a small receive buffer (inherited from the listening
        socket): a request the proxy does not read soon fills it, as with a store that stopped."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.bind((host, port))
        return await asyncio.start_server(self._accept, sock=sock)

    async def _drop_connections(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
        await self._drop_connections()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        number = self.connections
        hitch = self.faults(number)
        if hitch is not None:
            self.hitched.append((number, hitch.kind))
        try:
            await self._serve(reader, writer, hitch)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the proxy is stopping
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hitch: Hitch | None
    ) -> None:
        kind = hitch.kind if hitch is not None else None
        if kind is HitchKind.CLOSE:
            _reset(writer)
            return
        if kind is HitchKind.HALF_OPEN:
            with contextlib.suppress(ConnectionError):
                while await reader.read(_PIECE):  # swallow the request; answer nothing
                    pass
            await self._closing.wait()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        try:
            upstream = asyncio.create_task(_pipe(reader, up_writer, hitch, self._closing))
            try:
                await self._respond(up_reader, writer, hitch)
            finally:
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                    await upstream
        finally:
            with contextlib.suppress(Exception):
                up_writer.close()

    async def _respond(
        self, source: asyncio.StreamReader, writer: asyncio.StreamWriter, hitch: Hitch | None
    ) -> None:
        """Copy the response to the client, as the hitch says."""
        kind = hitch.kind if hitch is not None else None
        first = True
        sent = 0
        piece = _PIECE
        if hitch is not None and kind is HitchKind.TRICKLE:
            piece = max(1, min(_PIECE, hitch.rate // 8))
        while data := await source.read(piece):
            if first and hitch is not None and kind is HitchKind.LATENCY:
                await asyncio.sleep(hitch.delay_s)
            first = False
            if hitch is not None and kind is HitchKind.RESET and sent + len(data) >= hitch.after:
                head = data[: max(0, hitch.after - sent)]
                if head:
                    writer.write(head)
                    await writer.drain()
                _reset(writer)
                return
            writer.write(data)
            await writer.drain()
            sent += len(data)
            if hitch is not None and kind is HitchKind.TRICKLE:
                await asyncio.sleep(len(data) / hitch.rate)
        if writer.can_write_eof():
            writer.write_eof()


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hitch: Hitch | None = None,
    closing: asyncio.Event | None = None,
) -> None:
    """Copy the request upstream, as the hitch says (a slow or a deaf reader)."""
    kind = hitch.kind if hitch is not None else None
    piece = _PIECE
    if hitch is not None and kind is HitchKind.SLOW_UPLOAD:
        piece = max(1, min(_PIECE, hitch.rate // 8))
    taken = 0
    while True:
        if hitch is not None and kind is HitchKind.DEAF and taken >= hitch.after:
            if closing is not None:
                await closing.wait()
            return
        data = await reader.read(piece)
        if not data:
            return
        taken += len(data)
        writer.write(data)
        await writer.drain()
        if hitch is not None and kind is HitchKind.SLOW_UPLOAD:
            await asyncio.sleep(len(data) / hitch.rate)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashing peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    transport.abort()


@contextlib.asynccontextmanager
async def run_proxy(upstream: str, *, faults: HitchFn | None = None) -> AsyncIterator[FaultProxy]:
    """A :class:`FaultProxy` on a free loopback port for the duration of the block."""
    proxy = FaultProxy(upstream, faults=faults)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


class BackgroundProxy(Background[FaultProxy]):
    """``with BackgroundProxy(sim.base_url, faults=...) as proxy: proxy.base_url``."""

    def __init__(self, upstream: str, *, faults: HitchFn | None = None) -> None:
        super().__init__(lambda: run_proxy(upstream, faults=faults), "fault proxy")
