"""``async-amp simulate``: serve the simulated Export API on loopback."""

from __future__ import annotations

import argparse

import anyio

from ..options import EXIT_OK, environment, positive_int

__all__ = ["ORDER", "register"]

ORDER = 20


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        type=positive_int,
        default=1000,
        metavar="N",
        help="average events per hour (e.g. --events-per-hour 2000)",
    )
    sim.add_argument(
        "--pages",
        type=positive_int,
        default=3,
        metavar="N",
        help="partitions per hour (e.g. --pages 3)",
    )
    sim.add_argument("--seed", type=int, default=0, help="data seed (e.g. --seed 7)")
    sim.set_defaults(handler=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ...simulator.dataset import Dataset  # noqa: PLC0415
    from ...simulator.server import serve_forever  # noqa: PLC0415

    environ = environment()
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
