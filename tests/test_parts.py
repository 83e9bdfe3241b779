"""``sinks.parts``: a file cut into parts of one size, sent from the event loop while the worker
thread fills the next, buffers from a pool under a byte budget. Driven the way the sinks drive
it (``write``/``finish`` from a worker thread), with a receiving end that keeps what it is sent
and can be made to fail or to stall."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from async_amp.errors import StorageError
from async_amp.output.manifest import FileEntry
from async_amp.output.stores.parts import PartBody, PartedUpload, PartPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the sinks' SDKs run on asyncio only


class Collected(PartedUpload):
    """Parts land in ``received`` (read back through ``PartBody`` as a file, as botocore does)."""

    def __init__(self, pool: PartPool, *, fail_at: int = -1, gate: anyio.Event | None = None):
        super().__init__(pool)
        self.received: dict[int, bytes] = {}
        self.prepared: list[int] = []
        self.fail_at = fail_at
        self.gate = gate
        self.most_out = 0

    def _where(self) -> str:
        return "collected"

    def _prepare(self, part: memoryview, number: int) -> int:
        self.prepared.append(number)
        return len(part)

    async def _send(self, part: PartBody, number: int, prepared: Any) -> None:
        self.most_out = max(self.most_out, self._pool.out)
        if self.gate is not None:
            await self.gate.wait()
        if number == self.fail_at:
            msg = f"part {number} refused"
            raise StorageError(msg)
        data = bytes(part.read())
        part.seek(0)  # a retry rewinds it and gets the same bytes
        assert bytes(part.read(3)) + bytes(part.read()) == data and len(data) == prepared
        self.received[number] = data


def entry(size: int) -> FileEntry:
    return FileEntry(name="f.json", bytes=size, events=0, sha256="0" * 64, source="s")


@pytest.mark.parametrize("sizes", [[1] * 20, [3, 7, 0, 11], [64], [5, 5, 5, 5], [100, 1], []])
async def test_parts_are_exact_in_order_and_lose_nothing(sizes: list[int]) -> None:
    data = bytes(range(256)) * 2
    pool = PartPool(8, budget=16)
    upload = Collected(pool)

    def work() -> int:
        at = 0
        for size in sizes:
            piece = data[at : at + size]
            at += size
            upload.write(memoryview(piece) if size % 2 else piece)
        upload.finish(entry(at))
        return at

    total = await anyio.to_thread.run_sync(work)
    parts = [upload.received[n] for n in sorted(upload.received)]
    assert sorted(upload.received) == list(range(len(parts))) == upload.prepared
    assert all(len(p) == 8 for p in parts[:-1]) and 0 < len(parts[-1] if parts else b"x") <= 8
    assert b"".join(parts) == data[:total] and upload.total == total
    assert pool.made <= pool.limit == 2 and upload.most_out <= 2


async def test_many_files_share_the_budget_and_give_every_buffer_back() -> None:
    pool = PartPool(1024, budget=3 * 1024)
    uploads = [Collected(pool) for _ in range(6)]
    blob = bytes(range(251)) * 40  # 10,040 bytes: 10 parts each

    def work(upload: Collected) -> None:
        for start in range(0, len(blob), 333):
            upload.write(blob[start : start + 333])
        upload.finish(entry(len(blob)))

    async with anyio.create_task_group() as tg:
        for upload in uploads:
            tg.start_soon(anyio.to_thread.run_sync, work, upload)
    for upload in uploads:
        assert b"".join(upload.received[n] for n in range(10)) == blob
    assert pool.made == pool.limit == 3 and pool.out == 0  # all back, none made beyond


async def test_a_failed_part_raises_from_the_next_write_and_its_buffer_comes_back() -> None:
    pool = PartPool(4, budget=8)
    upload = Collected(pool, fail_at=1)

    def work() -> None:
        for _ in range(10):
            upload.write(b"abcd")

    with pytest.raises(StorageError, match="part 1 refused"):
        await anyio.to_thread.run_sync(work)
    upload.discard()
    await upload.settle()
    assert pool.out == 0  # nothing kept by the failed file

    again = Collected(pool)  # the pool still serves: no buffer was lost

    def more() -> None:
        again.write(b"x" * 10)
        again.finish(entry(10))

    await anyio.to_thread.run_sync(more)
    assert b"".join(again.received[n] for n in range(3)) == b"x" * 10


async def test_a_stalled_upload_holds_the_writer_back() -> None:
    """While part 0 is in flight, the writer fills part 1 and then waits: it never runs ahead
    of the upload nor takes more buffers than one filling and one in flight."""
    gate = anyio.Event()
    pool = PartPool(4, budget=8)
    upload = Collected(pool, gate=gate)
    wrote = threading.Event()

    def work() -> None:
        for _ in range(4):  # part 0 in flight; part 1 filled, then waits for it
            upload.write(b"wxyz")
        wrote.set()
        upload.finish(entry(16))

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, work)
        while upload.prepared != [0, 1]:  # part 1 is full: its writer now waits for part 0
            await anyio.sleep(0.01)
        await anyio.sleep(0.1)  # room to run ahead, were it not held back
        assert not wrote.is_set() and pool.out == 2 and not upload.received
        gate.set()
    assert wrote.is_set() and b"".join(upload.received[n] for n in range(4)) == b"wxyz" * 4


def test_a_short_entry_is_refused() -> None:
    upload = Collected(PartPool(8))
    with pytest.raises(StorageError, match="0 bytes were staged but the file entry says 5"):
        upload.finish(entry(5))


async def test_one_file_never_holds_more_than_two_buffers() -> None:
    """One filling, one in flight: a part's buffer is back before its writer goes on, so a
    roomy budget is no reason to make a third."""
    pool = PartPool(64, budget=64 * 16)
    upload = Collected(pool)

    def work() -> None:
        for _ in range(300):
            upload.write(b"q" * 40)
        upload.finish(entry(12_000))

    await anyio.to_thread.run_sync(work)
    assert len(upload.received) == 188 and pool.made <= 2 and pool.out == 0
