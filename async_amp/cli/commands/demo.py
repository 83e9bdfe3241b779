"""``async-amp demo``: the whole job end to end against the bundled simulator, no account needed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ...config import AmplitudeConfig, Config, Credentials
from ...hours import HOUR, hour_range
from ..options import add_log_options, add_storage_options, environment, load, now, positive_int

if TYPE_CHECKING:
    from ...simulator.site_changes import ChangingDataset

__all__ = [
    "DEMO_DAYS",
    "DEMO_KEY",
    "DEMO_SECRET",
    "ORDER",
    "demo_dataset",
    "quiet_hours",
    "register",
    "run_demo",
]

ORDER = 30

DEMO_DAYS = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
DEMO_KEY, DEMO_SECRET = "demo-api-key", "demo-secret-key"
# The local demo extracts two weeks and a day, so the report has earlier weeks to compare
# with; its site changes on the way (a new property, a new top-level field, a drop, repeats)
# and one hour is left out on purpose, so every panel has something to show.
REPORT_DAYS = 15
GAP = datetime(2026, 11, 12, 9, tzinfo=UTC)
DROP = datetime(2026, 11, 13, 15, tzinfo=UTC)
REPORT_FILE = "report.html"


def demo_dataset() -> ChangingDataset:
    """The local demo's simulated project (the report's screenshot in the README is of it)."""
    # the simulator loads only when the demo runs, not for every command's parser
    from ...simulator.site_changes import ChangingDataset  # noqa: PLC0415

    return ChangingDataset(
        events_per_hour=200,
        pages_per_hour=3,
        quiet_hours=frozenset(quiet_hours()),
        hour_sizes={DROP: 9},
        property_from=datetime(2026, 11, 9, tzinfo=UTC),
        field_from=datetime(2026, 11, 11, 14, tzinfo=UTC),
        duplicate_every=53,
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="extract two simulated weeks end to end and write their report (e.g. async-amp demo)",
        description="Start the simulated Export API on loopback and extract 15 days from it "
        "into --output, exactly as 'extract' would from Amplitude (leaving one hour out, to "
        "show a gap), then write the report of those days to <output>/report.html. No "
        "account needed.",
        epilog="example: async-amp demo --output data --concurrency 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_storage_options(demo)
    add_log_options(demo)
    demo.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="requests in flight (default 5, Amplitude's limit per project; e.g. --concurrency 4)",
    )
    demo.set_defaults(handler=lambda args: run_demo(args, environment()))


def run_demo(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Serve 15 simulated days on loopback, extract them with the real client (one hour left
    out), show them, and write their report."""
    from ...extraction.run import AMPLITUDE_CONCURRENCY  # noqa: PLC0415
    from ...simulator.background import BackgroundSimulator  # noqa: PLC0415
    from .extract import run_and_present  # noqa: PLC0415

    # 5, Amplitude's limit per project: a demo at 8 warned its user that 8 is too many
    config = load(args, {}, concurrency=args.concurrency or AMPLITUDE_CONCURRENCY)
    first = DEMO_DAYS[0]
    last = first + timedelta(days=REPORT_DAYS) - timedelta(hours=1)
    # the simulated clock: just after the last demo hour became available (ASYNC_AMP_NOW
    # pins an earlier one), so the report's freshness is judged against the demo's own time
    lag = config.extract.availability_lag_hours
    moment = min(now(environ), last + HOUR * (lag + 1) + timedelta(minutes=30))
    with BackgroundSimulator(demo_dataset(), api_key=DEMO_KEY, secret_key=DEMO_SECRET) as sim:
        config = replace(
            config,
            amplitude=AmplitudeConfig(project=config.amplitude.project, base_url=sim.base_url),
            projects=(),
            environ={k: v for k, v in environ.items() if not k.startswith("AZURE_")},
            credentials=Credentials(DEMO_KEY, DEMO_SECRET),
        )
        print(
            f"simulated Export API on {sim.base_url} ({REPORT_DAYS} days, 3 partitions per "
            f"hour; {GAP:%Y-%m-%d %H}:00 is left out, to show a gap in the report)"
        )
        codes = [
            run_and_present(
                config,
                now=moment,
                start=lo,
                end=hi,
                log_format=args.log_format,
                log_file=args.log_file,
                quiet=args.quiet or args.log_format is None,  # the log file has every line
            )
            for lo, hi in ((first, GAP - HOUR), (GAP + HOUR, last))
        ]
        print(f"  export requests served by the simulator: {sim.request_count()}")
    code = max(codes)
    if config.output.sink == "local":
        _show_days(config, first, last)
        if code == 0:
            _build_models(config, first, last, moment)
            _write_report(config, first, last, moment)
    return code


def _build_models(config: Config, first: datetime, last: datetime, moment: datetime) -> None:
    from ...models.api import model_sync  # noqa: PLC0415 - DuckDB loads only here
    from .model import print_runs  # noqa: PLC0415

    print()
    print_runs(model_sync(config, start=first.date(), end=last.date(), now=moment), sys.stdout)


def _write_report(config: Config, first: datetime, last: datetime, moment: datetime) -> None:
    from ...reports.api import report_sync  # noqa: PLC0415 - DuckDB loads only here

    path = Path(config.output.dir) / REPORT_FILE
    result = report_sync(config, start=first, end=last, output=path, now=moment)
    print(f"\nreport of {first:%Y-%m-%d} to {last:%Y-%m-%d}: {result.path.resolve()}")


def quiet_hours() -> list[datetime]:
    return [DEMO_DAYS[0].replace(hour=3), DEMO_DAYS[1].replace(hour=4)]


def _show_days(config: Config, first: datetime, last: datetime) -> None:
    from ...output.stores.local import LocalSink  # noqa: PLC0415 - see demo_dataset

    sink = LocalSink(config.output.dir, run_id="demo-status", fsync=False)

    async def read() -> dict[datetime, tuple[str, int]]:
        found: dict[datetime, tuple[str, int]] = {}
        for hour in hour_range(first, last):
            manifest = await sink.read_manifest(config.amplitude.project, hour)
            if manifest is not None:
                found[hour] = (manifest.status, manifest.events)
        return found

    found = anyio.run(read)
    root = Path(config.output.dir) / config.amplitude.project
    print(f"\noutput in {root}/")
    print(f"  {'day':<12}{'complete':>9}{'empty':>7}{'missing':>9}{'events':>10}")
    for day in sorted({hour.replace(hour=0) for hour in hour_range(first, last)}):
        hours = [day + timedelta(hours=h) for h in range(24)]
        complete = sum(1 for h in hours if found.get(h, ("", 0))[0] == "complete")
        empty = sum(1 for h in hours if found.get(h, ("", 0))[0] == "empty")
        events = sum(found.get(h, ("", 0))[1] for h in hours)
        print(f"  {day:%Y-%m-%d}  {complete:>9}{empty:>7}{24 - complete - empty:>9}{events:>10,}")
    sys.stdout.flush()
