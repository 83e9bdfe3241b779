"""``async-amp simulate``: serve the simulated Export API on loopback."""

from __future__ import annotations

import argparse
import errno
import shlex

import anyio

from ...errors import ConfigError
from ..options import EXIT_OK, add_dataset_options, environment

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
    add_dataset_options(sim, events_per_hour=1000)
    sim.set_defaults(handler=_cmd_simulate)


DEMO_KEYS = ("demo-key", "demo-secret")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ...simulator.dataset import Dataset  # noqa: PLC0415
    from ...simulator.server import serve_forever  # noqa: PLC0415

    environ = environment()
    dataset = Dataset(
        events_per_hour=args.events_per_hour, pages_per_hour=args.pages, seed=args.seed
    )
    api_key = environ.get("AMP_API_KEY", DEMO_KEYS[0])
    secret_key = environ.get("AMP_SECRET_KEY", DEMO_KEYS[1])
    ready: list[str] = []

    def announce(base_url: str) -> None:
        ready.append(base_url)
        print(banner(base_url, demo_keys=(api_key, secret_key) == DEMO_KEYS), flush=True)

    try:
        anyio.run(
            lambda: serve_forever(
                dataset,
                api_key=api_key,
                secret_key=secret_key,
                host=args.host,
                port=args.port,
                on_ready=announce,
            )
        )
    except OSError as exc:
        if ready:  # it was serving: not a start-up problem
            raise
        raise ConfigError(_cannot_listen(args.host, args.port, exc)) from None
    return EXIT_OK


def banner(base_url: str, *, demo_keys: bool) -> str:
    """What ``simulate`` prints once it listens: where, which keys, how to extract from it."""
    if demo_keys:
        keys = f"API key {DEMO_KEYS[0]}, secret key {DEMO_KEYS[1]}"
        env = f"AMP_API_KEY={DEMO_KEYS[0]} AMP_SECRET_KEY={DEMO_KEYS[1]} "
    else:  # the user's own values: never printed
        keys = "the values of AMP_API_KEY and AMP_SECRET_KEY"
        env = ""
    return (
        f"simulated Export API listening on {base_url} (Ctrl-C stops it)\n"
        f"keys: {keys}\n"
        f"try:  ASYNC_AMP_AMPLITUDE_BASE_URL={shlex.quote(base_url)} {env}"
        "async-amp extract --start 2026-11-01 --end 2026-11-01"
    )


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is in use; stop what uses it or pick another --port (0: any)"
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}; check --host (e.g. --host 127.0.0.1) and --port"
