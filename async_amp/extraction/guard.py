"""When a run must stop starting hours: storage that refuses, an endpoint that cannot be reached.

A fault of one answer is the hour's business (it is retried alone). Some failures are the
run's: a full disk refuses every hour alike, and an Export API that takes no connection fails
every request alike. Retrying each hour on its own then only multiplies requests (a 30-day
backfill against a dead host made 3,600) and ends with hundreds of identical lines.

``RunGuard`` is the one place that knows. Every attempt passes ``await guard.admit()`` before
it sends a request; the guard answers False once the run is stopping, and then the attempt
leaves its hours unfinished (exit 1, nothing lost, a rerun picks them up).

- ``storage_blocked(exc)``: the sink said storage refuses until someone acts: stop at once.
- ``store_failed(exc)`` / ``store_ok()``: the store failed a call (after its SDK's own
  retries): unreachable, stalled, refusing. ``max_store_failures`` of them in a row (every
  failed call: staging, each commit try, each probe), with no hour committed in between, and
  the store is declared gone: the run stops. A failure also makes the store *suspect*: no new
  download starts and no failed commit is tried again (``store_answers``) until one store
  call, a cheap listing (``store_probe``), gets an answer, one at a time after a backoff. A
  store that answers nothing for ``stall_window_s`` (4 read timeouts: a stalled store, each
  call costing whole timeouts) stops the run too, however few calls failed meanwhile. So a
  blip costs a listing, a stalled store about a minute, and no archive is downloaded only to
  wait for a store that does not answer.
- ``connect_failed(exc)`` / ``no_answer(exc, window)`` / ``connected()``: a circuit breaker.
  The first request that cannot connect, or connects and then hears nothing (silence before
  the first byte, a reset), opens it; while open, one request at a time goes out (a probe),
  after a backoff; the first answer of any kind closes it. After ``max_probes`` probes in a
  row fail (``silent_probes`` when they went silent: each costs a whole read timeout), the
  endpoint is declared unreachable and the run stops. So a blip costs a few retries and
  recovers silently, and a dead or silent host costs at most ``concurrency + max_probes``
  requests, whatever the range's length. Silence must span ``silent_probes + 1`` different
  windows: one big hour that is slow to start, asked again alone, never stops the run.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import anyio

from ..backoff import backoff_delay
from ..errors import (
    AsyncAmpError,
    ConnectFailedError,
    NoAnswerError,
    StorageBlockedError,
    StorageConflictError,
    StorageError,
    UserError,
)

__all__ = ["STALL_TIMEOUTS", "Admission", "RunGuard", "Stop", "stall_window_s"]

Admission = Literal["go", "probe", "stop"]
STALL_TIMEOUTS = 4  # read timeouts of a store with no answer at all: a stalled store


def stall_window_s(sink: object) -> float | None:
    """``STALL_TIMEOUTS`` read timeouts of the store under ``sink`` (a format's sink wraps the
    store as ``inner``); None for a store without a read timeout (a local folder)."""
    while (inner := getattr(sink, "inner", None)) is not None:
        sink = inner
    timeout = getattr(sink, "read_timeout_s", None)
    return STALL_TIMEOUTS * float(timeout) if isinstance(timeout, int | float) else None


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a run stopped starting hours."""

    kind: str  # "storage" | "unreachable" | "silent" | "reset" | "refused" (keys refused)
    storage: StorageBlockedError | None = None
    detail: str = ""

    def line(self, *, url: str, done: int, total: int) -> str:
        """The one line the user sees."""
        if self.storage is not None:
            return self.storage.line(done, total)
        if self.kind == "silent":
            detail = (
                f"the Export API at {url} takes connections but sends no answer "
                f"({self.detail}, on every hour asked)"
            )
        elif self.kind == "reset":
            detail = f"the Export API at {url} resets every connection ({self.detail})"
        else:
            detail = f"cannot reach the Export API at {url}: {self.detail}"
        return f"{detail}; nothing was lost, run again later"


class RunGuard:
    """Shared by every attempt of one run (one project)."""

    def __init__(
        self,
        *,
        max_probes: int,
        silent_probes: int = 2,
        max_store_failures: int = 5,
        backoff_base_s: float,
        backoff_max_s: float,
        rng: random.Random | None = None,
        store_probe: Callable[[], Awaitable[object]] | None = None,
        stall_window_s: float | None = None,
    ) -> None:
        self.max_probes = max(1, max_probes)
        self.max_store_failures = max(1, max_store_failures)
        self._store_failures = 0
        self._store_probe = store_probe
        self.stall_window_s = stall_window_s
        self._store_answered_at = time.monotonic()  # the store's last answer
        self._suspect = False  # a store call failed and none answered since
        self._deadline = float("inf")  # when a suspect store is declared stalled
        self._probing: anyio.CancelScope | None = None  # the store probe out, if any
        self._last_store_error: StorageError | None = None
        self.silent_probes = max(1, min(silent_probes, self.max_probes))
        self._windows: set[datetime] = set()  # windows that failed since the breaker opened
        self._base = backoff_base_s
        self._max = backoff_max_s
        self._rng = rng or random.Random()
        self.stop: Stop | None = None
        self.stopping = anyio.Event()
        self._open = False
        self._probe_out = False
        self._probe_failures = 0
        self._changed = anyio.Event()  # set (and replaced) whenever the breaker moves

    @property
    def stopped(self) -> bool:
        return self.stop is not None

    async def admit(
        self, acquire: Callable[[], Awaitable[int]], release: Callable[[], None]
    ) -> tuple[Admission, int]:
        """Take a request slot (``acquire`` returns its epoch) and the go-ahead to use it.

        ``"go"``; ``"probe"``: the one request sent while the breaker is open (after a
        backoff), whose outcome ``watch`` reports; ``"stop"``: send nothing (no slot is held).
        While the breaker is open the others wait *without* a slot, so the probe never waits
        behind requests that are themselves waiting for it.
        """
        while True:
            if self.stop is not None or not await self.store_answers():
                return "stop", -1
            epoch = await acquire()
            if self.stop is not None:
                release()
                return "stop", -1
            if not self._open:
                return "go", epoch
            if not self._probe_out:
                self._probe_out = True
                delay = backoff_delay(
                    self._probe_failures + 1,
                    base_s=self._base,
                    max_s=self._max,
                    rng=self._rng,
                    jitter="equal",
                )
                try:
                    going = await self.sleep(delay)
                except BaseException:
                    self._probe_out = False
                    release()
                    raise
                if not going:
                    self._probe_out = False
                    release()
                    return "stop", -1
                if not self._open:  # another request got through meanwhile
                    self._probe_out = False
                    return "go", epoch
                return "probe", epoch
            release()
            await self._changed.wait()

    def connected(self, *, probe: bool = False) -> None:
        """The endpoint answered (any status, even a reset after connecting): close."""
        if probe:
            self._probe_out = False
        if self._open:
            self._open = False
            self._probe_out = False
            self._probe_failures = 0
            self._windows.clear()
            self._wake()

    def connect_failed(self, exc: ConnectFailedError, *, probe: bool = False) -> None:
        """A request could not connect. ``probe``: it was the one sent while open."""
        if probe:
            self._probe_out = False
        if not self._open:
            self._open = True
            self._wake()
            return
        if not probe:
            return  # one of the requests already in flight when the breaker opened
        self._probe_failures += 1
        if self._probe_failures >= self.max_probes:
            self._halt(Stop("unreachable", detail=str(exc)))
        else:
            self._wake()

    def no_answer(self, exc: NoAnswerError, window: datetime, *, probe: bool = False) -> None:
        """A request connected, then heard nothing (or was reset). ``window``: its first hour."""
        if probe:
            self._probe_out = False
        self._windows.add(window)
        if not self._open:
            self._open = True
            self._wake()
            return
        if not probe:
            return
        self._probe_failures += 1
        limit = self.silent_probes if exc.silent else self.max_probes
        if self._probe_failures >= limit and len(self._windows) > limit:
            self._halt(Stop("silent" if exc.silent else "reset", detail=str(exc)))
        else:
            self._wake()

    @contextlib.contextmanager
    def watch(self, admission: Admission, window: datetime) -> Iterator[None]:
        """Around one request: tell the breaker whether the endpoint took the connection and
        answered. ``window``: the request's first hour."""
        probe = admission == "probe"
        try:
            yield
        except ConnectFailedError as exc:
            self.connect_failed(exc, probe=probe)
            raise
        except NoAnswerError as exc:
            self.no_answer(exc, window, probe=probe)
            raise
        except UserError as exc:  # keys refused: not one more request (the error ends the run)
            self._halt(Stop("refused", detail=str(exc)))
            raise
        except AsyncAmpError as exc:
            self.connected(probe=probe)  # it answered, if badly
            if isinstance(exc, StorageBlockedError):  # before the request slot is given back
                self.storage_blocked(exc)
            raise
        except BaseException:
            if probe:  # cancelled: let another request be the probe
                self._probe_out = False
                self._wake()
            raise
        self.connected(probe=probe)

    def storage_blocked(self, exc: StorageBlockedError) -> None:
        if self.stop is None:
            self._halt(Stop("storage", storage=exc))

    def store_failed(self, exc: StorageError) -> None:
        """A store call failed for a passing reason (the sink's own retries spent)."""
        if isinstance(exc, StorageBlockedError):
            self.storage_blocked(exc)
            return
        if isinstance(exc, StorageConflictError):  # the store answered: another writer won
            return
        self._store_failures += 1
        self._last_store_error = exc
        if not self._suspect and self._store_probe is not None:
            self._suspect = True
            if self.stall_window_s is not None:  # a failed call waited 2 timeouts at most
                window = self.stall_window_s
                self._deadline = max(self._store_answered_at + window, self._now() + window / 2)
            self._wake()
        if self._store_failures >= self.max_store_failures and self.stop is None:
            place = f"{self._store_failures} times in a row (last: {exc})"
            gone = StorageBlockedError("the store failed", place, "run again once it answers")
            self._halt(Stop("storage", storage=gone))
        self._check_stall()

    def store_ok(self) -> None:
        """An hour was committed: the store answers."""
        self._store_failures = 0
        self._answered()

    def _answered(self) -> None:
        self._store_answered_at = self._now()
        if self._suspect:
            self._suspect = False
            self._deadline = float("inf")
            self._wake()

    async def store_answers(self) -> bool:
        """Wait while the store is suspect (a call failed, none answered since): one waiter at
        a time probes it (``store_probe``, after a backoff); the others wait for the outcome.
        True once it answers (at once when it is not suspect); False once the run stops."""
        while self._suspect and self.stop is None:
            if self._probing is None and self._store_probe is not None:
                await self._probe_store(self._store_probe)
                continue
            with anyio.move_on_after(self._deadline - self._now()):
                await self._changed.wait()
            self._check_stall()
        return self.stop is None

    async def _probe_store(self, probe: Callable[[], Awaitable[object]]) -> None:
        """One cheap store call; its answer clears the suspicion, its failure counts."""
        delay = backoff_delay(
            max(1, self._store_failures),
            base_s=self._base,
            max_s=self._max,
            rng=self._rng,
            jitter="equal",
        )
        with anyio.CancelScope(
            deadline=anyio.current_time() + self._deadline - self._now()
        ) as scope:
            self._probing = scope
            try:
                if not await self.sleep(delay):
                    return
                await probe()
            except (StorageError, OSError, TimeoutError) as exc:
                failed = exc if isinstance(exc, StorageError) else StorageError(str(exc))
                self.store_failed(failed)
                return
            except AsyncAmpError:  # refused (a bucket gone, keys refused): an answer all the same,
                pass  # and the next real call says what the run must do
            finally:
                self._probing = None
                self._wake()
            self._answered()
        if scope.cancelled_caught:
            self._check_stall()

    def _check_stall(self) -> None:
        """A suspect store with no answer for ``stall_window_s``: it is stalled, stop."""
        if self._suspect and self.stop is None and self._now() >= self._deadline:
            window = self.stall_window_s or 0.0
            last = f" (last: {self._last_store_error})" if self._last_store_error else ""
            stalled = StorageBlockedError(
                "the store answered no call",
                f"for {window:g} s{last}",
                "run again once it answers",
            )
            self._halt(Stop("storage", storage=stalled))

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    @property
    def is_open(self) -> bool:
        return self._open

    def _halt(self, stop: Stop) -> None:
        self.stop = stop
        self.stopping.set()
        if self._probing is not None:  # nothing waits for its answer any more
            self._probing.cancel()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the run stops first; True when it did not stop."""
        if seconds > 0:
            with anyio.move_on_after(seconds):
                await self.stopping.wait()
        return self.stop is None
