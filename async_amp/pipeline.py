"""The extraction run: plan the hours, fetch them under a bound, vet, commit, re-queue.

One task group per run. Each export request covers a window of hours (one hour by default);
its body streams from aiohttp into a bounded memory stream, and one worker thread per request
unzips, gunzips, hashes and writes it (``archive.process_archive``). Each hour of the window is
then checked and committed on its own; an hour that falls short is re-asked alone, after a
backoff with jitter that never undercuts the server's ``Retry-After``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import anyio.abc

from .archive import ArchiveLimits, MemberSink, ProcessedMember, process_archive
from .client import ExportSource
from .config import Config, ProjectConfig
from .errors import (
    ArchiveError,
    AttemptError,
    ExportTooLargeError,
    RetryableHTTPError,
    StorageError,
    first_user_error,
)
from .hours import MemberName, hour_range, iso_hour
from .limiter import AdaptiveLimiter
from .logs import bound, log
from .manifest import Manifest
from .plan import Plan, chop, make_plan
from .results import HourResult, ProjectResult
from .sinks.base import HourStaging, Sink

__all__ = ["Extractor", "RunSummary", "extract"]


AUTO_MAX_WINDOW_BYTES = 64 * 1024**2  # keep a window's archive (and its retry) moderate
AUTO_MAX_WINDOW_HOURS = 7 * 24
CHUNK_QUEUE = 4  # chunks of up to 1 MiB buffered between the socket and the decoder
MAX_RETRY_AFTER_S = 900.0
COMMIT_TIMEOUT_S = 120.0


@dataclass(slots=True)
class RunSummary:
    run_id: str
    plan: Plan
    results: dict[datetime, HourResult] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_in: int = 0
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results.values() if r.status == status)

    @property
    def failed(self) -> list[HourResult]:
        return sorted(
            (r for r in self.results.values() if r.status == "failed"), key=lambda r: r.hour
        )

    @property
    def events(self) -> int:
        return sum(r.events for r in self.results.values())

    @property
    def bytes_written(self) -> int:
        return sum(r.bytes for r in self.results.values())

    @property
    def exit_code(self) -> int:
        unfinished = len(self.plan.to_fetch) - len(self.results)
        return 1 if self.failed or unfinished else 0

    def result(self, project: str) -> ProjectResult:
        """A frozen copy of the tally, as the API returns it."""
        return ProjectResult(
            name=project,
            plan=self.plan,
            results=tuple(self.results.values()),
            requests=self.requests,
            retries=self.retries,
            throttled=self.throttled,
            bytes_downloaded=self.bytes_in,
            seconds=self.seconds,
        )


@dataclass(slots=True)
class _HourState:
    attempts: int = 0
    failures: int = 0  # consecutive attempts that errored
    last_clean_pages: frozenset[int] | None = None
    last_error: str = ""


class _Shortfall(Exception):
    """An hour whose attempt was clean but came back with fewer pages than expected."""


class Extractor:
    """Runs one extraction over a range of hours for one project."""

    def __init__(
        self,
        config: Config,
        source: ExportSource,
        sink: Sink,
        *,
        run_id: str,
        now: datetime | None = None,
        rng: random.Random | None = None,
        on_hour: Callable[[HourResult], None] | None = None,
        project: ProjectConfig | None = None,
        overall: anyio.CapacityLimiter | None = None,
    ) -> None:
        self.config = config
        self.project_config = project or config.project_list()[0]
        self.project = self.project_config.name
        self.overall = overall
        self.source = source
        self.sink = sink
        self.run_id = run_id
        self.now = now or datetime.now(UTC)
        self.rng = rng or random.Random()
        self.on_hour = on_hour
        ex = config.extract
        self.concurrency = self.project_config.concurrency or ex.concurrency
        self.limiter = AdaptiveLimiter(self.concurrency)
        self.threads = anyio.CapacityLimiter(self.concurrency)
        self.limits = ArchiveLimits(
            max_member_bytes=ex.max_member_bytes, max_expansion_ratio=ex.max_expansion_ratio
        )
        self.states: dict[datetime, _HourState] = {}
        self.summary: RunSummary | None = None
        self.observed: list[tuple[int, int]] = []  # (hours, zip bytes) of clean requests
        self._probes_pending: set[datetime] = set()
        self._probes_done = anyio.Event()

    def _overall(self) -> AbstractAsyncContextManager[object]:
        return self.overall if self.overall is not None else nullcontext()

    async def plan(
        self,
        first: datetime,
        last: datetime,
        *,
        force: bool,
        shard: tuple[int, int] | None = None,
    ) -> Plan:
        hours = list(hour_range(first, last))
        done = set() if force else await self.sink.completed_hours(self.project, hours)
        return make_plan(
            first,
            last,
            done=done,
            now=self.now,
            lag_hours=self.config.extract.availability_lag_hours,
            shard=shard,
        )

    async def run(self, plan: Plan) -> RunSummary:
        summary = self.summary = RunSummary(run_id=self.run_id, plan=plan)
        started = time.monotonic()
        # every line this run logs (its tasks inherit the context) names the project
        with bound(project=self.project):
            return await self._run(plan, summary, started)

    async def _run(self, plan: Plan, summary: RunSummary, started: float) -> RunSummary:
        log.info(
            "run.start",
            hours=len(plan.hours),
            to_fetch=len(plan.to_fetch),
            skipped=len(plan.done),
            not_available=len(plan.not_available),
            concurrency=self.concurrency,
            sink=self.sink.describe(),
        )
        try:
            async with anyio.create_task_group() as tg:
                for hour in plan.to_fetch:
                    self.states[hour] = _HourState()
                spec = self.config.extract.window_hours
                if spec == "auto":
                    tg.start_soon(self._auto_schedule, tg, list(plan.to_fetch))
                else:
                    for window in chop(plan.to_fetch, spec):
                        tg.start_soon(self._attempt_window, tg, window, 0.0)
        except BaseExceptionGroup as group:
            raise first_user_error(group) from None
        finally:
            summary.seconds = time.monotonic() - started
            summary.throttled = self.limiter.throttle_events
        return summary

    # --- request windows ---------------------------------------------------------------------

    async def _auto_schedule(self, tg: anyio.abc.TaskGroup, hours: list[datetime]) -> None:
        """``window_hours = "auto"``: probe single hours first, then size windows from them.

        The first ``concurrency`` hours are asked one by one; their archive sizes give the
        bytes per hour. The rest is cut into windows large enough to pay the fixed cost of a
        request once per many hours, yet small enough to keep every slot busy (about one
        window per slot) and to keep each archive under ``AUTO_MAX_WINDOW_BYTES``.
        """
        slots = self.concurrency
        probe, rest = hours[:slots], hours[slots:]
        self._probes_pending = set(probe)
        for hour in probe:
            tg.start_soon(self._attempt_window, tg, [hour], 0.0)
        if not rest:
            return
        await self._probes_done.wait()
        width = self.auto_window(len(rest))
        log.info("window.auto", window_hours=width, hours=len(rest), **self._observed_rates())
        for window in chop(rest, width):
            tg.start_soon(self._attempt_window, tg, window, 0.0)

    def auto_window(self, remaining: int) -> int:
        """Hours per request for ``remaining`` hours, from what the probes observed."""
        slots = self.concurrency
        width = max(1, math.ceil(remaining / slots))
        hours_seen = sum(n for n, _ in self.observed)
        if hours_seen:
            per_hour = sum(b for _, b in self.observed) / hours_seen
            if per_hour > 0:
                width = min(width, max(1, int(AUTO_MAX_WINDOW_BYTES // per_hour)))
            cap = AUTO_MAX_WINDOW_HOURS
        else:
            cap = 24  # nothing observed (all probes failed): stay modest
        return max(1, min(width, cap))

    def _observed_rates(self) -> dict[str, float]:
        hours_seen = sum(n for n, _ in self.observed)
        total = sum(b for _, b in self.observed)
        return {
            "probe_hours": hours_seen,
            "zip_bytes_per_hour": total / hours_seen if hours_seen else 0,
        }

    def _probe_finished(self, hours: list[datetime]) -> None:
        if self._probes_pending and hours[0] in self._probes_pending:
            self._probes_pending.discard(hours[0])
            if not self._probes_pending:
                self._probes_done.set()

    # --- one attempt at a window of hours ---------------------------------------------------

    async def _attempt_window(
        self, tg: anyio.abc.TaskGroup, hours: list[datetime], delay: float
    ) -> None:
        if delay > 0:
            await anyio.sleep(delay)
        assert self.summary is not None
        first, last = hours[0], hours[-1]
        for hour in hours:
            self.states[hour].attempts += 1
        started = time.monotonic()
        stagings: dict[datetime, HourStaging] = {}
        received = [0]
        epoch = -1
        try:
            epoch = await self.limiter.acquire()
            try:
                async with self._overall():
                    self.summary.requests += 1
                    try:
                        processed = await self._fetch(first, last, stagings, received)
                    finally:
                        self._probe_finished(hours)
            finally:
                self.limiter.release()
        except ExportTooLargeError as exc:
            await self._discard(stagings)
            if len(hours) > 1:
                half = len(hours) // 2
                log.warning("window.split", start=iso_hour(first), end=iso_hour(last))
                tg.start_soon(self._attempt_window, tg, hours[:half], 0.0)
                tg.start_soon(self._attempt_window, tg, hours[half:], 0.0)
                return
            self._fail(hours[0], f"{exc}; an hour over 4 GB cannot be exported through this API")
            return
        except (AttemptError, StorageError) as exc:
            await self._discard(stagings)
            if isinstance(exc, RetryableHTTPError) and exc.throttled:
                bound = self.limiter.throttled(epoch)
                log.warning("run.throttled", status=exc.status, concurrency=bound)
            for hour in hours:
                state = self.states[hour]
                state.failures += 1
                state.last_clean_pages = None
                state.last_error = str(exc)
            self._retry(tg, hours, str(exc), retry_after=exc.retry_after)
            return
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard(stagings)
            raise
        self.limiter.succeeded()
        self.observed.append((len(hours), received[0]))
        seconds = time.monotonic() - started
        await self._settle(tg, hours, processed, stagings, seconds)

    async def _fetch(
        self,
        first: datetime,
        last: datetime,
        stagings: dict[datetime, HourStaging],
        received: list[int],
    ) -> list[ProcessedMember] | None:
        """One request; stream its body through the decoder thread. ``None`` means 404."""

        def open_member(member: MemberName, file_name: str) -> MemberSink:
            staging = stagings.get(member.hour)
            if staging is None:
                staging = stagings[member.hour] = self.sink.stage(self.project, member.hour)
            return staging.open_member(member, file_name)

        async with self.source.export(first, last) as body:
            if body is None:
                return None
            processed = await self._consume(body, open_member, first, last, received)
        if not processed:
            msg = "a 200 with an empty ZIP (Amplitude answers 404 when there is no data)"
            raise ArchiveError(msg)
        return processed

    async def _consume(
        self,
        body: AsyncIterator[bytes],
        open_member: Callable[[MemberName, str], MemberSink],
        first: datetime,
        last: datetime,
        received: list[int],
    ) -> list[ProcessedMember]:
        assert self.summary is not None
        summary = self.summary
        send, receive = anyio.create_memory_object_stream[bytes](CHUNK_QUEUE)
        body_error: list[AttemptError] = []

        async def pump() -> None:
            try:
                async with send:
                    async for chunk in body:
                        summary.bytes_in += len(chunk)
                        received[0] += len(chunk)
                        await send.send(chunk)
            except anyio.BrokenResourceError:
                pass  # the decoder stopped early; its own error explains why
            except AttemptError as exc:
                body_error.append(exc)

        def chunks() -> Iterator[bytes]:
            while True:
                try:
                    yield anyio.from_thread.run(receive.receive)
                except anyio.EndOfStream:
                    return

        def decode() -> list[ProcessedMember]:
            with receive:
                return process_archive(
                    chunks(),
                    open_member,
                    first_hour=first,
                    last_hour=last,
                    keep_gzip=self.config.output.keep_gzip,
                    limits=self.limits,
                )

        failure: list[Exception] = []
        processed: list[ProcessedMember] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            try:
                processed = await anyio.to_thread.run_sync(decode, limiter=self.threads)
            except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                failure.append(exc)
                tg.cancel_scope.cancel()
        if body_error and (not failure or isinstance(failure[0], ArchiveError)):
            raise body_error[0]  # the body broke off: that, not the truncation, is the cause
        if failure:
            raise failure[0]
        return processed

    # --- deciding, per hour, what an attempt was worth ------------------------------------

    async def _settle(
        self,
        tg: anyio.abc.TaskGroup,
        hours: list[datetime],
        processed: list[ProcessedMember] | None,
        stagings: dict[datetime, HourStaging],
        seconds: float,
    ) -> None:
        expected = self.config.extract.expected_pages_per_hour
        by_hour: dict[datetime, list[ProcessedMember]] = {h: [] for h in hours}
        for item in processed or ():
            by_hour[item.member.hour].append(item)
        retry: list[datetime] = []
        for hour in hours:
            state = self.states[hour]
            state.failures = 0
            items = sorted(by_hour[hour], key=lambda p: p.member.page)
            pages = frozenset(p.member.page for p in items)
            problem = ""
            if expected and len(pages) < expected and processed is not None:
                problem = _missing_pages(pages, expected)
            warnings: tuple[str, ...] = ()
            if problem:
                if state.last_clean_pages == pages:
                    warnings = (f"accepted after two identical short attempts: {problem}",)
                    log.warning(
                        "hour.accepted_short", hour=iso_hour(hour), detail=problem, pages=len(pages)
                    )
                else:
                    state.last_clean_pages = pages
                    state.last_error = problem
                    log.warning(
                        "hour.short",
                        hour=iso_hour(hour),
                        attempt=state.attempts,
                        detail=f"hour {iso_hour(hour)[:13]}: {problem}",
                    )
                    staging = stagings.pop(hour, None)
                    if staging is not None:
                        await staging.discard()
                    retry.append(hour)
                    continue
            if not await self._commit(hour, items, stagings.pop(hour, None), warnings, seconds):
                retry.append(hour)
        if retry:
            self._retry(tg, retry, "short hour or failed commit", retry_after=None, alone=True)

    async def _commit(
        self,
        hour: datetime,
        items: list[ProcessedMember],
        staging: HourStaging | None,
        warnings: tuple[str, ...],
        seconds: float,
    ) -> bool:
        """Commit the hour; False when the sink failed (the hour is then retried)."""
        state = self.states[hour]
        files = tuple(p.entry for p in items)
        manifest = Manifest(
            hour=hour,
            status="complete" if files else "empty",
            files=files,
            attempts=state.attempts,
            extracted_at=datetime.now(UTC),
            run_id=self.run_id,
            warnings=warnings,
        )
        staging = staging or self.sink.stage(self.project, hour)
        try:
            # once data starts moving into place, finish the hour (manifest last) even if the
            # run is being cancelled: a half-committed hour would show data with no manifest
            with anyio.CancelScope(shield=True), anyio.fail_after(COMMIT_TIMEOUT_S):
                await staging.commit(manifest)
        except TimeoutError:
            exc = StorageError(f"commit did not finish within {COMMIT_TIMEOUT_S:.0f} s")
            await staging.discard()
            state.last_error = f"commit failed: {exc}"
            state.last_clean_pages = None
            log.warning("hour.commit_failed", hour=iso_hour(hour), error=str(exc))
            return False
        except StorageError as exc:
            await staging.discard()
            state.last_error = f"commit failed: {exc}"
            state.last_clean_pages = None
            log.warning("hour.commit_failed", hour=iso_hour(hour), error=str(exc))
            return False
        result = HourResult(
            project=self.project,
            hour=hour,
            status=manifest.status,
            attempts=state.attempts,
            events=manifest.events,
            bytes=manifest.size,
            files=len(files),
        )
        self._record(result)
        log.info(
            "hour.done",
            hour=iso_hour(hour),
            status=manifest.status,
            attempt=state.attempts,
            files=len(files),
            events=manifest.events,
            bytes=manifest.size,
            seconds=round(seconds, 3),
        )
        return True

    # --- retry bookkeeping ------------------------------------------------------------------

    def _retry(
        self,
        tg: anyio.abc.TaskGroup,
        hours: list[datetime],
        reason: str,
        *,
        retry_after: float | None,
        alone: bool = False,
    ) -> None:
        assert self.summary is not None
        ex = self.config.extract
        again = [h for h in hours if self.states[h].attempts < ex.max_attempts]
        for hour in hours:
            if hour not in again:
                self._fail(hour, self.states[hour].last_error or reason)
        if not again:
            return
        attempt = max(self.states[h].attempts for h in again)
        delay = self.rng.uniform(0, min(ex.backoff_max_s, ex.backoff_base_s * 2 ** (attempt - 1)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        for hour in again:
            log.warning(
                "hour.retry",
                hour=iso_hour(hour),
                attempt=self.states[hour].attempts,
                reason=reason,
                retry_in_s=round(delay, 3),
            )
        self.summary.retries += len(again) if alone or len(again) > 1 else 1
        groups = [[h] for h in again] if alone or len(again) != len(hours) else [again]
        for group in groups:
            tg.start_soon(self._attempt_window, tg, group, delay)

    def _fail(self, hour: datetime, error: str) -> None:
        state = self.states[hour]
        result = HourResult(
            hour=hour, status="failed", attempts=state.attempts, error=error, project=self.project
        )
        self._record(result)
        log.error("hour.failed", hour=iso_hour(hour), attempts=state.attempts, error=error)

    def _record(self, result: HourResult) -> None:
        assert self.summary is not None
        self.summary.results[result.hour] = result
        if self.on_hour is not None:
            self.on_hour(result)

    @staticmethod
    async def _discard(stagings: dict[datetime, HourStaging]) -> None:
        for staging in stagings.values():
            await staging.discard()
        stagings.clear()


def _missing_pages(pages: frozenset[int], expected: int) -> str:
    """``2 of 3 pages, partition #2 absent`` (numbering may start at 0 or 1)."""
    base = 1 if pages and min(pages) >= 1 else 0
    absent = sorted(set(range(base, base + expected)) - pages)
    shown = ", ".join(f"#{p}" for p in absent[:10]) or "unknown"
    noun = "partition" if len(absent) == 1 else "partitions"
    return f"{len(pages)} of {expected} pages, {noun} {shown} absent"


async def extract(
    config: Config,
    source: ExportSource,
    sink: Sink,
    *,
    first: datetime,
    last: datetime,
    run_id: str,
    now: datetime | None = None,
    force: bool = False,
    rng: random.Random | None = None,
) -> RunSummary:
    """Plan and run one extraction; the library entry point behind ``async-amp extract``."""
    extractor = Extractor(config, source, sink, run_id=run_id, now=now, rng=rng)
    plan = await extractor.plan(first, last, force=force)
    return await extractor.run(plan)
