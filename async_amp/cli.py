"""The command line: a thin shell over the library. User errors are one line and exit 2."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from dotenv import dotenv_values

from . import __version__
from .config import Config, load_config
from .errors import ConfigError, UserError
from .hours import parse_bound
from .logs import shutdown_logging
from .runner import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_SIGNAL,
    EXIT_USAGE,
    RunOptions,
    run_extract,
)
from .tuning import tune_malloc

__all__ = ["EXIT_INCOMPLETE", "EXIT_OK", "EXIT_USAGE", "main"]


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


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        msg = f"{text!r} is not K/N (e.g. 2/8)"
        raise argparse.ArgumentTypeError(msg) from None
    if not 1 <= k <= n:
        msg = f"{text!r}: K must be between 1 and N (e.g. 1/4 .. 4/4)"
        raise argparse.ArgumentTypeError(msg)
    return k, n


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
    _add_common(ext, range_required=False)
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
        "--since-last",
        action="store_true",
        help="extract from the hour after the newest complete one (or [extract] start) up to "
        "now minus the lag, for schedulers (e.g. --since-last in an hourly cron job)",
    )
    ext.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="take the K-th of N contiguous slices of the range's hours, so N workers share "
        "a backfill (e.g. --shard 2/8 in the second of eight workers)",
    )
    ext.add_argument(
        "--project",
        action="append",
        metavar="NAME",
        help="only this [[projects]] entry; repeat for several (e.g. --project website)",
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
    registers.append(__import__("async_amp.commands_ops", fromlist=["register"]).register)
    return registers


def add_range_options(cmd: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--start`` / ``--end``, shared by every command that takes a range of hours."""
    cmd.add_argument(
        "--start",
        required=required,
        help="first hour: YYYY-MM-DD (whole UTC day), YYYY-MM-DDTHH, YYYYMMDDTHH or -7d "
        "(e.g. --start 2026-11-01)",
    )
    cmd.add_argument(
        "--end",
        required=required,
        help="last hour, inclusive, same forms (e.g. --end 2026-11-02 covers up to T23)",
    )


def add_storage_options(
    cmd: argparse.ArgumentParser, *, sink_help: str = "where to write (e.g. --sink azure)"
) -> None:
    """``--config``, ``--output`` and ``--sink``: which config, and which storage."""
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
    cmd.add_argument("--sink", choices=("local", "azure"), help=sink_help)


def parse_range(args: argparse.Namespace, now: datetime) -> tuple[datetime | None, datetime | None]:
    """``--start`` / ``--end`` as hours (``None`` when not given), checked for order."""
    first = parse_bound(args.start, is_end=False, now=now) if args.start else None
    last = parse_bound(args.end, is_end=True, now=now) if args.end else None
    if first is not None and last is not None and last < first:
        msg = f"--end {args.end} is before --start {args.start}: swap them"
        raise ConfigError(msg)
    return first, last


def _add_common(
    cmd: argparse.ArgumentParser, *, with_range: bool = True, range_required: bool = True
) -> None:
    if with_range:
        add_range_options(cmd, required=range_required)
    add_storage_options(cmd)
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


def _join_relative_bounds(argv: Sequence[str]) -> list[str]:
    """``--start -7d`` would read as a flag to argparse: hand it over as ``--start=-7d``."""
    joined: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token in ("--start", "--end"):
            value = next(tokens, None)
            if value is not None and re.fullmatch(r"-\d+[hd]", value):
                joined.append(f"{token}={value}")
                continue
            joined.append(token)
            if value is not None:
                joined.append(value)
            continue
        joined.append(token)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    if os.environ.get("ASYNC_AMP_MALLOPT", "1") != "0":
        tune_malloc()
    parser = build_parser()
    args = parser.parse_args(_join_relative_bounds(sys.argv[1:] if argv is None else argv))
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
    first, last = parse_range(args, now)
    if not args.since_last and (first is None or last is None):
        msg = "--start and --end are required (or --since-last for incremental runs)"
        raise ConfigError(msg)
    config = _load(
        args,
        environ,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        expected_pages_per_hour=args.expected_pages_per_hour,
        window_hours=args.window_hours,
    )
    options = RunOptions(
        first=first,
        last=last,
        now=now,
        force=args.force,
        dry_run=args.dry_run,
        since_last=args.since_last,
        shard=args.shard,
        projects=tuple(args.project or ()),
        log_format=args.log_format,
        log_file=args.log_file,
        quiet=args.quiet,
        summary_json=args.summary_json,
    )
    return run_extract(config, options, environ=environ)


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
