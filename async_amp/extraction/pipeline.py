"""One project's extraction, in the order things happen to an hour:

plan (``plan.py``: which hours) -> schedule (``schedule.py``: which windows, when) -> attempt
(``attempt.py``: one request through the decoder thread into staging) -> judge (``judge.py``:
is each hour whole or short?) -> commit (``commit.py``: files, then the manifest) -> retry
(``retry.py``: when to ask again, when to give up).

This module plans a project's run and keeps its tally (``results.RunSummary``); ``flow.py``
wires the steps together for each hour, from a frozen ``FlowContext`` this module makes. One
task group per run; every request passes the adaptive limiter (``limiter.py``, which shrinks
on 429/503) and, with several projects, the run's overall bound (given to ``run``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import anyio

from ..config import Config, ProjectConfig
from ..errors import first_user_error
from ..hours import hour_range
from ..logs import bound, log
from ..output.marker import ProjectIdRecord
from ..output.stores.base import Sink
from ..readback.bounded import map_bounded
from ..source.cloud_export import CloudExportSource
from ..source.export_api import ExportSource
from .flow import Flow, FlowContext
from .guard import RunGuard, stall_window_s
from .limiter import AdaptiveLimiter
from .plan import Plan, make_plan
from .recheck import recheck_since
from .results import HourResult, RunSummary

__all__ = ["Extractor"]


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
        project_ids: ProjectIdRecord | None = None,
    ) -> None:
        self.config = config
        self.project_ids = project_ids
        self.project_config = project or config.project_list()[0]
        self.project = self.project_config.name
        self.source = source
        self.sink = sink
        self.run_id = run_id
        self.now = now or datetime.now(UTC)
        self.rng = rng or random.Random()
        self.on_hour = on_hour
        self.concurrency = self.project_config.concurrency or config.extract.concurrency
        self.summary: RunSummary | None = None  # the tally of the current run, for observers

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
        now, lag = self.now, self.config.extract.availability_lag_hours
        if isinstance(self.source, CloudExportSource):  # done: what the export has moved past
            now, lag = await self.source.frontier(self.now), 0
        plan = make_plan(
            first,
            last,
            done=done,
            now=now,
            lag_hours=lag,
            shard=shard,
            recheck_since=recheck_since(self.now, self.config.extract.recheck),
            tentative=await self.tentative_empty(done),
        )
        if isinstance(self.source, CloudExportSource) and plan.recheck:
            plan = await self._listed_alike(plan, self.source)
        return plan

    async def _listed_alike(self, plan: Plan, source: CloudExportSource) -> Plan:
        """``plan`` without the rechecked hours whose export files are listed exactly as
        their manifest records them (names, sizes, ETags or generations): Amplitude did not
        rewrite them, so they are not read again."""

        async def alike(hour: datetime) -> bool | None:
            manifest = await self.sink.read_manifest(self.project, hour)
            if manifest is None or manifest.status != "complete" or not manifest.exported:
                return None  # not read from this export (the API's, or empty): read it
            listed = {(o.name, o.size, o.etag) for o in await source.objects(hour, hour)}
            return listed == {(o.name, o.size, o.etag) for o in manifest.exported} or None

        same = set(await map_bounded(plan.recheck, alike, self.concurrency))
        if not same:
            return plan
        log.info("export.unchanged", project=self.project, hours=len(same))
        return replace(
            plan,
            to_fetch=tuple(h for h in plan.to_fetch if h not in same),
            done=tuple(sorted({*plan.done, *same})),
            recheck=tuple(h for h in plan.recheck if h not in same),
        )

    async def tentative_empty(self, done: set[datetime]) -> frozenset[datetime]:
        """The hours of ``done`` stored as empty but younger than ``[extract] empty_recheck``:
        a later answer may have data (Amplitude's late processing)."""
        since = recheck_since(self.now, self.config.extract.empty_recheck)
        if since is None:
            return frozenset()
        found = set()
        for hour in sorted(h for h in done if h >= since):
            try:
                manifest = await self.sink.read_manifest(self.project, hour)
            except ValueError:  # unreadable: the plan treats it as done, verify reports it
                continue
            if manifest is not None and manifest.status == "empty":
                found.add(hour)
        return frozenset(found)

    async def run(self, plan: Plan, *, overall: anyio.CapacityLimiter | None = None) -> RunSummary:
        """Fetch the hours ``plan`` names; ``overall``: the run's bound over every project."""
        summary = self.summary = RunSummary(run_id=self.run_id, plan=plan, project=self.project)
        context = FlowContext(
            config=self.config,
            source=self.source,
            sink=self.sink,
            project=self.project,
            run_id=self.run_id,
            rng=self.rng,
            concurrency=self.concurrency,
            on_hour=self.on_hour,
            overall=overall,
            project_ids=self.project_ids,
        )
        started = time.monotonic()
        limiter = AdaptiveLimiter(self.concurrency)
        # every line this run logs (its tasks inherit the context) names the project
        with bound(project=self.project):
            log.info(
                "run.start",
                hours=len(plan.hours),
                to_fetch=len(plan.to_fetch),
                skipped=len(plan.done),
                not_available=len(plan.not_available),
                concurrency=self.concurrency,
                sink=self.sink.describe(),
            )
            guard = RunGuard(
                max_probes=self.config.extract.max_attempts - 1,  # before an hour runs out
                backoff_base_s=self.config.extract.backoff_base_s,
                backoff_max_s=self.config.extract.backoff_max_s,
                rng=self.rng,
                # a store that failed a call is asked whether it answers: one cheap listing
                store_probe=lambda: self.sink.completed_hours(self.project, plan.hours[:1]),
                stall_window_s=stall_window_s(self.sink),
            )
            try:
                async with anyio.create_task_group() as tg:
                    flow = Flow(context, summary, limiter, tg, guard)
                    tg.start_soon(flow.start, list(plan.to_fetch))
            except BaseExceptionGroup as group:
                raise first_user_error(group) from None
            finally:
                summary.seconds = time.monotonic() - started
                summary.throttled = limiter.throttle_events
                self._stopped(summary, guard)
        return summary

    def _stopped(self, summary: RunSummary, guard: RunGuard) -> None:
        """The one line saying why the run stopped starting hours, if it did."""
        stop = guard.stop
        if stop is None or stop.kind == "refused":  # refused keys: the error says it
            return
        plan = summary.plan
        done = len(plan.done) + summary.count("complete") + summary.count("empty")
        url = self.project_config.url + "/api/2/export"
        summary.stopped = stop.line(url=url, done=done, total=len(plan.done) + len(plan.to_fetch))
        log.error("run.stopped", reason=stop.kind, error=summary.stopped)
