"""``async-amp simulate-export``: lay a simulated Amplitude cloud export out in the configured
``[source]`` (a folder, an S3 or GCS bucket, an Azure container), as Amplitude's recurring
export writes it: the hours' partitions and the merged-IDs feed."""

from __future__ import annotations

import argparse
import sys

import anyio

from ..options import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    add_config_option,
    add_dataset_options,
    add_range_options,
    environment,
    load,
    now,
)
from ..options import parse_range as parse_hours

__all__ = ["ORDER", "register"]

ORDER = 21

EPILOG = """\
examples:
  async-amp simulate-export --start 2026-11-01 --end 2026-11-02 --late 1
  ASYNC_AMP_SOURCE_STORE=s3 ASYNC_AMP_SOURCE_BUCKET=my-test-export \\
    async-amp simulate-export --start 2026-11-01 --end 2026-11-01
  async-amp simulate-export --start 2026-11-01T05 --end 2026-11-01T05 --seed 9   # a backfill

It writes where [source] says (store, dir or bucket, prefix, merged_ids_prefix), with that
store's settings and credentials, which must allow writing. Files of an hour written again
replace the old ones: another --seed is a backfill Amplitude rewrote.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "simulate-export",
        help="write a simulated Amplitude cloud export to [source] "
        "(e.g. async-amp simulate-export --start 2026-11-01 --end 2026-11-02)",
        description="Lay a simulated project out as Amplitude's recurring cloud export "
        "(<projectID>_<date>_<H>#<partition>.json.gz per partition, and the merged-IDs feed "
        "-<OrgID>_<date>_<H>.json.gz) in the folder, bucket or container of [source], for "
        'demos and tests of kind = "cloud_export".',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_range_options(cmd)
    add_config_option(cmd)
    cmd.add_argument(
        "--late",
        type=int,
        default=0,
        metavar="N",
        help="leave the last N hours out: not delivered yet (e.g. --late 1)",
    )
    cmd.add_argument(
        "--no-merged-ids",
        action="store_true",
        help="write no merged-IDs feed (e.g. --no-merged-ids)",
    )
    add_dataset_options(cmd, events_per_hour=200)
    cmd.set_defaults(handler=_cmd_simulate_export, output=None, sink=None)


def _cmd_simulate_export(args: argparse.Namespace) -> int:
    from ...config import ProjectConfig  # noqa: PLC0415
    from ...errors import ConfigError, StorageError, first_user_error  # noqa: PLC0415
    from ...hours import hour_range, iso_hour  # noqa: PLC0415
    from ...simulator.cloud_export import export_files, merged_id_files  # noqa: PLC0415
    from ...simulator.dataset import Dataset  # noqa: PLC0415
    from ...source.cloud_stores import make_cloud_source  # noqa: PLC0415 - the stores load when used

    environ = environment()
    first, last = parse_hours(args, now(environ), optional=False)
    assert first is not None and last is not None
    config = load(args, environ)
    if args.late < 0:
        msg = f"--late must be 0 or more, not {args.late}"
        raise ConfigError(msg)
    hours = list(hour_range(first, last))
    delivered = hours[: len(hours) - args.late] if args.late else hours
    dataset = Dataset(
        events_per_hour=args.events_per_hour, pages_per_hour=args.pages, seed=args.seed
    )
    src = config.source
    files = export_files(dataset, delivered, prefix=src.prefix)
    merged = (
        []
        if args.no_merged_ids
        else merged_id_files(
            dataset,
            delivered,
            prefix=src.prefix if src.merged_ids_prefix is None else src.merged_ids_prefix,
        )
    )
    project = ProjectConfig(name="simulated")
    source = make_cloud_source(config, project, run_id="simulate-export", environ=environ)

    async def write() -> None:
        async with source, anyio.create_task_group() as tg:
            limiter = anyio.CapacityLimiter(8)

            async def put(name: str, data: bytes) -> None:
                async with limiter:
                    await source.store.put(name, data)

            for name, data in files + merged:
                tg.start_soon(put, name, data)

    try:
        anyio.run(write)
    except BaseExceptionGroup as group:
        cause: BaseException = first_user_error(group)
        stored = group.subgroup(lambda e: isinstance(e, StorageError))
        if cause is group and stored is not None:
            cause = stored.exceptions[0]
        if isinstance(cause, StorageError):
            print(f"async-amp: error: {cause}", file=sys.stderr)
            return EXIT_INCOMPLETE
        raise cause from None
    left = f"; not delivered yet: {iso_hour(hours[-args.late])}.." if args.late else ""
    print(
        f"wrote {len(files)} event files of {len(delivered)} hours and {len(merged)} "
        f"merged-IDs files to {source.describe()}{left}",
        flush=True,
    )
    return EXIT_OK
