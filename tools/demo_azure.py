"""``make demo-azure``: the two days of ``async-amp demo``, extracted into Azure Blob Storage.

No Azure account needed. Azurite, the Azure Storage emulator (``npm ci --prefix tools``), runs
on loopback for the length of the demo; the simulated Export API serves the two days; the real
CLI path (``extract``'s ``run_and_present`` with ``sink = "azure"``) writes them to a container.
The demo then shows where the blobs are, how to list them, what the manifests say, and stops
Azurite, whose storage lives in memory: the blobs go with it (``--keep-running`` keeps it up
until Ctrl-C, to try the listing commands it prints)::

    .venv/bin/python -m tools.demo_azure [--keep-gzip] [--concurrency 8] [--keep-running]
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import FrameType
from urllib.parse import quote

import anyio

from async_amp.cli.commands.demo import DEMO_DAYS, DEMO_KEY, DEMO_SECRET, quiet_hours
from async_amp.cli.commands.extract import run_and_present
from async_amp.cli.options import EXIT_USAGE
from async_amp.cli.output import shutdown_logging
from async_amp.config import Config, Credentials
from async_amp.config.load import load_config
from async_amp.errors import UserError
from async_amp.hours import hour_range
from async_amp.output.manifest import MANIFEST_NAME, Manifest
from async_amp.output.stores.azure import AzureSink
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset
from tools.azurite import AzuriteError, AzuriteProcess

__all__ = ["main"]

CONTAINER = "async-amp-demo"
EXIT_INTERRUPTED = 130
SHOWN_BLOBS = 4  # blob names listed for the sample hour
_PROG = "python -m tools.demo_azure"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Start Azurite (the Azure Storage emulator) and the simulated Export API "
        "on loopback, extract the two demo days into a blob container exactly as "
        "'async-amp extract --sink azure' would, show the blobs, stop Azurite.",
        epilog=f"example: {_PROG} --keep-gzip --keep-running",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, metavar="N", help="requests in flight (default 8)"
    )
    parser.add_argument(
        "--keep-gzip",
        action="store_true",
        help="store Amplitude's .json.gz bytes as they are (about 10x smaller)",
    )
    parser.add_argument(
        "--container", default=CONTAINER, help=f"container to write (default {CONTAINER})"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="Azurite blob port (default 0: any free port)"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="keep Azurite running after the summary, until Ctrl-C, to try the commands shown",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stop Azurite on SIGTERM too
    try:
        return _run(args)
    except (AzuriteError, UserError) as exc:
        print(f"demo-azure: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("demo-azure: interrupted; Azurite stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutdown_logging()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    # Validated before anything starts; the simulator's URL is filled in once it listens.
    placeholder = {"AZURE_STORAGE_CONNECTION_STRING": "set once Azurite listens"}
    config = load_config(
        None,
        overrides={
            "amplitude": {"base_url": "http://127.0.0.1"},
            "extract": {"concurrency": args.concurrency},
            "output": {"sink": "azure", "keep_gzip": args.keep_gzip},
            "azure": {"container": args.container},
        },
        environ=placeholder,
    )
    first, last = DEMO_DAYS[0], DEMO_DAYS[1] + timedelta(hours=23)
    dataset = Dataset(events_per_hour=800, pages_per_hour=3, quiet_hours=frozenset(quiet_hours()))
    with AzuriteProcess(port=args.port) as azurite:
        # Only Azurite's connection string: a SAS token or account in the caller's environment
        # must never receive demo data.
        environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
        print(f"Azurite (Azure Storage emulator) on {azurite.blob_endpoint}, in memory")
        with BackgroundSimulator(dataset, api_key=DEMO_KEY, secret_key=DEMO_SECRET) as sim:
            amplitude = replace(config.amplitude, base_url=sim.base_url)
            config = replace(
                config,
                amplitude=amplitude,
                environ=environ,
                credentials=Credentials(DEMO_KEY, DEMO_SECRET),
            )
            print(f"simulated Export API on {sim.base_url} (two days, 3 partitions per hour)")
            code = run_and_present(
                config,
                now=datetime.now(UTC),
                start=first,
                end=last,
                # a progress line on a terminal, else warnings only; every line in logs/
                quiet=not sys.stderr.isatty(),
            )
            # asyncio resets SIGTERM to its default when the run's signal receiver closes
            signal.signal(signal.SIGTERM, _interrupt)
            print(f"  export requests served by the simulator: {sim.request_count()}")
        found = anyio.run(_inspect, config, environ, first, last)
        _show(found, config, azurite.blob_endpoint, azurite.connection_string)
        if args.keep_running:
            print(f"\nAzurite keeps running on {azurite.blob_endpoint}: press Ctrl-C to stop it")
            sys.stdout.flush()
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    print("\nAzurite stopped: its in-memory blobs are gone")
    return code


@dataclass(slots=True)
class _Found:
    where: str
    blobs: int = 0
    data_blobs: int = 0
    size: int = 0
    manifests: dict[datetime, Manifest] = field(default_factory=dict)
    sample_folder: str = ""
    sample: list[tuple[str, int, str]] = field(default_factory=list)


async def _inspect(
    config: Config, environ: dict[str, str], first: datetime, last: datetime
) -> _Found:
    """Read the container back through the sink: one listing, then the manifests."""
    project = config.amplitude.project
    async with AzureSink.from_config(config.azure, run_id="demo-azure", environ=environ) as sink:
        found = _Found(where=sink.describe())
        for hour in hour_range(first, last):
            manifest = await sink.read_manifest(project, hour)
            if manifest is not None:
                found.manifests[hour] = manifest
        complete = [h for h, m in found.manifests.items() if m.status == "complete"]
        found.sample_folder = sink.hour_prefix(project, complete[0] if complete else first) + "/"
        async for blob in sink.container.list_blobs(name_starts_with=sink.name(project) + "/"):
            found.blobs += 1
            found.size += blob.size or 0
            if not blob.name.endswith("/" + MANIFEST_NAME):
                found.data_blobs += 1
            if blob.name.startswith(found.sample_folder) and len(found.sample) < SHOWN_BLOBS:
                content_type = blob.content_settings.content_type or ""
                found.sample.append((blob.name, blob.size or 0, content_type))
        return found


def _show(found: _Found, config: Config, endpoint: str, connection_string: str) -> None:
    container = config.azure.container
    container_url = f"{endpoint}/{container}"
    print(f"\nblobs in {found.where}")
    print(f"  container URL: {container_url}")
    print(
        f"  {found.blobs} blobs: {found.data_blobs} data files and "
        f"{found.blobs - found.data_blobs} manifests, {found.size / 1e6:,.1f} MB"
    )
    print(f"  e.g. {found.sample_folder}")
    for name, size, content_type in found.sample:
        print(f"    {name.rsplit('/', 1)[1]:<34}{size:>12,} bytes  {content_type}")
    data = [name for name, _, _ in found.sample if not name.endswith(MANIFEST_NAME)]
    if data:
        # '#' is part of the blob name: percent-encoded in a URL, or it starts a fragment.
        print("  one blob's URL (private: reading it takes the key or a SAS):")
        print(f"    {container_url}/{quote(data[0], safe='/=')}")

    print("\nhours per day, from the manifests (an hour exists once its _manifest.json does):")
    print(f"  {'day':<12}{'complete':>9}{'empty':>7}{'missing':>9}{'events':>10}")
    for day in DEMO_DAYS:
        hours = [day + timedelta(hours=h) for h in range(24)]
        manifests = [found.manifests[h] for h in hours if h in found.manifests]
        complete = sum(1 for m in manifests if m.status == "complete")
        empty = sum(1 for m in manifests if m.status == "empty")
        events = sum(m.events for m in manifests)
        print(f"  {day:%Y-%m-%d}  {complete:>9}{empty:>7}{24 - len(manifests):>9}{events:>10,}")

    prefix = found.sample_folder
    print("\nlist them yourself while Azurite runs (--keep-running); the key is Azurite's")
    print("public, well-known development key:")
    az = [
        "az", "storage", "blob", "list", "--connection-string", connection_string,
        "--container-name", container, "--prefix", prefix, "--output", "table",
    ]  # fmt: skip
    print(f"  {shlex.join(az)}")
    print("\n.venv/bin/python - <<'EOF'")
    print("from azure.storage.blob import ContainerClient")
    print(f"conn = {connection_string!r}")
    print(f"container = ContainerClient.from_connection_string(conn, {container!r})")
    print(f"for blob in container.list_blobs(name_starts_with={prefix!r}):")
    print("    print(blob.name, blob.size)")
    print("EOF")
    print("\ndocs/azure.md: real storage accounts, and DuckDB / Synapse queries over the blobs")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
