"""One extraction run: every selected project, one sink, one shared bound, one result.

``ExtractionRun`` is what ``async_amp.extract`` and the CLI drive::

    run = ExtractionRun(config, RunRequest(first, last, now=now))   # checks projects, keys
    async with run:              # opens the sink (and closes it, whatever happens)
        await run.plan()         # per project: the hours to fetch, skip, leave for later
        await run.execute()      # fetch them all; cancel it to stop (hours in flight are
    result = run.result()        # abandoned without a manifest); a frozen ExtractResult

It installs no signal handler and configures no logging; its log events go to the
``async_amp`` logger, each carrying the run id (and the project), with the keys masked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from ..config import Config, Credentials, ProjectConfig, select_projects
from ..config.load import load_credentials, process_environment
from ..errors import ConfigError, CredentialsError, StorageError, first_user_error
from ..hours import HOUR, available_until, hour_range, iso_hour, new_run_id, parse_bound
from ..logs import bound, log
from ..output.marker import ProjectIdRecord
from ..output.open import resolve_output
from ..output.stores import Sink, Store, make_store
from ..source.cloud_export import CloudExportSource
from ..source.cloud_stores import make_cloud_source
from ..source.export_api import AiohttpExportSource
from .pipeline import Extractor
from .plan import Plan
from .recheck import recheck_since
from .results import ExtractResult, HourResult, MergedIdsResult, ProjectResult

if TYPE_CHECKING:
    from ..merged.feed import MergedIdsFeed

__all__ = ["ExtractionRun", "RunRequest", "log_summary", "new_run_id", "select_projects"]

SINCE_LAST_LOOKBACK = timedelta(days=400)
SINCE_LAST_GAPS = timedelta(days=7)
AMPLITUDE_CONCURRENCY = 5  # export requests per project Amplitude takes at once (about)
STORAGE_SECRETS = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN")


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What to extract: a range of hours (or ``since_last``), for which projects, how."""

    first: datetime | None
    last: datetime | None
    now: datetime
    force: bool = False
    since_last: bool = False
    shard: tuple[int, int] | None = None
    projects: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass(slots=True)
class _Job:
    project: ProjectConfig
    extractor: Extractor
    source: AiohttpExportSource | CloudExportSource | None
    plan: Plan | None = None
    gaps: tuple[datetime, ...] = ()  # hours left behind by earlier runs (--since-last)
    feed: MergedIdsFeed | None = None  # the cloud export's merged-IDs feed
    merged: MergedIdsResult | None = None


def _credentials(
    config: Config,
    projects: Sequence[ProjectConfig],
    environ: Mapping[str, str],
    given: Mapping[str, Credentials],
) -> dict[str, Credentials]:
    """Every project's keys: given > on the project > on the config > its environment
    variables. Every missing one is named in one ``CredentialsError``."""
    found: dict[str, Credentials] = {}
    problems: list[str] = []
    for project in projects:
        creds = given.get(project.name) or project.credentials or config.credentials
        if creds is None:
            try:
                creds = load_credentials(environ, project)
            except CredentialsError as exc:
                problems.append(str(exc))
                continue
        found[project.name] = creds
    if problems:
        raise CredentialsError("; ".join(problems))
    return found


class ExtractionRun:
    """Plans and runs one extraction over every selected project (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        request: RunRequest,
        *,
        credentials: Mapping[str, Credentials] | None = None,
        on_hour: Callable[[HourResult], None] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.config = config
        self.request = request
        environ = config.environ if config.environ is not None else process_environment()
        self.projects = select_projects(config, request.projects)
        creds = (
            {}
            if request.dry_run or config.source.kind == "cloud_export"  # no Amplitude keys
            else _credentials(config, self.projects, environ, credentials or {})
        )
        self._environ = environ
        self.run_id = run_id or new_run_id()
        self.secrets = tuple(s for c in creds.values() for s in c.secrets()) + tuple(
            environ[n] for n in STORAGE_SECRETS if environ.get(n)
        )
        self._environ = environ
        self._creds = creds
        self._on_hour = on_hour
        self.store: Store = make_store(config, run_id=self.run_id, environ=environ)
        self.sink: Sink = self.store  # the format's sink once the output is opened
        self.where = self.store.describe()
        self._jobs: list[_Job] = []  # made when the output is known (``async with``)
        self._started = time.monotonic()
        self._seconds = 0.0

    def _job(
        self,
        project: ProjectConfig,
        creds: Credentials | None,
        on_hour: Callable[[HourResult], None] | None,
    ) -> _Job:
        ex = self.config.extract
        source: AiohttpExportSource | CloudExportSource | None = None
        feed: MergedIdsFeed | None = None
        if self.config.source.kind == "cloud_export":
            source = make_cloud_source(
                self.config, project, run_id=self.run_id, environ=self._environ
            )
            # pyarrow only for a cloud export's merged IDs: an Export API run stays lean
            from ..merged import merged_table  # noqa: PLC0415
            from ..merged.feed import MergedIdsFeed  # noqa: PLC0415

            src = self.config.source
            table = merged_table(
                self.config.output.data_format, self.store, self.sink, project.name
            )
            feed = MergedIdsFeed(
                source,
                table,
                prefix=src.prefix if src.merged_ids_prefix is None else src.merged_ids_prefix,
                run_id=self.run_id,
                concurrency=project.concurrency or ex.concurrency,
                retry=(ex.max_attempts, ex.backoff_base_s, ex.backoff_max_s),
            )
        elif creds is not None:
            source = AiohttpExportSource(
                project.url,
                creds.api_key,
                creds.secret_key,
                read_timeout_s=ex.read_timeout_s,
                connect_timeout_s=ex.connect_timeout_s,
                min_rate_kib_s=ex.min_rate_kib_s,
                region_hint=f" (now {project.region!r}, calling {project.url})",
            )
        extractor = Extractor(
            self.config,
            source,  # type: ignore[arg-type]  # None only for dry runs, which make no request
            self.sink,
            run_id=self.run_id,
            now=self.request.now,
            project=project,
            on_hour=on_hour,
            project_ids=ProjectIdRecord(self.store, project.name),
        )
        return _Job(project=project, extractor=extractor, source=source, feed=feed)

    async def __aenter__(self) -> ExtractionRun:
        """Open the output (the format its roots record, or refuse a mix), prepare it, and
        record a new output's format before any hour is committed."""
        try:
            with bound(run_id=self.run_id, secrets=self.secrets):
                try:
                    output = await resolve_output(
                        self.config,
                        self.store,
                        [p.name for p in self.projects],
                        run_id=self.run_id,
                        environ=self._environ,
                    )
                except StorageError:
                    await self.store.prepare()  # its one line for a wrong endpoint or bucket
                    raise
                self.config, self.sink = output.config, output.sink
                self.where = self.sink.describe()
                await self.sink.prepare()
                if not self.request.dry_run:
                    await output.record()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.sink.aclose()
            raise
        self._jobs = [
            self._job(project, self._creds.get(project.name), self._on_hour)
            for project in self.projects
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            for job in self._jobs:  # a cloud export's client, when planning stopped the run
                if isinstance(job.source, CloudExportSource):
                    await job.source.aclose()
            await self.sink.aclose()

    @property
    def plans(self) -> dict[str, Plan]:
        """Each project's plan, once :meth:`plan` has made it."""
        return {j.project.name: j.plan for j in self._jobs if j.plan is not None}

    async def plan(self) -> None:
        """Decide, per project, which hours to fetch (reads what the sink already has)."""
        with bound(run_id=self.run_id, secrets=self.secrets):
            for job in self._jobs:
                concurrency = job.extractor.concurrency
                if concurrency > AMPLITUDE_CONCURRENCY:
                    log.warning(
                        "run.concurrency_high",
                        project=job.project.name,
                        concurrency=concurrency,
                        detail=f"Amplitude allows about {AMPLITUDE_CONCURRENCY} export requests "
                        f"at once per project; at {concurrency} expect 429s (the bound then "
                        "halves itself)",
                    )
                first, last = await self._range(job)
                plan = await job.extractor.plan(
                    first, last, force=self.request.force, shard=self.request.shard
                )
                job.plan = replace(plan, gaps=tuple(h for h in job.gaps if h in plan.to_fetch))

    async def execute(self) -> None:
        """Fetch every planned hour of every project under one shared bound."""
        self._started = time.monotonic()
        try:
            with bound(run_id=self.run_id, secrets=self.secrets):
                await self._execute()
        finally:
            self._seconds = time.monotonic() - self._started

    async def _execute(self) -> None:
        jobs = [j for j in self._jobs if j.plan is not None]
        total = self.config.extract.total_concurrency or sum(j.extractor.concurrency for j in jobs)
        overall = anyio.CapacityLimiter(total)
        async with AsyncExitStack() as stack:
            for job in jobs:
                assert job.source is not None
                await stack.enter_async_context(job.source)
            try:
                async with anyio.create_task_group() as tg:
                    for job in jobs:
                        assert job.plan is not None
                        tg.start_soon(partial(job.extractor.run, job.plan, overall=overall))
                        if job.feed is not None:
                            tg.start_soon(self._merged, job)
            except BaseExceptionGroup as group:
                raise first_user_error(group) from None

    async def _merged(self, job: _Job) -> None:
        """The merged-IDs feed of the hours the plan found available (this shard's)."""
        plan, feed = job.plan, job.feed
        assert plan is not None and feed is not None
        away = {*plan.not_available, *plan.other_shards}
        hours = [h for h in plan.hours if h not in away]
        if self.request.since_last and self.request.shard is None and hours:
            # --since-last starts after the newest complete events hour: a feed hour an
            # earlier run could not read lies before it, within the week gaps are sought
            hours = [*hour_range(hours[0] - SINCE_LAST_GAPS, hours[0] - HOUR), *hours]
        since = recheck_since(self.request.now, self.config.extract.recheck)
        recheck = frozenset(h for h in hours if since is not None and h >= since)
        with bound(project=job.project.name):
            job.merged = await feed.sync(hours, recheck=recheck, force=self.request.force)

    def result(self, *, interrupted: bool = False) -> ExtractResult:
        """What the run did so far (everything, once :meth:`execute` has returned)."""
        projects = []
        for job in self._jobs:
            if job.plan is None:
                continue
            summary = job.extractor.summary
            if summary is None:
                projects.append(ProjectResult(name=job.project.name, plan=job.plan))
            else:
                done = summary.result()
                if job.merged is not None:
                    done = replace(
                        done,
                        merged_ids=job.merged,
                        bytes_downloaded=done.bytes_downloaded + job.merged.bytes_read,
                    )
                projects.append(done)
        seconds = self._seconds or time.monotonic() - self._started
        return ExtractResult(
            run_id=self.run_id,
            sink=self.where,
            projects=tuple(projects),
            seconds=seconds,
            interrupted=interrupted,
            dry_run=self.request.dry_run,
        )

    async def _range(self, job: _Job) -> tuple[datetime, datetime]:
        project, request = job.project, self.request
        if not request.since_last:
            assert request.first is not None and request.last is not None
            return request.first, request.last
        newest = available_until(request.now, self.config.extract.availability_lag_hours)
        configured = request.first
        if configured is None and self.config.extract.start:
            configured = parse_bound(self.config.extract.start, is_end=False, now=request.now)
        scan_from = min(configured, newest) if configured else newest - SINCE_LAST_LOOKBACK
        done = await self.sink.completed_hours(project.name, hour_range(scan_from, newest))
        if done:
            first = max(done) + HOUR
            # hours left behind by earlier runs (failed, interrupted) are asked again: start at
            # the oldest gap after the configured start, or within a week of the newest hour
            floor = configured if configured is not None else max(done) - SINCE_LAST_GAPS
            floor = max(floor, min(done))  # never before the first hour the output held
            gaps = [h for h in hour_range(max(floor, scan_from), max(done)) if h not in done]
            if gaps:
                log.warning(
                    "run.since_last_gaps",
                    project=project.name,
                    gaps=len(gaps),
                    first=iso_hour(gaps[0]),
                )
                first = gaps[0]
                job.gaps = tuple(gaps)
        elif configured is not None:
            first = configured
        else:
            msg = (
                f"--since-last: nothing extracted yet for project {project.name!r}; "
                'set [extract] start = "2026-01-01" or pass --start'
            )
            raise ConfigError(msg)
        tentative = await job.extractor.tentative_empty(done)
        if tentative:  # young empty hours are asked again: part of the range
            first = min(first, *tentative)
        since = recheck_since(request.now, self.config.extract.recheck)
        if since is not None:  # the recheck window is part of the range
            first = min(first, max(since, configured or since))
        last = request.last or newest
        log.info("run.since_last", project=project.name, start=iso_hour(first), end=iso_hour(last))
        return first, max(first, last)


def log_summary(
    result: ExtractResult, *, secrets: Sequence[str] = (), exit_code: int | None = None
) -> None:
    """The ``run.summary`` event: the totals of ``result`` (``exit_code``: when not its own)."""
    report = result.to_json()
    with bound(run_id=result.run_id, secrets=secrets):
        log.info(
            "run.summary",
            **report["totals"],
            exit_code=result.exit_code if exit_code is None else exit_code,
            interrupted=result.interrupted,
            seconds=report["seconds"],
            requests=sum(p.requests for p in result.projects),
            retries=sum(p.retries for p in result.projects),
        )
