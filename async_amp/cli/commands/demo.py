"""``async-amp demo``: the whole job end to end against the bundled simulator, no account needed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from ...config import AmplitudeConfig, Config, Credentials
from ...hours import hour_range
from ...run import RunRequest
from ...sinks.local import LocalSink
from ...testing.background import BackgroundSimulator
from ...testing.dataset import Dataset
from ..options import add_log_options, add_storage_options, environment, load, positive_int
from .extract import run_and_present

__all__ = ["DEMO_DAYS", "DEMO_KEY", "DEMO_SECRET", "ORDER", "quiet_hours", "register", "run_demo"]

ORDER = 30

DEMO_DAYS = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
DEMO_KEY, DEMO_SECRET = "demo-api-key", "demo-secret-key"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="extract two simulated days end to end (e.g. async-amp demo)",
        description="Start the simulated Export API on loopback and extract two days from it "
        "into --output, exactly as 'extract' would from Amplitude. No account needed.",
        epilog="example: async-amp demo --output data --concurrency 8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_storage_options(demo)
    add_log_options(demo)
    demo.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="requests in flight (e.g. --concurrency 8)",
    )
    demo.set_defaults(handler=lambda args: run_demo(args, environment()))


def run_demo(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Serve two simulated days on loopback, extract them with the real client, show them."""
    config = load(args, {}, concurrency=args.concurrency or 8)
    dataset = Dataset(events_per_hour=800, pages_per_hour=3, quiet_hours=frozenset(quiet_hours()))
    first, last = DEMO_DAYS[0], DEMO_DAYS[1] + timedelta(hours=23)
    with BackgroundSimulator(dataset, api_key=DEMO_KEY, secret_key=DEMO_SECRET) as sim:
        config = Config(
            amplitude=AmplitudeConfig(project=config.amplitude.project, base_url=sim.base_url),
            extract=config.extract,
            output=config.output,
            azure=config.azure,
            source=config.source,
            environ={k: v for k, v in environ.items() if not k.startswith("AZURE_")},
        )
        print(f"simulated Export API on {sim.base_url} (two days, 3 partitions per hour)")
        code = run_and_present(
            config,
            RunRequest(first=first, last=last, now=datetime.now(UTC)),
            log_format=args.log_format,
            log_file=args.log_file,
            quiet=args.quiet or args.log_format is None,  # the log file has every line
            credentials={config.amplitude.project: Credentials(DEMO_KEY, DEMO_SECRET)},
        )
        print(f"  export requests served by the simulator: {sim.request_count()}")
    if config.output.sink == "local":
        _show_days(config, first, last)
    return code


def quiet_hours() -> list[datetime]:
    return [DEMO_DAYS[0].replace(hour=3), DEMO_DAYS[1].replace(hour=4)]


def _show_days(config: Config, first: datetime, last: datetime) -> None:
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
    for day in DEMO_DAYS:
        hours = [day + timedelta(hours=h) for h in range(24)]
        complete = sum(1 for h in hours if found.get(h, ("", 0))[0] == "complete")
        empty = sum(1 for h in hours if found.get(h, ("", 0))[0] == "empty")
        events = sum(found.get(h, ("", 0))[1] for h in hours)
        print(f"  {day:%Y-%m-%d}  {complete:>9}{empty:>7}{24 - complete - empty:>9}{events:>10,}")
    sys.stdout.flush()
