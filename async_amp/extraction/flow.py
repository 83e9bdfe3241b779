"""The steps that move one project's hours along, and what the run knows of each hour:

schedule (``start``, ``launch``) -> attempt (``attempt``: one request through the decoder
thread into staging) -> judge and commit (``settle``) -> retry (``retry``, ``fail``). The
``Extractor`` (``pipeline.py``) makes one ``Flow`` per run, inside the run's task group.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

import anyio
import anyio.abc

from ..backoff import backoff_delay
from ..config import Config
from ..errors import (
    AttemptError,
    ConfigError,
    ExportTooLargeError,
    RetryableHTTPError,
    StorageError,
)
from ..hours import iso_hour
from ..logs import log
from ..output.manifest import Manifest
from ..output.marker import ProjectIdRecord
from ..output.registry import format_for
from ..output.stores.base import HourStaging, Sink
from ..source.archive import ArchiveLimits
from ..source.export_api import ExportSource
from .attempt import Fetched, Stagings, fetch_window
from .commit import commit_hour, manifest_for
from .guard import RunGuard
from .judge import by_hour, judge_hour
from .limiter import AdaptiveLimiter
from .recheck import Verdict, judge, stored_digests
from .results import HourResult, RunSummary
from .retry import plan_retry
from .schedule import Observed, Probes, schedule

__all__ = ["Flow", "FlowContext", "HourState"]


@dataclass(frozen=True, slots=True)
class FlowContext:
    """What a flow knows of its run, fixed for the run: passed in (``pipeline.Extractor``
    makes it), never read back from a parent object."""

    config: Config
    source: ExportSource
    sink: Sink
    project: str
    run_id: str
    rng: random.Random
    concurrency: int  # requests of this project in flight at once (the limiter's start)
    on_hour: Callable[[HourResult], None] | None = None
    overall: anyio.CapacityLimiter | None = None  # the run's bound over every project
    project_ids: ProjectIdRecord | None = None  # where the output records Amplitude's id


@dataclass(slots=True)
class HourState:
    """What the run knows about one hour so far."""

    attempts: int = 0
    last_short_pages: frozenset[int] | None = None  # pages of its last clean, short attempt
    last_error: str = ""


class Flow:
    """One run of one project: the hours' states, and the steps that move them along."""

    def __init__(
        self,
        context: FlowContext,
        summary: RunSummary,
        limiter: AdaptiveLimiter,
        tg: anyio.abc.TaskGroup,
        guard: RunGuard,
    ) -> None:
        ex = context.config.extract
        self.guard = guard
        self.rechecking = set(summary.plan.recheck)
        self.tentative = set(summary.plan.tentative)
        self.project_id: str | None = None  # Amplitude's id of the project, once known
        self._id_lock = anyio.Lock()
        self.ctx = context
        self.ex = ex
        self.summary = summary
        self.limiter = limiter
        self.tg = tg
        self.threads = anyio.CapacityLimiter(context.concurrency)
        # attempts downloading or committing: a download waits while as many hours as
        # requests may be in flight wait for their commit (a store that stalls takes no more)
        self.in_flight = anyio.CapacityLimiter(2 * context.concurrency)
        self.limits = ArchiveLimits(
            max_member_bytes=ex.max_member_bytes, max_expansion_ratio=ex.max_expansion_ratio
        )
        # the format says whether it stores Amplitude's gzip bytes as they are
        self.keep_gzip = format_for(context.config.output.data_format).keeps_gzip
        self.states = {hour: HourState() for hour in summary.plan.to_fetch}
        self.observed: list[Observed] = []
        self.probes = Probes()

    def _overall(self) -> AbstractAsyncContextManager[object]:
        overall = self.ctx.overall
        return overall if overall is not None else nullcontext()

    # --- schedule --------------------------------------------------------------------------

    async def start(self, hours: list[datetime]) -> None:
        await schedule(
            hours,
            window_hours=self.ex.window_hours,
            slots=self.ctx.concurrency,
            launch=self.launch,
            probes=self.probes,
            observed=self.observed,
        )

    def launch(self, hours: list[datetime], delay: float = 0.0) -> None:
        self.tg.start_soon(self.attempt, hours, delay)

    # --- attempt ---------------------------------------------------------------------------

    async def attempt(self, hours: list[datetime], delay: float) -> None:
        if not await self.guard.sleep(delay):  # the run is stopping: hours stay unfinished
            self.probes.finished(hours)
            return
        async with self.in_flight:
            await self._attempt(hours)

    async def _attempt(self, hours: list[datetime]) -> None:
        started = time.monotonic()
        stagings = Stagings(self.ctx.sink, self.ctx.project)
        epoch = -1
        try:
            admission, epoch = await self.guard.admit(self.limiter.acquire, self.limiter.release)
            if admission == "stop":
                self.probes.finished(hours)
                return
            try:
                async with self._overall():
                    for hour in hours:
                        self.states[hour].attempts += 1
                    self.summary.requests += 1
                    try:
                        with self.guard.watch(admission, hours[0]):
                            fetched = await fetch_window(
                                self.ctx.source,
                                stagings,
                                hours[0],
                                hours[-1],
                                keep_gzip=self.keep_gzip,
                                limits=self.limits,
                                threads=self.threads,
                                on_bytes=self._count_bytes,
                            )
                    finally:
                        self.probes.finished(hours)
            finally:
                self.limiter.release()
        except ExportTooLargeError as exc:
            await stagings.discard()
            self._split(hours, exc)
            return
        except (AttemptError, StorageError) as exc:
            await stagings.discard()
            if isinstance(exc, StorageError):
                self.guard.store_failed(exc)  # blocked: the run stops, the hours stay unfinished
            if self.guard.stopped:
                return
            if isinstance(exc, RetryableHTTPError) and exc.throttled:
                bound_now = self.limiter.throttled(epoch)
                log.warning("run.throttled", status=exc.status, concurrency=bound_now)
            for hour in hours:
                state = self.states[hour]
                state.last_short_pages = None
                state.last_error = str(exc)
            self.retry(hours, str(exc), retry_after=exc.retry_after)
            return
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stagings.discard()
            raise
        self.limiter.succeeded()
        self.observed.append(Observed(hours=len(hours), zip_bytes=fetched.zip_bytes))
        foreign = await self._foreign(fetched)
        if foreign:
            await stagings.discard()
            raise ConfigError(foreign)
        await self.settle(hours, fetched, stagings, time.monotonic() - started)

    async def _foreign(self, fetched: Fetched) -> str:
        """Why an archive whose every member is of another Amplitude project than the one
        this output holds under the project's name is refused ("" when it is not)."""
        ids = {p.member.project_id for p in fetched.members or ()}
        if not ids:
            return ""
        if self.project_id is None:
            async with self._id_lock:
                if self.project_id is None:
                    self.project_id = await self._recorded_project_id(min(ids))
        if self.project_id in ids:
            return ""
        return (
            f"the Export API answered with data of Amplitude project {min(ids)}, but the output "
            f"holds project {self.project_id} under {self.ctx.project!r}: these keys "
            "(AMP_API_KEY, AMP_SECRET_KEY) are another project's; use this project's keys, or "
            "another project name for that one"
        )

    async def _recorded_project_id(self, found: str) -> str:
        """The id the output records: in its marker; else (an output made before markers held
        it) in the newest stored hours of the range; else ``found``, this archive's. Then
        recorded in the marker, when it had none."""
        ids = self.ctx.project_ids
        if ids is not None and (recorded := await ids.read()):
            return recorded
        project_id = await self._stored_project_id() or found
        if ids is not None:
            await ids.record(project_id)
        return project_id

    async def _stored_project_id(self) -> str:
        """The Amplitude project id the newest stored hours of the range record ("": none)."""
        for hour in list(reversed(self.summary.plan.done))[:3]:
            try:
                manifest = await self.ctx.sink.read_manifest(self.ctx.project, hour)
            except ValueError:
                continue
            if manifest is not None and manifest.project_id:
                return manifest.project_id
        return ""

    def _count_bytes(self, size: int) -> None:
        self.summary.bytes_in += size

    def _split(self, hours: list[datetime], exc: ExportTooLargeError) -> None:
        if len(hours) > 1:
            half = len(hours) // 2
            log.warning("window.split", start=iso_hour(hours[0]), end=iso_hour(hours[-1]))
            self.launch(hours[:half])
            self.launch(hours[half:])
            return
        self.fail(hours[0], f"{exc}; an hour over 4 GB cannot be exported through this API")

    # --- judge and commit --------------------------------------------------------------------

    async def settle(
        self, hours: list[datetime], fetched: Fetched, stagings: Stagings, seconds: float
    ) -> None:
        """Judge each hour of a clean attempt; commit the whole ones, ask again for the rest."""
        expected = self.ex.expected_pages_per_hour
        retry: list[datetime] = []
        for hour, items in by_hour(hours, fetched.members).items():
            state = self.states[hour]
            pages = frozenset(p.member.page for p in items)
            verdict = judge_hour(
                pages,
                expected=expected,
                no_data=fetched.members is None,
                previous_short=state.last_short_pages,
            )
            if verdict.action == "retry":
                state.last_short_pages = pages
                state.last_error = verdict.problem
                log.warning(
                    "hour.short",
                    hour=iso_hour(hour),
                    attempt=state.attempts,
                    detail=f"hour {iso_hour(hour)[:13]}: {verdict.problem}",
                )
                staging = stagings.take(hour)
                if staging is not None:
                    await staging.discard()
                retry.append(hour)
                continue
            if verdict.warnings:
                log.warning(
                    "hour.accepted_short",
                    hour=iso_hour(hour),
                    detail=verdict.problem,
                    pages=len(pages),
                )
            manifest = manifest_for(
                hour,
                items,
                attempts=state.attempts,
                run_id=self.ctx.run_id,
                warnings=verdict.warnings,
            )
            if fetched.exported:
                base = f"{hour.year:04d}-{hour.month:02d}-{hour.day:02d}_{hour.hour}#"
                mine = tuple(o for o in fetched.exported if f"_{base}" in o.name)
                manifest = dataclasses.replace(manifest, exported=mine)
            staging = stagings.take(hour) or self.ctx.sink.stage(self.ctx.project, hour)
            if hour in self.tentative and not await self._late(hour, manifest, staging):
                continue
            recheck = await self._recheck(hour, manifest) if hour in self.rechecking else None
            if recheck is not None and not recheck.replace:
                await staging.discard()  # the stored hour stays exactly as it was
                self._kept(hour, recheck, manifest)
                continue
            stored = await self._commit(staging, manifest)
            if isinstance(stored, StorageError):
                error = stored
                if self.guard.stopped:
                    continue  # left unfinished, for the rerun
                state.last_error = f"commit failed: {error}"
                state.last_short_pages = None
                retry.append(hour)
                continue
            self.record(
                HourResult(
                    project=self.ctx.project,
                    hour=hour,
                    status=manifest.status,
                    attempts=state.attempts,
                    events=manifest.events,
                    bytes=stored.size,
                    files=stored.file_count,
                    received_bytes=manifest.received_bytes,
                    ndjson_bytes=manifest.ndjson_bytes,
                    recheck="changed" if recheck is not None else "",
                    # Parquet and Delta: lines kept in the hour's quarantine (columnar.deadletter)
                    quarantined=int(getattr(staging, "quarantined_lines", 0)),
                )
            )
            log.info(
                "hour.done",
                hour=iso_hour(hour),
                status=manifest.status,
                attempt=state.attempts,
                files=stored.file_count,
                events=manifest.events,
                bytes=stored.size,
                ndjson_bytes=manifest.ndjson_bytes,
                seconds=round(seconds, 3),
            )
        if retry:
            self.retry(retry, "short hour or failed commit", retry_after=None, alone=True)

    async def _commit(self, staging: HourStaging, manifest: Manifest) -> Manifest | StorageError:
        """Commit; when the store fails for a passing reason the same staging is committed
        again after a backoff (the archive is not downloaded again), until the store answers,
        ``max_attempts`` commits failed (then the hour is asked again) or the guard stops the
        run (a store that fails every call). The staging is discarded when it fails."""
        tries = 0
        while True:
            error = await commit_hour(staging, manifest)
            if not isinstance(error, StorageError):
                self.guard.store_ok()
                return error  # the manifest stored
            self.guard.store_failed(error)
            tries += 1
            if self.guard.stopped or tries >= self.ex.max_attempts:
                break
            delay = backoff_delay(
                tries, base_s=self.ex.backoff_base_s, max_s=self.ex.backoff_max_s, rng=self.ctx.rng
            )
            # a store that failed a call is asked (a listing) before the commit is tried again
            if not await self.guard.sleep(delay) or not await self.guard.store_answers():
                break
            log.info("hour.commit_again", hour=iso_hour(manifest.hour), attempt=tries + 1)
        await staging.discard()
        return error

    async def _late(self, hour: datetime, manifest: Manifest, staging: HourStaging) -> bool:
        """A young empty hour asked again: True when it now has data (late processing), to
        be committed; else its stored empty manifest stays exactly as it was."""
        if manifest.status == "complete":
            log.info("hour.late_data", hour=iso_hour(hour), events=manifest.events)
            return True
        await staging.discard()
        state = self.states[hour]
        self.record(
            HourResult(project=self.ctx.project, hour=hour, status="empty", attempts=state.attempts)
        )
        return False

    async def _recheck(self, hour: datetime, manifest: Manifest) -> Verdict:
        """``--recheck``: the stored hour against this answer; logs ``hour.changed``."""
        sink, project = self.ctx.sink, self.ctx.project
        try:
            before = await sink.read_manifest(project, hour)
        except ValueError:  # not a valid manifest: the hour is replaced
            before = None
        stored = await stored_digests(sink, project, hour, before) if before else None
        verdict = judge(before, manifest, stored)
        if verdict.replace:
            log.info(
                "hour.changed",
                hour=iso_hour(hour),
                events_before=verdict.events_before,
                events_after=manifest.events,
                members_added=verdict.added,
                members_removed=verdict.removed,
                members_differ=verdict.differ,
            )
        return verdict

    def _kept(self, hour: datetime, verdict: Verdict, new: Manifest) -> None:
        before = verdict.before
        assert before is not None
        if verdict.outcome == "kept":
            log.warning(
                "hour.recheck_kept",
                hour=iso_hour(hour),
                events_before=before.events,
                detail="the Export API now has no data for this complete hour; the stored "
                "data is kept (extract --force replaces it)",
            )
        else:
            log.info("hour.unchanged", hour=iso_hour(hour), events=new.events)
        self.record(
            HourResult(
                project=self.ctx.project,
                hour=hour,
                status=before.status,
                attempts=self.states[hour].attempts,
                events=before.events,
                files=before.file_count,
                recheck=verdict.outcome,
            )
        )

    # --- retry -----------------------------------------------------------------------------

    def retry(
        self,
        hours: list[datetime],
        reason: str,
        *,
        retry_after: float | None,
        alone: bool = False,
    ) -> None:
        if self.guard.stopped:
            return  # stopping: the hours stay unfinished, for the rerun
        decision = plan_retry(
            hours,
            {h: self.states[h].attempts for h in hours},
            max_attempts=self.ex.max_attempts,
            alone=alone,
            retry_after=retry_after,
            base_s=self.ex.backoff_base_s,
            max_s=self.ex.backoff_max_s,
            rng=self.ctx.rng,
        )
        for hour in decision.give_up:
            self.fail(hour, self.states[hour].last_error or reason)
        for hour in decision.again:
            log.warning(
                "hour.retry",
                hour=iso_hour(hour),
                attempt=self.states[hour].attempts,
                reason=reason,
                retry_in_s=round(decision.delay, 3),
            )
        self.summary.retries += len(decision.again)
        for group in decision.groups:
            self.launch(list(group), decision.delay)

    def fail(self, hour: datetime, error: str) -> None:
        attempts = self.states[hour].attempts
        self.record(
            HourResult(
                hour=hour, status="failed", attempts=attempts, error=error, project=self.ctx.project
            )
        )
        log.error("hour.failed", hour=iso_hour(hour), attempts=attempts, error=error)

    def record(self, result: HourResult) -> None:
        self.summary.results[result.hour] = result
        if self.ctx.on_hour is not None:
            self.ctx.on_hour(result)
