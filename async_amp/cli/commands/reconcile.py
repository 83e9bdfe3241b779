"""``async-amp reconcile``: the model tables' daily figures beside Amplitude's charts.

A thin shell over ``async_amp.reconcile_sync``: one line per day, event type and metric (the
lake's figure, Amplitude's, the difference and the reason when one is known), exit 1 when a
final day differs by more than ``[models] reconcile_tolerance``.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, TYPE_CHECKING

from ...errors import StorageError
from ..options import EXIT_INCOMPLETE, add_reading_options, environment, load, now

if TYPE_CHECKING:
    from ...models.reconcile import Reconciliation

__all__ = ["ORDER", "print_reconciliation", "register"]

ORDER = 56

EPILOG = """\
examples:
  async-amp reconcile --start 2026-11-01 --end 2026-11-30
  async-amp reconcile --start -14d --end -1d --event-type "Sign Up" --event-type "Page Viewed"

Amplitude's figures come from its Dashboard REST API (event segmentation, totals and uniques
per day in the project's time zone), with the project's keys, two requests at a time; the
lake's from the model tables (run async-amp model first). Set [models] time_zone to the
project's time zone in Amplitude, or every day will differ.

exit codes: 0 every final day agrees (within [models] reconcile_tolerance); 1 a final day
differs, or Amplitude or the storage could not be read; 2 usage, config or credential error.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``reconcile`` to the CLI's subcommands."""
    cmd = commands.add_parser(
        "reconcile",
        help="compare the model tables' daily events and users with Amplitude's charts "
        "(e.g. async-amp reconcile --start 2026-11-01 --end 2026-11-30)",
        description="Ask Amplitude's event segmentation for totals and uniques per local day "
        "(--start to --end, both inclusive) and print them beside the lake's daily and "
        "daily_events figures, with the difference and its reason where one is known "
        "(provisional day, hours missing, outside the extracted range).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "--start", required=True, help="first local day: YYYY-MM-DD or -7d (e.g. 2026-11-01)"
    )
    cmd.add_argument("--end", required=True, help="last local day, inclusive (e.g. 2026-11-30)")
    cmd.add_argument(
        "--event-type",
        action="append",
        default=[],
        metavar="NAME",
        help="also compare this event type (repeatable; e.g. --event-type 'Sign Up')",
    )
    add_reading_options(
        cmd, "the project to compare (needed when the config has several; e.g. --project web)"
    )
    cmd.set_defaults(handler=_cmd_reconcile)


def _cmd_reconcile(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    from ...models.api import reconcile_sync  # noqa: PLC0415 - DuckDB: only for this command

    environ = environment()
    moment = now(environ)
    config = load(args, environ)
    try:
        result = reconcile_sync(
            config,
            start=args.start,
            end=args.end,
            project=args.project,
            event_types=tuple(args.event_type),
            now=moment,
        )
    except StorageError as exc:
        print(f"async-amp: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    print_reconciliation(result, out or sys.stdout)
    return result.exit_code


def print_reconciliation(result: Reconciliation, out: IO[str]) -> None:
    """The table, then one line saying whether the final days agree."""
    print(
        f"{'day':<10}  {'event type':<20}  {'metric':<6}  {'lake':>9}  {'amplitude':>9}  "
        f"{'diff':>7}  {'status':<11}  reason",
        file=out,
    )
    for row in result.rows:
        lake = "-" if row.lake is None else f"{row.lake:,}"
        diff = "-" if row.difference is None else f"{row.difference:+,}"
        flag = "  DIFFERS" if row.off_by(result.tolerance) else ""
        event = "(all)" if row.event_type == "_all" else row.event_type
        print(
            f"{row.day.isoformat():<10}  {event[:20]:<20}  {row.metric:<6}  {lake:>9}  "
            f"{row.amplitude:>9,}  {diff:>7}  {row.status:<11}  {row.reason}{flag}",
            file=out,
        )
    failures = result.failures
    verdict = (
        f"{len(failures)} final figures differ beyond {result.tolerance:.2%}"
        if failures
        else "every final day agrees"
    )
    print(f"reconcile {result.project} {result.first} to {result.last}: {verdict}", file=out)
