"""``async-amp report``: one self-contained HTML page about what was extracted.

A thin shell over ``async_amp.report_sync``: parse the range, load the config (``[report]``),
show a progress bar on a terminal while the hours are scanned, print where the page went.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ...config import SINKS
from ...errors import StorageError
from ..options import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    add_config_option,
    add_range_options,
    environment,
    load,
    now,
    parse_range,
)
from ..output import progress_bar

if TYPE_CHECKING:
    from ...reports.build import ScanProgress
    from ...reports.model import Report

__all__ = ["ORDER", "register"]

ORDER = 50

EPILOG = """\
examples:
  async-amp report --start 2026-11-01 --end 2026-11-30
  async-amp report --start -30d --end -0d --html site/amplitude.html
  async-amp report --start 2026-01-01 --end 2026-12-31 --sink azure --project website
  async-amp report --start -7d --end -0d --output /mnt/lake --html /var/www/report.html

The page has no script and fetches nothing: open it from disk, mail it, or publish it. Event
names and property keys of the audience and blog panels come from [report] in config.toml
(defaults fit Amplitude's browser SDK); the heatmap's time zone is [report] time_zone.

exit codes: 0 the report was written; 1 the storage could not be read; 2 usage or config
error.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report`` to the CLI's subcommands."""
    cmd = commands.add_parser(
        "report",
        help="write one self-contained HTML page: extraction health, visitors, blog posts "
        "(e.g. async-amp report --start 2026-11-01 --end 2026-11-30)",
        description="Read every stored hour from --start to --end (both inclusive, UTC) and "
        "write one HTML file: a calendar of every hour's state, events per hour with "
        "suspicious drops, freshness, schema drift, duplicates; visitors new and returning, "
        "by country, source and device, identified users; the top blog posts; when people "
        "visit. Memory stays that of one day, whatever the range.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_range_options(cmd)
    cmd.add_argument(
        "--html",
        dest="report_file",
        type=Path,
        metavar="FILE",
        help="the HTML file to write (default report.html; e.g. --html site/report.html)",
    )
    add_config_option(cmd)
    cmd.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="the local folder extractions wrote to, as in every command (default [output] "
        "dir; e.g. --output data)",
    )
    cmd.add_argument("--data", type=Path, help=argparse.SUPPRESS)  # older --output: _folders
    cmd.add_argument("--sink", choices=SINKS, help="where to read from (e.g. --sink azure)")
    cmd.add_argument(
        "--project",
        metavar="NAME",
        help="the project to report on (needed when the config has several; e.g. --project "
        "website)",
    )
    cmd.add_argument(
        "--from",
        dest="basis",
        choices=("auto", "models", "events"),
        default="auto",
        help="read the model tables (fast: a year in seconds; async-amp model builds them) or "
        "every event; auto (default): the model tables when every day of the range is built "
        "(e.g. --from events)",
    )
    cmd.set_defaults(handler=_cmd_report)


def _cmd_report(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from ...reports.api import report_sync  # noqa: PLC0415 - DuckDB loads only for this command

    environ = environment()
    moment = now(environ)
    first, last = parse_range(args, moment)
    assert first is not None and last is not None  # both are required options here
    data, page = _folders(args)
    config = load(argparse.Namespace(**{**vars(args), "output": data}), environ)
    bar = _Bar() if sys.stderr.isatty() else None
    try:
        result = report_sync(
            config,
            start=first,
            end=last,
            project=args.project,
            output=page,
            now=moment,
            on_progress=bar.update if bar else None,
            basis=args.basis,
        )
    except StorageError as exc:
        print(f"async-amp: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    finally:
        if bar is not None:
            bar.close()
    built = result.report
    print(
        f"report: {result.path.resolve()} ({result.bytes / 1e6:.1f} MB; "
        f"{len(built.hours):,} hours, {_read(built)})",
        file=out or sys.stdout,
    )
    return EXIT_OK


def _read(built: Report) -> str:
    if built.basis == "models":
        return f"from the model tables, {len(built.model_days):,} days"
    return f"{built.rows_read:,} events read"


def _folders(args: argparse.Namespace) -> tuple[Path | None, Path]:
    """The data folder and the page. Older spellings work, with a warning: ``--output`` named
    the page (taken as ``--html`` when it ends in .html) and ``--data`` the folder."""
    data, page = args.output, args.report_file
    if data is not None and data.suffix.lower() in (".html", ".htm") and page is None:
        _deprecated(
            f"report --output {data} is now --html {data}: --output names the data "
            "folder, as in every command"
        )
        data, page = None, data
    if args.data is not None:
        _deprecated(f"report --data {args.data} is now --output {args.data}, as in every command")
        data = data or args.data
    return data, page or Path("report.html")


def _deprecated(line: str) -> None:
    print(f"async-amp: warning: {line}", file=sys.stderr)


class _Bar:
    """A progress bar on stderr (rich) while hours are scanned."""

    def __init__(self) -> None:
        self._progress = progress_bar("scanning hours")
        self._progress.start()
        self._task: Any = None

    def update(self, progress: ScanProgress) -> None:
        if self._task is None:
            self._task = self._progress.add_task("report", total=progress.hours_total, detail="")
        detail = f"{progress.rows:,} events  at {progress.hour:%Y-%m-%d %H}:00"
        self._progress.update(self._task, completed=progress.hours_done, detail=detail)

    def close(self) -> None:
        self._progress.stop()
