"""One ``extract`` run: every selected project, one sink, one task group, one summary.

The CLI parses arguments into ``RunOptions`` and calls ``run_extract``; the demo and tests
call it the same way. Signals (SIGINT/SIGTERM) cancel the run cleanly: in-flight hours are
abandoned without a manifest, the summary is still printed, and the exit code says why.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import anyio
import structlog

from .client import AiohttpExportSource
from .config import Config, Credentials, ProjectConfig, load_credentials
from .errors import ConfigError, CredentialsError, first_user_error
from .hours import HOUR, hour_range, iso_hour, parse_bound
from .logs import configure_logging, reattach_stderr
from .pipeline import Extractor, HourResult, Plan, RunSummary, available_until
from .sinks import Sink, make_sink

__all__ = [
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_USAGE",
    "RunOptions",
    "run_extract",
]

log = structlog.get_logger("async_amp")

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
SINCE_LAST_LOOKBACK = timedelta(days=400)
SINCE_LAST_GAPS = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class RunOptions:
    first: datetime | None
    last: datetime | None
    now: datetime
    force: bool = False
    dry_run: bool = False
    since_last: bool = False
    shard: tuple[int, int] | None = None
    projects: tuple[str, ...] = ()
    log_format: str | None = None
    log_file: Path | None = None
    quiet: bool = False
    summary_json: Path | None = None
    progress: bool | None = None  # None: on when stderr is a terminal and logs are for people


@dataclass(slots=True)
class _Job:
    project: ProjectConfig
    extractor: Extractor
    source: AiohttpExportSource | None
    plan: Plan | None = None


@dataclass(slots=True)
class RunOutcome:
    run_id: str
    where: str
    jobs: list[tuple[str, Plan, RunSummary | None]] = field(default_factory=list)
    signum: int | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.signum is not None:
            return EXIT_SIGNAL.get(signal.Signals(self.signum), EXIT_INCOMPLETE)
        codes = [s.exit_code for _, _, s in self.jobs if s is not None]
        return max(codes, default=EXIT_OK)

    def to_json(self) -> dict[str, Any]:
        projects = {name: s.to_json() for name, _, s in self.jobs if s is not None}
        keys = ("complete", "empty", "failed", "skipped", "not_available", "events")
        totals: dict[str, Any] = {k: sum(p[k] for p in projects.values()) for k in keys}
        totals["bytes_written"] = sum(p["bytes_written"] for p in projects.values())
        totals["failed_hours"] = [
            f"{name}:{hour}" for name, p in projects.items() for hour in p["failed_hours"]
        ]
        return {
            "run_id": self.run_id,
            "sink": self.where,
            "seconds": round(self.seconds, 3),
            "interrupted": self.signum is not None,
            "exit_code": self.exit_code,
            "totals": totals,
            "projects": projects,
        }


def select_projects(config: Config, names: Sequence[str]) -> tuple[ProjectConfig, ...]:
    projects = config.project_list()
    if not names:
        return projects
    known = {p.name: p for p in projects}
    unknown = [n for n in names if n not in known]
    if unknown:
        msg = (
            f"unknown project {', '.join(map(repr, unknown))}: the config has "
            f"{', '.join(map(repr, known))}"
        )
        raise ConfigError(msg)
    return tuple(known[n] for n in dict.fromkeys(names))


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def run_extract(
    config: Config,
    options: RunOptions,
    *,
    environ: Mapping[str, str],
    credentials: Mapping[str, Credentials] | None = None,
    out: IO[str] | None = None,
) -> int:
    """Configure logging, run the extraction, print the summary; returns the exit code."""
    stdout = out or sys.stdout
    projects = select_projects(config, options.projects)
    creds: dict[str, Credentials] = dict(credentials or {})
    if not options.dry_run:
        problems: list[str] = []
        for project in projects:
            if project.name not in creds:
                try:
                    creds[project.name] = load_credentials(environ, project)
                except CredentialsError as exc:
                    problems.append(str(exc))
        if problems:
            raise CredentialsError("; ".join(problems))
    run_id = new_run_id()
    secrets = [s for c in creds.values() for s in c.secrets()]
    secrets += [
        environ[n]
        for n in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN")
        if environ.get(n)
    ]
    show_progress = options.progress
    if show_progress is None:
        show_progress = sys.stderr.isatty() and options.log_format != "json" and not options.quiet
    configure_logging(
        fmt=options.log_format,  # type: ignore[arg-type]
        log_file=options.log_file or config.output.log_dir / f"{run_id}.jsonl",
        run_id=run_id,
        secrets=secrets,
        quiet=options.quiet or show_progress,
    )
    sink = make_sink(config, run_id=run_id, environ=environ)
    progress = _Progress() if show_progress and not options.dry_run else None
    jobs = [
        _job(config, project, sink, creds.get(project.name), run_id, options, progress)
        for project in projects
    ]
    outcome = RunOutcome(run_id=run_id, where=sink.describe())
    started = time.monotonic()
    anyio.run(_go, config, options, sink, jobs, outcome, progress)
    outcome.seconds = time.monotonic() - started
    if options.dry_run:
        for name, plan, _ in outcome.jobs:
            _print_plan(name, plan, stdout, multi=len(jobs) > 1)
        return EXIT_OK
    _print_summary(outcome, _Scrubbed(stdout, secrets))
    report = outcome.to_json()
    log.info(
        "run.summary",
        **report["totals"],
        exit_code=outcome.exit_code,
        interrupted=outcome.signum is not None,
        seconds=report["seconds"],
        requests=sum(s.requests for _, _, s in outcome.jobs if s),
        retries=sum(s.retries for _, _, s in outcome.jobs if s),
    )
    if options.summary_json is not None:
        _write_summary(options.summary_json, report)
    return outcome.exit_code


def _job(
    config: Config,
    project: ProjectConfig,
    sink: Sink,
    creds: Credentials | None,
    run_id: str,
    options: RunOptions,
    progress: _Progress | None,
) -> _Job:
    source = None
    if creds is not None:
        source = AiohttpExportSource(
            project.url,
            creds.api_key,
            creds.secret_key,
            read_timeout_s=config.extract.read_timeout_s,
            connect_timeout_s=config.extract.connect_timeout_s,
            region_hint=f" (now {project.region!r}, calling {project.url})",
        )
    extractor = Extractor(
        config,
        source,  # type: ignore[arg-type]  # None only for dry runs, which make no request
        sink,
        run_id=run_id,
        now=options.now,
        project=project,
        on_hour=progress.hour_done if progress else None,
    )
    return _Job(project=project, extractor=extractor, source=source)


async def _go(
    config: Config,
    options: RunOptions,
    sink: Sink,
    jobs: list[_Job],
    outcome: RunOutcome,
    progress: _Progress | None,
) -> None:
    try:
        await sink.prepare()
        for job in jobs:
            first, last = await _range(config, options, sink, job.project)
            job.plan = await job.extractor.plan(
                first, last, force=options.force, shard=options.shard
            )
        if options.dry_run:
            outcome.jobs = [(j.project.name, j.plan, None) for j in jobs if j.plan is not None]
            return
        total = config.extract.total_concurrency or sum(j.extractor.concurrency for j in jobs)
        overall = anyio.CapacityLimiter(total)
        for job in jobs:
            job.extractor.overall = overall
        caught: list[int] = []
        async with AsyncExitStack() as stack:
            for job in jobs:
                assert job.source is not None
                await stack.enter_async_context(job.source)
            await _run_all(jobs, caught, progress)
        outcome.signum = caught[0] if caught else None
        outcome.jobs = [
            (j.project.name, j.plan, j.extractor.summary) for j in jobs if j.plan is not None
        ]
    finally:
        with anyio.CancelScope(shield=True):
            await sink.aclose()


async def _range(
    config: Config, options: RunOptions, sink: Sink, project: ProjectConfig
) -> tuple[datetime, datetime]:
    if not options.since_last:
        assert options.first is not None and options.last is not None
        return options.first, options.last
    newest = available_until(options.now, config.extract.availability_lag_hours)
    configured = options.first
    if configured is None and config.extract.start:
        configured = parse_bound(config.extract.start, is_end=False, now=options.now)
    scan_from = min(configured, newest) if configured else newest - SINCE_LAST_LOOKBACK
    done = await sink.completed_hours(project.name, hour_range(scan_from, newest))
    if done:
        first = max(done) + HOUR
        # hours left behind by earlier runs (failed, interrupted) are asked again: start at
        # the oldest gap after the configured start, or within a week of the newest hour
        floor = configured if configured is not None else max(done) - SINCE_LAST_GAPS
        gaps = [h for h in hour_range(max(floor, scan_from), max(done)) if h not in done]
        if gaps:
            log.warning(
                "run.since_last_gaps", project=project.name, gaps=len(gaps), first=iso_hour(gaps[0])
            )
            first = gaps[0]
    elif configured is not None:
        first = configured
    else:
        msg = (
            f"--since-last: nothing extracted yet for project {project.name!r}; "
            'set [extract] start = "2026-01-01" or pass --start'
        )
        raise ConfigError(msg)
    last = options.last or newest
    log.info("run.since_last", project=project.name, start=iso_hour(first), end=iso_hour(last))
    return first, max(first, last)


async def _run_all(jobs: list[_Job], caught: list[int], progress: _Progress | None) -> None:
    try:
        async with anyio.create_task_group() as tg:

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        caught.append(int(signum))
                        log.warning("run.interrupted", signal=signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
                        return

            async def run_jobs() -> None:
                async with anyio.create_task_group() as inner:
                    for job in jobs:
                        assert job.plan is not None
                        inner.start_soon(job.extractor.run, job.plan)
                tg.cancel_scope.cancel()

            tg.start_soon(watch_signals)
            if progress is not None:
                tg.start_soon(progress.show, jobs)
            await run_jobs()
    except BaseExceptionGroup as group:
        raise first_user_error(group) from None


class _Progress:
    """A live progress line on the terminal (rich): hours, events, MB/s, retries, ETA."""

    def __init__(self) -> None:
        self.done = 0
        self.events = 0
        self.failed = 0

    def hour_done(self, result: HourResult) -> None:
        self.done += 1
        self.events += result.events
        self.failed += result.status == "failed"

    async def show(self, jobs: list[_Job]) -> None:
        from rich.console import Console  # noqa: PLC0415 - only on a terminal
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        total = sum(len(j.plan.to_fetch) for j in jobs if j.plan is not None)
        started = time.monotonic()
        with Progress(
            TextColumn("[bold]hours"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            reattach_stderr()
            task = bar.add_task("extract", total=total, detail="")
            try:
                while True:
                    summaries = [j.extractor.summary for j in jobs if j.extractor.summary]
                    written = sum(s.bytes_written for s in summaries)
                    retries = sum(s.retries for s in summaries)
                    rate = written / 1e6 / max(time.monotonic() - started, 1e-3)
                    detail = f"{self.events:,} events  {rate:,.0f} MB/s  {retries} retries" + (
                        f"  [red]{self.failed} failed" if self.failed else ""
                    )
                    bar.update(task, completed=self.done, detail=detail)
                    await anyio.sleep(0.25)
            finally:
                reattach_stderr()


class _Scrubbed:
    """A text stream that masks secrets, in case an error message quoted one."""

    def __init__(self, out: IO[str], secrets: Sequence[str]) -> None:
        self._out = out
        self._secrets = [s for s in secrets if len(s) >= 4]

    def write(self, text: str) -> int:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return self._out.write(text)

    def flush(self) -> None:
        self._out.flush()


def _write_summary(path: Path, report: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        msg = f"cannot write --summary-json {path}: {exc.strerror or exc}"
        raise ConfigError(msg) from None


def _print_plan(name: str, plan: Plan, out: IO[str], *, multi: bool) -> None:
    days: dict[str, list[int]] = {}
    fetch, done, later = set(plan.to_fetch), set(plan.done), set(plan.not_available)
    for hour in plan.hours:
        row = days.setdefault(f"{hour:%Y-%m-%d}", [0, 0, 0, 0])
        row[0 if hour in fetch else 1 if hour in done else 2 if hour in later else 3] += 1
    title = f"plan for {name!r}" if multi else "plan"
    print(f"{title}: {len(plan.hours)} hours", file=out)
    shard = f"{'other shard':>13}" if plan.other_shards else ""
    print(f"  {'day':<12}{'fetch':>7}{'skip':>7}{'not yet':>9}{shard}", file=out)
    for day, (f, s, n, o) in days.items():
        extra = f"{o:>13}" if plan.other_shards else ""
        print(f"  {day:<12}{f:>7}{s:>7}{n:>9}{extra}", file=out)
    extra = f"{len(plan.other_shards):>13}" if plan.other_shards else ""
    print(
        f"  {'total':<12}{len(plan.to_fetch):>7}{len(plan.done):>7}"
        f"{len(plan.not_available):>9}{extra}",
        file=out,
    )
    if plan.not_available:
        print(
            f"  not yet available: {iso_hour(plan.not_available[0])} .. "
            f"{iso_hour(plan.not_available[-1])} (availability_lag_hours)",
            file=out,
        )


def _print_summary(outcome: RunOutcome, out: Any) -> None:
    print(f"async-amp run {outcome.run_id} -> {outcome.where}", file=out)
    header = (
        f"  {'project':<14}{'hours':>6}{'complete':>9}{'empty':>6}{'failed':>7}{'skipped':>8}"
        f"{'not yet':>8}{'events':>12}{'MB':>10}{'seconds':>9}{'MB/s':>8}"
    )
    print(header, file=out)
    for name, plan, summary in outcome.jobs:
        if summary is None:
            continue
        s = summary.to_json()
        print(
            f"  {name:<14}{len(plan.hours):>6}{s['complete']:>9}{s['empty']:>6}{s['failed']:>7}"
            f"{s['skipped']:>8}{s['not_available']:>8}{summary.events:>12,}"
            f"{summary.bytes_written / 1e6:>10,.1f}{summary.seconds:>9.1f}{s['mb_per_s']:>8}",
            file=out,
        )
    summaries = [s for _, _, s in outcome.jobs if s is not None]
    print(
        f"  requests {sum(s.requests for s in summaries)}, retries "
        f"{sum(s.retries for s in summaries)}, throttled {sum(s.throttled for s in summaries)}, "
        f"downloaded {sum(s.bytes_in for s in summaries) / 1e6:,.1f} MB",
        file=out,
    )
    for name, _, summary in outcome.jobs:
        for result in summary.failed if summary else ():
            print(f"  FAILED {name} {iso_hour(result.hour)}: {result.error}", file=out)
    unfinished = sum(
        len(plan.to_fetch) - len(s.results) for _, plan, s in outcome.jobs if s is not None
    )
    if outcome.signum is not None:
        print(
            f"  interrupted by {signal.Signals(outcome.signum).name}: {unfinished} hours "
            "abandoned without a manifest; rerun the same command to resume",
            file=out,
        )
    elif any(p.other_shards for _, p, _ in outcome.jobs):
        print("  (hours of other shards were left to their workers)", file=out)
