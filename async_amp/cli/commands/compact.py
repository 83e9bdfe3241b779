"""``async-amp compact``: merge the files of each hour of a Delta table's days, then vacuum."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ...errors import StorageError
from ..options import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    add_project_option,
    add_range_options,
    add_storage_options,
    environment,
    load,
    now,
    parse_range,
)

if TYPE_CHECKING:
    from ...output.delta.compact import CompactResult, RelayoutResult

__all__ = ["ORDER", "register"]

ORDER = 45

EPILOG = """\
examples:
  async-amp compact --start -1d --end -1d                 # nightly: yesterday's files
  async-amp compact --start 2026-11-01 --end 2026-11-30 --retention-hours 24

Only for [output] format = "delta". Each day becomes one commit that rewrites the files of
each of its hours into one (no row changes: readers of any snapshot see the same rows), then
data files older than --retention-hours that the latest snapshot does not use are deleted.
Safe while extractions run: a conflict with their commits is retried.

A table is partitioned by date: compact rewrites each day into as few files as its size
allows (one for most days), sorted by event_type then event_time, with large row groups.
A table written by async-amp before it used day partitions (date and hour) is compacted
hour by hour; --relayout converts it to day partitions first, in one commit:

  async-amp compact --relayout --start 2026-01-01 --end 2026-11-30

With --json, each conversion (and each one a crash cut short, finished) is in "relayout":
{"project", "days" converted, "version", "replayed": hours committed meanwhile, written again}.

exit codes: 0 every day compacted; 1 the table could not be read or written; 2 usage or config
error.
"""


# The parser is built for every command: deltalake and pyarrow (~70 MB of RSS) load only when
# compact runs, not in every extract. delta.maintain.DEFAULT_RETENTION_HOURS is the same week
# (tests/test_cli.py checks that they agree).
DEFAULT_RETENTION_HOURS = 168


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "compact",
        help="rewrite each day of a Delta table into few sorted files and vacuum "
        "(e.g. async-amp compact --start -1d --end -1d)",
        description="For each UTC day from --start to --end, rewrite the files of each day "
        "of each project's Delta table into as few as its size allows (days of one file are "
        "left alone), then delete data files that no recent snapshot references. No row "
        "changes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_range_options(cmd)
    add_storage_options(cmd, sink_help="where the tables are (e.g. --sink azure)")
    add_project_option(cmd, "only this project (default: every project); e.g. --project website")
    cmd.add_argument(
        "--retention-hours",
        type=int,
        default=DEFAULT_RETENTION_HOURS,
        metavar="N",
        help=f"delete unused files only once older than N hours (default "
        f"{DEFAULT_RETENTION_HOURS}, at least 1: readers of older snapshots and writes in "
        "flight still need theirs; e.g. --retention-hours 24)",
    )
    cmd.add_argument(
        "--relayout",
        action="store_true",
        help="first convert a table partitioned by date and hour to date partitions, in one "
        "commit (readers see the old table or the new one), then write again the hours other "
        "writers committed meanwhile; on a day-partitioned table it only finishes that if a "
        "crash cut it short, as every compact does "
        "(e.g. --relayout --start 2026-01-01 --end 2026-11-30)",
    )
    cmd.add_argument(
        "--json", action="store_true", help="print one JSON document (e.g. --json | jq .days)"
    )
    cmd.set_defaults(handler=_cmd_compact)


def _row(project: str, result: CompactResult) -> dict[str, Any]:
    return {
        "project": project,
        "day": result.day.isoformat(),
        "files_removed": result.files_removed,
        "files_added": result.files_added,
        "rows": result.rows,
        "vacuumed": result.vacuumed,
        "version": result.version,
    }


def _cmd_compact(args: argparse.Namespace, out: TextIO | None = None) -> int:
    environ = environment()
    first, last = parse_range(args, now(environ))
    config = load(args, environ)
    assert first is not None and last is not None
    projects = args.project or [p.name for p in config.project_list()]
    stdout = out or sys.stdout

    def show(project: str, result: CompactResult) -> None:
        if not args.json:
            print(
                f"{project} {result.day}: {result.files_removed} files -> {result.files_added}, "
                f"{result.rows:,} rows, {result.vacuumed} files vacuumed "
                f"(table version {result.version})",
                file=stdout,
            )

    def converted(project: str, result: RelayoutResult) -> None:
        relayouts.append(
            {
                "project": project,
                "days": result.days,
                "version": result.version,
                "replayed": result.replayed,
            }
        )
        if not args.json:
            what = (
                f"{result.files_removed} files -> {result.files_added} in {result.days} day "
                f"partitions, {result.rows:,} rows (table version {result.version})"
                if result.days
                else "already partitioned by date"
            )
            if result.replayed:
                what += f"; {result.replayed} hours committed meanwhile written again"
            print(f"{project}: {what}", file=stdout)

    relayouts: list[dict[str, Any]] = []
    from ...output.maintain import compact  # noqa: PLC0415 - see DEFAULT_RETENTION_HOURS
    from ...output.open import opened_config  # noqa: PLC0415

    # the format the tables' roots hold, not the config's default (recorded if not yet)
    config = anyio.run(partial(opened_config, config, projects, environ=environ, record=True))

    try:
        done = compact(
            config,
            first=first,
            last=last,
            projects=projects,
            environ=environ,
            retention_hours=args.retention_hours,
            on_day=show,
            relayout_first=args.relayout,
            on_relayout=converted,
        )
    except StorageError as exc:
        print(f"async-amp: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if args.json:
        document: dict[str, Any] = {"days": [_row(p, r) for p, r in done]}
        if args.relayout or relayouts:
            document["relayout"] = relayouts
        print(json.dumps(document, indent=2), file=stdout)
    return EXIT_OK
