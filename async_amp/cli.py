"""The command line: a thin shell over the library. User errors are one line and exit 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog
from dotenv import dotenv_values

from . import __version__
from .client import AiohttpExportSource
from .config import Config, load_config, load_credentials
from .errors import ConfigError, UserError, first_user_error
from .hours import iso_hour, parse_bound
from .logs import configure_logging, shutdown_logging
from .pipeline import Extractor, Plan, RunSummary
from .sinks import make_sink

__all__ = ["main"]

log = structlog.get_logger("async_amp")

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

EXTRACT_EXAMPLES = """\
examples:
  async-amp extract --start 2026-11-01 --end 2026-11-07
  async-amp extract --start 2026-11-01T05 --end 2026-11-01T08 --concurrency 8 --force
  async-amp extract --start 20261101T00 --end 20261130T23 --sink azure --dry-run
  async-amp extract --start -7d --end -1d --log-format json --log-file run.jsonl

exit codes: 0 every available hour is complete or empty; 1 some hours are still incomplete
after all attempts (the summary names them); 2 usage, config or credential error;
130/143 interrupted by SIGINT/SIGTERM (in-flight hours are abandoned without a manifest).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, no usage dump
        self.exit(EXIT_USAGE, f"async-amp: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"must be at least 1, not {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="async-amp",
        description="Fast, lossless, resumable Amplitude Export API extraction "
        "to local NDJSON folders or Azure Blob Storage.",
        epilog="example: async-amp extract --start 2026-11-01 --end 2026-11-02",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"async-amp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ext = commands.add_parser(
        "extract",
        help="export a range of hours (e.g. async-amp extract --start 2026-11-01 --end 2026-11-02)",
        description="Export every hour from --start to --end (both inclusive, UTC) with bounded "
        "concurrency, check each hour for completeness, and commit it only when whole.",
        epilog=EXTRACT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(ext)
    ext.add_argument(
        "--concurrency",
        type=_positive_int,
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
        "--max-attempts",
        type=_positive_int,
        metavar="N",
        help="attempts per hour before it is reported failed (e.g. --max-attempts 8)",
    )
    ext.add_argument(
        "--expected-pages",
        type=int,
        metavar="N",
        dest="expected_pages_per_hour",
        help="partitions every hour should have; fewer is a short hour (e.g. --expected-pages 3)",
    )

    sim = commands.add_parser(
        "simulate",
        help="serve a simulated Export API on loopback (e.g. async-amp simulate --port 8080)",
        description="Serve a realistic simulated Amplitude Export API on loopback, for demos, "
        "tests and benchmarks. Keys: AMP_API_KEY / AMP_SECRET_KEY (default demo-key/demo-secret).",
        epilog="example: async-amp simulate --port 8080 --events-per-hour 2000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (e.g. --host 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8080, help="port, 0 for any (e.g. --port 8080)")
    sim.add_argument(
        "--events-per-hour",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="average events per hour (e.g. --events-per-hour 2000)",
    )
    sim.add_argument(
        "--pages",
        type=_positive_int,
        default=3,
        metavar="N",
        help="partitions per hour (e.g. --pages 3)",
    )
    sim.add_argument("--seed", type=int, default=0, help="data seed (e.g. --seed 7)")

    demo = commands.add_parser(
        "demo",
        help="extract two simulated days end to end (e.g. async-amp demo)",
        description="Start the simulated Export API on loopback and extract two days from it "
        "into --output, exactly as 'extract' would from Amplitude. No account needed.",
        epilog="example: async-amp demo --output data --concurrency 8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(demo, with_range=False)
    demo.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="requests in flight (e.g. --concurrency 8)",
    )
    ext.set_defaults(handler=_cmd_extract)
    sim.set_defaults(handler=_cmd_simulate)
    demo.set_defaults(handler=_cmd_demo)
    for register in _extra_commands():
        register(commands)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Subcommands that live in their own modules; each adds its parser and handler."""
    registers: list[Callable[[Any], None]] = []
    return registers


def _add_common(cmd: argparse.ArgumentParser, *, with_range: bool = True) -> None:
    if with_range:
        cmd.add_argument(
            "--start",
            required=True,
            help="first hour: YYYY-MM-DD (whole UTC day), YYYY-MM-DDTHH, YYYYMMDDTHH or -7d "
            "(e.g. --start 2026-11-01)",
        )
        cmd.add_argument(
            "--end",
            required=True,
            help="last hour, inclusive, same forms (e.g. --end 2026-11-02 covers up to T23)",
        )
    cmd.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="config file (default ./config.toml if present; e.g. --config prod.toml)",
    )
    cmd.add_argument(
        "--output", type=Path, metavar="DIR", help="local output folder (e.g. --output data)"
    )
    cmd.add_argument(
        "--sink", choices=("local", "azure"), help="where to write (e.g. --sink azure)"
    )
    cmd.add_argument(
        "--log-format",
        choices=("json", "console"),
        help="stderr log format (default: console on a TTY, JSON otherwise; e.g. json)",
    )
    cmd.add_argument(
        "--log-file",
        type=Path,
        metavar="PATH",
        help="JSON log file (default logs/<run id>.jsonl; e.g. --log-file run.jsonl)",
    )
    cmd.add_argument(
        "--quiet", action="store_true", help="only warnings and errors on stderr (e.g. --quiet)"
    )


def _environment() -> dict[str, str]:
    """The process environment over ``./.env`` (the environment wins)."""
    merged = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    merged.update(os.environ)
    return merged


def _now(environ: Mapping[str, str]) -> datetime:
    override = environ.get("ASYNC_AMP_NOW")
    if override:
        try:
            return datetime.fromisoformat(override.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            msg = f"ASYNC_AMP_NOW={override!r} is not an ISO date-time"
            raise ConfigError(msg) from None
    return datetime.now(UTC)


def _load(args: argparse.Namespace, environ: Mapping[str, str], **extract: Any) -> Config:
    explicit = args.config is not None
    path = args.config if explicit else Path("config.toml")
    overrides = {
        "extract": extract,
        "output": {"dir": args.output, "sink": args.sink},
    }
    return load_config(path, overrides=overrides, environ=environ, required=explicit)


def _new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UserError as exc:
        print(f"async-amp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("async-amp: interrupted", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGINT]
    finally:
        shutdown_logging()


def _cmd_extract(args: argparse.Namespace) -> int:
    environ = _environment()
    now = _now(environ)
    first = parse_bound(args.start, is_end=False, now=now)
    last = parse_bound(args.end, is_end=True, now=now)
    if last < first:
        msg = f"--end {args.end} is before --start {args.start}: swap them"
        raise ConfigError(msg)
    config = _load(
        args,
        environ,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        expected_pages_per_hour=args.expected_pages_per_hour,
        window_hours=args.window_hours,
    )
    credentials = None if args.dry_run else load_credentials(environ)
    return run_extract(
        config,
        first=first,
        last=last,
        now=now,
        environ=environ,
        credentials_secrets=credentials.secrets() if credentials else (),
        api_key=credentials.api_key if credentials else "",
        secret_key=credentials.secret_key if credentials else "",
        force=args.force,
        dry_run=args.dry_run,
        log_format=args.log_format,
        log_file=args.log_file,
        quiet=args.quiet,
    )


def run_extract(
    config: Config,
    *,
    first: datetime,
    last: datetime,
    now: datetime,
    environ: Mapping[str, str],
    api_key: str,
    secret_key: str,
    credentials_secrets: Sequence[str] = (),
    force: bool = False,
    dry_run: bool = False,
    log_format: str | None = None,
    log_file: Path | None = None,
    quiet: bool = False,
    out: Any = None,
) -> int:
    """Configure logging, run one extraction, print the summary; returns the exit code."""
    stdout = out or sys.stdout
    run_id = _new_run_id()
    secrets = [*credentials_secrets]
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN"):
        if environ.get(name):
            secrets.append(environ[name])
    configure_logging(
        fmt=log_format,  # type: ignore[arg-type]
        log_file=log_file or config.output.log_dir / f"{run_id}.jsonl",
        run_id=run_id,
        secrets=secrets,
        quiet=quiet,
    )
    sink = make_sink(config, run_id=run_id, environ=environ)
    source = AiohttpExportSource(
        config.amplitude.url,
        api_key,
        secret_key,
        read_timeout_s=config.extract.read_timeout_s,
        connect_timeout_s=config.extract.connect_timeout_s,
        region_hint=f" (now {config.amplitude.region!r}, calling {config.amplitude.url})",
    )
    extractor = Extractor(config, source, sink, run_id=run_id, now=now)

    async def go() -> tuple[Plan, RunSummary | None, int | None]:
        caught: list[int] = []
        try:
            await sink.prepare()
            plan = await extractor.plan(first, last, force=force)
            if dry_run:
                return plan, None, None
            async with source:
                await _run_until_signalled(extractor, plan, caught)
            return plan, extractor.summary, caught[0] if caught else None
        finally:
            with anyio.CancelScope(shield=True):
                await sink.aclose()

    plan, summary, signum = anyio.run(go)
    if summary is None:
        _print_plan(plan, stdout)
        return EXIT_OK
    if signum is not None:
        summary.seconds = summary.seconds or 0.0
    _print_summary(summary, config, sink.describe(), stdout, interrupted=signum)
    log.info("run.summary", **summary.to_json(), interrupted=signum is not None)
    if signum is not None:
        return EXIT_SIGNAL.get(signal.Signals(signum), 1)
    return summary.exit_code


async def _run_until_signalled(extractor: Extractor, plan: Plan, caught: list[int]) -> None:
    try:
        async with anyio.create_task_group() as tg:

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        caught.append(int(signum))
                        log.warning("run.interrupted", signal=signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch_signals)
            await extractor.run(plan)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_user_error(group) from None


def _print_plan(plan: Plan, out: Any) -> None:
    days: dict[str, list[int]] = {}
    for hour in plan.hours:
        row = days.setdefault(f"{hour:%Y-%m-%d}", [0, 0, 0])
        row[0 if hour in plan.to_fetch else 1 if hour in plan.done else 2] += 1
    print(f"plan: {len(plan.hours)} hours", file=out)
    print(f"  {'day':<12}{'fetch':>7}{'skip':>7}{'not yet':>9}", file=out)
    for day, (fetch, skip, later) in days.items():
        print(f"  {day:<12}{fetch:>7}{skip:>7}{later:>9}", file=out)
    print(
        f"  total       {len(plan.to_fetch):>7}{len(plan.done):>7}{len(plan.not_available):>9}",
        file=out,
    )
    if plan.not_available:
        print(
            f"  not yet available: {iso_hour(plan.not_available[0])} .. "
            f"{iso_hour(plan.not_available[-1])} (availability_lag_hours)",
            file=out,
        )


def _print_summary(
    summary: RunSummary, config: Config, where: str, out: Any, *, interrupted: int | None
) -> None:
    s = summary.to_json()
    mb = summary.bytes_written / 1e6
    print(
        f"async-amp run {summary.run_id}: project {config.amplitude.project!r} -> {where}",
        file=out,
    )
    print(
        f"  hours: {s['hours_requested']} requested, {s['complete']} complete, "
        f"{s['empty']} empty, {s['failed']} failed, {s['skipped']} skipped (already done), "
        f"{s['not_available']} not yet available",
        file=out,
    )
    print(
        f"  data:  {summary.events:,} events, {mb:,.1f} MB written, "
        f"{summary.bytes_in / 1e6:,.1f} MB downloaded in {summary.seconds:.1f} s "
        f"({s['mb_per_s']} MB/s)",
        file=out,
    )
    print(
        f"  calls: {summary.requests} requests, {summary.retries} retries, "
        f"{summary.throttled} throttled",
        file=out,
    )
    for result in summary.failed:
        print(f"  FAILED {iso_hour(result.hour)}: {result.error}", file=out)
    unfinished = len(summary.plan.to_fetch) - len(summary.results)
    if interrupted is not None:
        print(
            f"  interrupted by {signal.Signals(interrupted).name}: {unfinished} hours abandoned "
            "without a manifest; rerun the same command to resume",
            file=out,
        )


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .testing.dataset import Dataset  # noqa: PLC0415
    from .testing.server import serve_forever  # noqa: PLC0415

    environ = _environment()
    dataset = Dataset(
        events_per_hour=args.events_per_hour, pages_per_hour=args.pages, seed=args.seed
    )
    anyio.run(
        lambda: serve_forever(
            dataset,
            api_key=environ.get("AMP_API_KEY", "demo-key"),
            secret_key=environ.get("AMP_SECRET_KEY", "demo-secret"),
            host=args.host,
            port=args.port,
        )
    )
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # noqa: PLC0415

    return run_demo(args, _environment())
