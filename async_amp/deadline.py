"""A deadline on a piece of work's own time: the time it spends queued for its turn (a lock
other commits to the same table hold) does not count.

``commit.commit_hour`` bounds each hour's commit by one (``COMMIT_TIMEOUT_S``); a commit that
waits for its turn says so with ``turn(lock)`` (``output/delta/table.py``: the threads of one run
commit to a table one at a time), from any thread of its context (``anyio.to_thread``
copies it). Without a deadline in the context, ``turn`` is a plain acquisition of the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Deadline", "current", "turn"]


class Deadline:
    """``seconds`` of own time from now: wall time less the time spent in ``queued``."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._queued = 0.0
        self._since: float | None = None  # when the wait under way began
        self._waiting = 0

    @contextmanager
    def queued(self) -> Iterator[None]:
        """Time spent in this block is not the work's own."""
        with self._lock:
            if not self._waiting:
                self._since = self._clock()
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1
                if not self._waiting and self._since is not None:
                    self._queued += self._clock() - self._since
                    self._since = None

    @property
    def waiting(self) -> bool:
        with self._lock:
            return bool(self._waiting)

    def own_time(self) -> float:
        with self._lock:
            queued = self._queued
            if self._since is not None:
                queued += self._clock() - self._since
            return self._clock() - self._start - queued

    def remaining(self) -> float:
        return self.seconds - self.own_time()


_CURRENT: ContextVar[Deadline | None] = ContextVar("async_amp_deadline", default=None)


@contextmanager
def current(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` the one ``turn`` reports to, in this context (and threads it starts
    through ``anyio.to_thread``)."""
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


@contextmanager
def turn(lock: threading.Lock) -> Iterator[None]:
    """Hold ``lock``; the wait for it is queued time of the context's deadline, if any."""
    deadline = _CURRENT.get()
    if deadline is None:
        with lock:
            yield
        return
    with deadline.queued():
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
