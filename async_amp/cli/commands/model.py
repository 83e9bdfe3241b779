"""``async-amp model``: build the model tables (sessions, users, pages, days) of local days.

A thin shell over ``async_amp.model_sync``: parse the days, load the config, print one line
per day (built or unchanged, final or provisional) and where the tables are.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, TYPE_CHECKING

from ...errors import StorageError
from ..options import EXIT_INCOMPLETE, EXIT_OK, add_reading_options, environment, load, now

if TYPE_CHECKING:
    from ...models import DayBuilt, ModelRun

__all__ = ["ORDER", "print_runs", "register"]

ORDER = 55

EPILOG = """\
examples:
  async-amp model --start 2026-11-01 --end 2026-11-30
  async-amp model --start -7d --end -0d --project website
  async-amp model --start 2026-01-01 --end 2026-12-31 --output /mnt/lake

Days are local days of [models] time_zone (set it to the project's time zone in Amplitude).
Only days whose events changed since they were built are built again; each day's tables are
replaced at once. With [models] enabled = true, extract builds the days it touched itself.
Tables: _models/<project>/ beside the events, in the same store (docs/models.md).

exit codes: 0 the tables are up to date; 1 the stored events could not be read; 2 usage or
config error.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``model`` to the CLI's subcommands."""
    cmd = commands.add_parser(
        "model",
        help="build the model tables (sessions, users, pages_daily, daily, daily_events) of "
        "local days (e.g. async-amp model --start 2026-11-01 --end 2026-11-30)",
        description="Build the model tables of the local days --start to --end (both "
        "inclusive, in [models] time_zone) from the extracted events, beside them: "
        "sessions, users, pages_daily, daily and daily_events. Days whose events did not "
        "change are left as they are.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "--start", required=True, help="first local day: YYYY-MM-DD or -7d (e.g. 2026-11-01)"
    )
    cmd.add_argument("--end", required=True, help="last local day, inclusive (e.g. 2026-11-30)")
    add_reading_options(cmd, "only this project (default: all; e.g. --project website)")
    cmd.set_defaults(handler=_cmd_model)


def _cmd_model(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    from ...models.api import model_sync  # noqa: PLC0415 - DuckDB loads only for this command

    environ = environment()
    moment = now(environ)
    config = load(args, environ)
    stream = out or sys.stdout
    try:
        runs = model_sync(
            config,
            start=args.start,
            end=args.end,
            project=args.project,
            now=moment,
            on_day=lambda d: print(_day_line(d), file=stream),
        )
    except StorageError as exc:
        print(f"async-amp: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    print_runs(runs, stream)
    return EXIT_OK


def _day_line(day: DayBuilt) -> str:
    what = f"built ({day.events:,} events)" if day.built else "unchanged"
    return f"{day.day.isoformat()}  {day.status:<11}  {what}"


def print_runs(runs: list[ModelRun], out: IO[str]) -> None:
    """One line per project: days built, hours read, where the tables are."""
    for run in runs:
        print(
            f"models {run.project}: {len(run.built)} of {len(run.days)} days built, "
            f"{len(run.hours_read)} hours read -> {run.where}",
            file=out,
        )
