"""``async-amp extract``: parse the flags, run the extraction through the library, present it.

The library (``async_amp.extract``, the Python API's one door into a run) parses the range,
plans and fetches; this module adds what only a command line wants: log output, a live
progress line on a terminal, SIGINT/SIGTERM stopping the run cleanly (in-flight hours are
abandoned without a manifest, the summary is still printed, the exit code says why), the
dry-run plan table, the summary table, --summary-json.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

from ...config import Config
from ...errors import ConfigError, first_user_error
from ...extraction.plan import Plan
from ...extraction.results import ExtractResult, HourResult, ProjectResult
from ...hours import iso_hour, new_run_id
from ...output.registry import format_names
from ...scrub import ScrubbedStream
from ..options import (
    EXIT_OK,
    add_log_options,
    add_project_option,
    add_range_options,
    add_storage_options,
    environment,
    load,
    now,
    parse_range,
    positive_int,
    shard,
)
from ..output import EXIT_SIGNAL, configure_logging, progress_bar, reattach_stderr

if TYPE_CHECKING:
    from ...extraction.run import ExtractionRun

__all__ = ["ORDER", "register", "run_and_present"]

ORDER = 10

EXTRACT_EXAMPLES = """\
examples:
  async-amp extract --start 2026-11-01 --end 2026-11-07
  async-amp extract --start 2026-11-01T05 --end 2026-11-01T08 --concurrency 8 --force
  async-amp extract --start 20261101T00 --end 20261130T23 --sink azure --dry-run
  async-amp extract --start -7d --end -1d --log-format json --log-file run.jsonl
  async-amp extract --start 2026-11-01 --end 2026-11-07 --format parquet

exit codes: 0 every available hour is complete or empty; 1 some hours are still incomplete
after all attempts (the summary names them); 2 usage, config or credential error;
130/143 interrupted by SIGINT/SIGTERM (in-flight hours are abandoned without a manifest).
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ext = commands.add_parser(
        "extract",
        help="export a range of hours (e.g. async-amp extract --start 2026-11-01 --end 2026-11-02)",
        description="Export every hour from --start to --end (both inclusive, UTC) with bounded "
        "concurrency, check each hour for completeness, and commit it only when whole.",
        epilog=EXTRACT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_range_options(ext, required=False)
    add_storage_options(ext)
    add_log_options(ext)
    ext.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="export requests in flight at once (e.g. --concurrency 4; Amplitude allows ~5 "
        "per project)",
    )
    ext.add_argument(
        "--force",
        action="store_true",
        help="re-extract hours that are already complete (e.g. --force after a bad upstream day)",
    )
    ext.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (hours to fetch, to skip, not yet available) and make no request "
        "(e.g. --dry-run before a year-long backfill)",
    )
    ext.add_argument(
        "--window-hours",
        metavar="N|auto",
        help="hours per export request; each hour is still checked and committed alone "
        "(e.g. --window-hours 24 for a quiet project, or auto)",
    )
    ext.add_argument(
        "--since-last",
        action="store_true",
        help="extract from the hour after the newest complete one (or [extract] start) up to "
        "now minus the lag, for schedulers (e.g. --since-last in an hourly cron job)",
    )
    ext.add_argument(
        "--shard",
        type=shard,
        metavar="K/N",
        help="take the K-th of N contiguous slices of the range's hours, so N workers share "
        "a backfill (e.g. --shard 2/8 in the second of eight workers)",
    )
    add_project_option(
        ext, "only this [[projects]] entry; repeat for several (e.g. --project website)"
    )
    ext.add_argument(
        "--summary-json",
        type=Path,
        metavar="PATH",
        help="also write the run summary as JSON, for schedulers and alerting "
        "(e.g. --summary-json out/summary.json)",
    )
    ext.add_argument(
        "--max-attempts",
        type=positive_int,
        metavar="N",
        help="attempts per hour before it is reported failed (e.g. --max-attempts 8)",
    )
    ext.add_argument(
        "--recheck",
        metavar="DURATION",
        help="ask complete hours younger than this again and replace those that changed "
        "(late data), e.g. --recheck 48h (also 7d, 1w)",
    )
    ext.add_argument(
        "--expected-pages",
        type=int,
        metavar="N",
        dest="expected_pages_per_hour",
        help="partitions every hour should have; fewer is a short hour (e.g. --expected-pages 3)",
    )
    ext.add_argument(
        "--format",
        choices=format_names(),
        help="what each hour's folder holds: ndjson, gzip (Amplitude's .json.gz), parquet "
        "(typed, see docs/schema.md), or delta: one Delta Lake table per project "
        "(docs/delta.md) (e.g. --format parquet)",
    )
    ext.set_defaults(handler=_cmd_extract)


def _cmd_extract(args: argparse.Namespace) -> int:
    environ = environment()
    moment = now(environ)
    hint = " (or --since-last for incremental runs)"
    first, last = parse_range(args, moment, optional=args.since_last, hint=hint)
    config = load(
        args,
        environ,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        expected_pages_per_hour=args.expected_pages_per_hour,
        window_hours=args.window_hours,
        recheck=args.recheck,
    )
    return run_and_present(
        config,
        now=moment,
        start=first,
        end=last,
        force=args.force,
        dry_run=args.dry_run,
        since_last=args.since_last,
        shard=args.shard,
        project=args.project,
        log_format=args.log_format,
        log_file=args.log_file,
        quiet=args.quiet,
        summary_json=args.summary_json,
    )


def run_and_present(
    config: Config,
    *,
    now: datetime,
    dry_run: bool = False,
    log_format: str | None = None,
    log_file: Path | None = None,
    quiet: bool = False,
    summary_json: Path | None = None,
    progress: bool | None = None,
    out: IO[str] | None = None,
    **selection: Any,
) -> int:
    """Configure log output, run the extraction (``async_amp.extract``, with ``selection``:
    its ``start``, ``end``, ``project``, ``force``, ``since_last``, ``shard``), print the plan
    or the summary; the exit code.

    ``progress``: a live progress line (None: when stderr is a terminal and logs are for
    people)."""
    from ...extraction.run import log_summary  # noqa: PLC0415 - the run loads only when extract runs

    stdout = out or sys.stdout
    if progress is None:
        progress = sys.stderr.isatty() and log_format != "json" and not quiet
    live = _Progress() if progress and not dry_run else None
    secrets: list[str] = []

    def started(run: ExtractionRun) -> None:
        secrets.extend(run.secrets)
        configure_logging(
            fmt=log_format,  # type: ignore[arg-type]
            log_file=log_file or config.output.log_dir / f"{run.run_id}.jsonl",
            secrets=run.secrets,
            quiet=quiet or progress,
        )

    caught: list[int] = []
    result = anyio.run(
        functools.partial(
            _extract, config, selection, now=now, dry_run=dry_run, live=live, caught=caught
        ),
        started,
    )
    if dry_run:
        for p in result.projects:
            _print_plan(p.name, p.plan, stdout, multi=len(result.projects) > 1)
        return EXIT_OK
    signum = caught[0] if result.interrupted else None
    code = result.exit_code if signum is None else EXIT_SIGNAL.get(signal.Signals(signum), 1)
    _print_summary(result, ScrubbedStream(stdout, secrets), signum)
    log_summary(result, secrets=secrets, exit_code=code)
    if summary_json is not None:
        report = result.to_json()
        report["exit_code"] = code
        _write_summary(summary_json, report)
    if config.models.enabled and signum is None:
        code = max(code, _build_models(config, result, now, stdout))
    return code


def _build_models(config: Config, result: ExtractResult, moment: Any, out: IO[str]) -> int:
    """``[models] enabled = true``: build the models of the days the run's hours touched."""
    from ...errors import StorageError  # noqa: PLC0415
    from ...models.api import model_after_extract_sync  # noqa: PLC0415 - DuckDB: only then
    from .model import print_runs  # noqa: PLC0415

    hours = {
        p.name: [r.hour for r in p.results if r.status in ("complete", "empty")]
        for p in result.projects
    }
    try:
        print_runs(model_after_extract_sync(config, hours, now=moment), out)
    except StorageError as exc:
        print(f"async-amp: error: models: {exc}", file=sys.stderr)
        return 1
    return 0


async def _extract(
    config: Config,
    selection: dict[str, Any],
    started: Callable[[ExtractionRun], None],
    *,
    now: datetime,
    dry_run: bool,
    live: _Progress | None,
    caught: list[int],
) -> ExtractResult:
    """``async_amp.extract``, stopped by SIGINT/SIGTERM, with the progress line beside it."""
    from ... import api  # noqa: PLC0415 - see run_and_present
    from ...logs import bound, log  # noqa: PLC0415

    stop = anyio.Event()
    run_id = new_run_id()

    def on_start(run: ExtractionRun) -> None:
        started(run)
        if live is not None:
            tg.start_soon(live.show, run)

    try:
        async with anyio.create_task_group() as tg:

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        caught.append(int(signum))
                        with bound(run_id=run_id):
                            log.warning("run.interrupted", signal=signal.Signals(signum).name)
                        stop.set()
                        return

            if not dry_run:
                tg.start_soon(watch_signals)
            result = await api.extract(
                config,
                **selection,
                now=now,
                dry_run=dry_run,
                run_id=run_id,
                stop=stop,
                on_start=on_start,
                on_hour=None if live is None else live.hour_done,
            )
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_user_error(group) from None
    return result


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

    async def show(self, run: ExtractionRun) -> None:
        started = time.monotonic()
        with progress_bar("hours") as bar:
            reattach_stderr()
            task = bar.add_task("extract", total=None, detail="")
            try:
                while True:  # the total grows as each project's plan is made
                    total = sum(len(plan.to_fetch) for plan in run.plans.values())
                    projects = run.result().projects
                    written = sum(p.bytes_ndjson for p in projects)
                    retries = sum(p.retries for p in projects)
                    rate = written / 1e6 / max(time.monotonic() - started, 1e-3)
                    detail = f"{self.events:,} events  {rate:,.0f} MB/s  {retries} retries" + (
                        f"  [red]{self.failed} failed" if self.failed else ""
                    )
                    bar.update(task, total=total or None, completed=self.done, detail=detail)
                    await anyio.sleep(0.25)
            finally:
                reattach_stderr()


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


def _print_notes(p: ProjectResult, out: Any) -> None:
    """What the plain summary says of a plan beyond its counts: gaps filled, nothing yet."""
    plan = p.plan
    if plan.gaps:
        print(
            f"  {p.name}: --since-last filled {len(plan.gaps)} hours earlier runs left behind, "
            f"from {iso_hour(plan.gaps[0])}",
            file=out,
        )
    if plan.not_available and not plan.to_fetch and not plan.done and plan.newest is not None:
        print(
            f"  {p.name}: nothing to extract yet: the newest exportable hour is "
            f"{iso_hour(plan.newest)} (an hour becomes exportable availability_lag_hours "
            "after it ends)",
            file=out,
        )


def _print_summary(result: ExtractResult, out: Any, signum: int | None) -> None:
    print(f"async-amp run {result.run_id} -> {result.sink}", file=out)
    header = (
        f"  {'project':<14}{'hours':>6}{'complete':>9}{'empty':>6}{'failed':>7}{'skipped':>8}"
        f"{'not yet':>8}{'events':>12}{'NDJSON MB':>10}{'seconds':>9}{'MB/s':>8}"
    )
    print(header, file=out)
    for p in result.projects:
        print(
            f"  {p.name:<14}{len(p.plan.hours):>6}{p.complete:>9}{p.empty:>6}{p.failed:>7}"
            f"{p.skipped:>8}{p.not_available:>8}{p.events:>12,}"
            f"{p.bytes_ndjson / 1e6:>10,.1f}{p.seconds:>9.1f}{p.mb_per_s:>8}",
            file=out,
        )
    projects = result.projects
    print(
        f"  requests {sum(p.requests for p in projects)}, retries "
        f"{sum(p.retries for p in projects)}, throttled {sum(p.throttled for p in projects)}, "
        f"downloaded {sum(p.bytes_downloaded for p in projects) / 1e6:,.1f} MB",
        file=out,
    )
    print(
        f"  received {sum(p.bytes_received for p in projects) / 1e6:,.1f} MB of archives from "
        f"Amplitude, {sum(p.bytes_ndjson for p in projects) / 1e6:,.1f} MB of NDJSON, stored "
        f"{sum(p.bytes_written for p in projects) / 1e6:,.1f} MB",
        file=out,
    )
    for p in projects:
        if p.rechecked:
            changed = [iso_hour(h) for h in p.changed_hours]
            shown = ", ".join(changed[:10]) + (" ..." if len(changed) > 10 else "")
            print(
                f"  rechecked {p.rechecked} hours, {len(changed)} changed"
                + (f": {shown}" if changed else ""),
                file=out,
            )
    for p in projects:
        merged = p.merged_ids
        if merged is not None and (merged.hours or merged.failed):
            rewritten = f", {len(merged.changed)} rewritten" if merged.changed else ""
            unread = f", FAILED {len(merged.failed)}" if merged.failed else ""
            print(
                f"  merged IDs: {merged.hours} hours, {merged.rows:,} rows{rewritten}{unread}",
                file=out,
            )
    for p in projects:
        _print_notes(p, out)
        for hour in p.quarantined_hours:
            print(
                f"  QUARANTINED {p.name} {iso_hour(hour.hour)}: {hour.quarantined} line(s) that "
                "cannot become rows kept in the hour's _quarantine.ndjson",
                file=out,
            )
    for failed in result.failed_hours:
        print(f"  FAILED {failed.project} {iso_hour(failed.hour)}: {failed.error}", file=out)
    for p in projects:
        if p.stopped:
            print(f"  STOPPED {p.name}: {p.stopped}", file=out)
    if signum is not None:
        unfinished = sum(p.unfinished for p in projects)
        print(
            f"  interrupted by {signal.Signals(signum).name}: {unfinished} hours "
            "abandoned without a manifest; rerun the same command to resume",
            file=out,
        )
    elif any(p.plan.other_shards for p in projects):
        print("  (hours of other shards were left to their workers)", file=out)
