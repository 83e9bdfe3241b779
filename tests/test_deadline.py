"""A commit's deadline counts its own time, not its wait for its turn at the table."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import cast

import anyio
import pytest

from async_amp.deadline import Deadline, current, turn
from async_amp.errors import StorageError
from async_amp.extraction import commit
from async_amp.output.manifest import Manifest
from async_amp.output.stores.base import HourStaging


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_time_queued_is_not_the_works_own() -> None:
    clock = Clock()
    deadline = Deadline(10, clock)
    clock.now += 3  # own work
    with deadline.queued():
        clock.now += 50
        assert deadline.own_time() == 3  # a wait under way does not count either
        with deadline.queued():  # two waits at once count once
            clock.now += 5
        assert deadline.waiting
    assert not deadline.waiting
    assert deadline.own_time() == 3 and deadline.remaining() == 7
    clock.now += 8
    assert deadline.remaining() == -1


def test_turn_reports_the_wait_for_the_lock_to_the_contexts_deadline() -> None:
    clock = Clock()
    deadline = Deadline(10, clock)
    lock = threading.Lock()
    lock.acquire()
    waited = threading.Event()

    def holder() -> None:  # releases once the waiter waits: the clock moves meanwhile
        while not deadline.waiting:
            time.sleep(0.001)
        clock.now += 60
        waited.set()
        lock.release()

    thread = threading.Thread(target=holder)
    thread.start()
    with current(deadline), turn(lock):
        clock.now += 2
    thread.join()
    assert waited.is_set() and deadline.own_time() == 2
    with turn(lock):  # no deadline in the context: a plain lock
        assert lock.locked()


class Staging:
    """An hour's staging whose commit waits for ``lock`` (its turn), then works ``work_s``."""

    def __init__(self, lock: threading.Lock, work_s: float) -> None:
        self.lock, self.work_s = lock, work_s

    async def commit(self, manifest: Manifest) -> Manifest:
        def write() -> None:
            with turn(self.lock):
                time.sleep(self.work_s)

        await anyio.to_thread.run_sync(write)  # a thread cannot be stopped: it runs to its end
        await anyio.sleep(0)  # then the manifest is written (a checkpoint: stopped there)
        return manifest


@pytest.mark.anyio
async def test_commit_hour_bounds_the_commits_own_time_not_its_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commit, "COMMIT_TIMEOUT_S", 0.5)
    manifest = commit.manifest_for(datetime(2026, 11, 1, tzinfo=UTC), [], attempts=1, run_id="t")
    lock = threading.Lock()
    lock.acquire()  # another commit holds the table three deadlines long

    async def release_later() -> None:
        await anyio.sleep(1.5)
        lock.release()

    async with anyio.create_task_group() as group:
        group.start_soon(release_later)
        stored = await commit.commit_hour(cast(HourStaging, Staging(lock, 0)), manifest)
    assert stored == manifest
    # its own work past the deadline fails it, as before
    failed = await commit.commit_hour(cast(HourStaging, Staging(lock, 1.5)), manifest)
    assert isinstance(failed, StorageError) and "within 0 s" in str(failed)
