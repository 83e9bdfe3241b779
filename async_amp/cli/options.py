"""Options and argument types shared by several commands, and how a command reads its settings.

Every command that takes a range uses :func:`add_range_options` and :func:`parse_range`; every
command that reads or writes storage uses :func:`add_storage_options` and :func:`load`; every
command that logs uses :func:`add_log_options`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import SINKS, Config
from ..config.load import config_file, load_config, process_environment
from ..errors import ConfigError
from ..hours import hour_bounds

__all__ = [
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_config_option",
    "add_log_options",
    "add_project_option",
    "add_range_options",
    "add_storage_options",
    "environment",
    "join_relative_bounds",
    "load",
    "now",
    "parse_range",
    "positive_int",
    "shard",
]

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2


def shard(text: str) -> tuple[int, int]:
    """``K/N`` for ``--shard``."""
    index, _, count = text.partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        msg = f"{text!r} is not K/N (e.g. 2/8)"
        raise argparse.ArgumentTypeError(msg) from None
    if not 1 <= k <= n:
        msg = f"{text!r}: K must be between 1 and N (e.g. 1/4 .. 4/4)"
        raise argparse.ArgumentTypeError(msg)
    return k, n


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"must be at least 1, not {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_range_options(cmd: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--start`` / ``--end``, shared by every command that takes a range of hours."""
    cmd.add_argument(
        "--start",
        required=required,
        help="first hour: YYYY-MM-DD (whole UTC day), YYYY-MM-DDTHH, YYYYMMDDTHH or -7d "
        "(e.g. --start 2026-11-01)",
    )
    cmd.add_argument(
        "--end",
        required=required,
        help="last hour, inclusive, same forms (e.g. --end 2026-11-02 covers up to T23)",
    )


def add_dataset_options(cmd: argparse.ArgumentParser, *, events_per_hour: int) -> None:
    """``--events-per-hour``, ``--pages`` and ``--seed``: the shape of a simulated project."""
    cmd.add_argument(
        "--events-per-hour",
        type=positive_int,
        default=events_per_hour,
        metavar="N",
        help="average events per hour (e.g. --events-per-hour 2000)",
    )
    cmd.add_argument(
        "--pages",
        type=positive_int,
        default=3,
        metavar="N",
        help="partitions per hour (e.g. --pages 3)",
    )
    cmd.add_argument("--seed", type=int, default=0, help="data seed (e.g. --seed 7)")


def add_config_option(cmd: argparse.ArgumentParser) -> None:
    """``--config PATH``."""
    cmd.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="config file (default: $ASYNC_AMP_CONFIG, else ./config.toml if present; "
        "e.g. --config prod.toml)",
    )


def add_storage_options(
    cmd: argparse.ArgumentParser, *, sink_help: str = "where to write (e.g. --sink azure)"
) -> None:
    """``--config``, ``--output`` and ``--sink``: which config, and which storage."""
    add_config_option(cmd)
    cmd.add_argument(
        "--output", type=Path, metavar="DIR", help="local output folder (e.g. --output data)"
    )
    cmd.add_argument("--sink", choices=SINKS, help=sink_help)


def add_reading_options(cmd: argparse.ArgumentParser, project_help: str) -> None:
    """``--config``, ``--output``, ``--sink`` and one ``--project``: what a command that
    reads the stored events (model, reconcile) reads."""
    add_config_option(cmd)
    cmd.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="the local folder extractions wrote to, as in every command (default [output] "
        "dir; e.g. --output data)",
    )
    cmd.add_argument("--sink", choices=SINKS, help="where to read from (e.g. --sink local)")
    cmd.add_argument("--project", metavar="NAME", help=project_help)


def add_log_options(cmd: argparse.ArgumentParser) -> None:
    """``--log-format``, ``--log-file`` and ``--quiet``."""
    cmd.add_argument(
        "--log-format",
        choices=("json", "console"),
        help="stderr log format (default: console on a TTY, JSON otherwise; e.g. json)",
    )
    cmd.add_argument(
        "--log-file",
        type=Path,
        metavar="PATH",
        help="JSON log file (default logs/<run id>.jsonl; e.g. --log-file run.jsonl)",
    )
    cmd.add_argument(
        "--quiet", action="store_true", help="only warnings and errors on stderr (e.g. --quiet)"
    )


def add_project_option(cmd: argparse.ArgumentParser, help_text: str) -> None:
    """``--project NAME``, repeatable."""
    cmd.add_argument("--project", action="append", metavar="NAME", help=help_text)


def parse_range(
    args: argparse.Namespace, now: datetime, *, optional: bool = True, hint: str = ""
) -> tuple[datetime | None, datetime | None]:
    """``--start`` / ``--end`` as hours (``None`` when not given), checked for order, as the
    API checks its ``start`` and ``end`` (``hours.hour_bounds``)."""
    return hour_bounds(
        args.start or None,
        args.end or None,
        now,
        optional=optional,
        names=("--start", "--end"),
        hint=hint,
    )


def environment() -> dict[str, str]:
    """The process environment over ``./.env`` (the environment wins)."""
    return process_environment()


def now(environ: Mapping[str, str]) -> datetime:
    """The current time, or ``ASYNC_AMP_NOW`` when set (tests, replays)."""
    override = environ.get("ASYNC_AMP_NOW")
    if override:
        try:
            return datetime.fromisoformat(override.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            msg = f"ASYNC_AMP_NOW={override!r} is not an ISO date-time"
            raise ConfigError(msg) from None
    return datetime.now(UTC)


def load(args: argparse.Namespace, environ: Mapping[str, str], **extract: Any) -> Config:
    """The config that ``--config`` names (else ``ASYNC_AMP_CONFIG``, else ``./config.toml``),
    with the command's flags."""
    path, required = config_file(args.config, environ)
    overrides = {
        "extract": extract,
        "output": {"dir": args.output, "sink": args.sink, "format": getattr(args, "format", None)},
    }
    return load_config(path, overrides=overrides, environ=environ, required=required)


def join_relative_bounds(argv: Sequence[str]) -> list[str]:
    """``--start -7d`` would read as a flag to argparse: hand it over as ``--start=-7d``."""
    joined: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token in ("--start", "--end"):
            value = next(tokens, None)
            if value is not None and re.fullmatch(r"-\d+[hd]", value):
                joined.append(f"{token}={value}")
                continue
            joined.append(token)
            if value is not None:
                joined.append(value)
            continue
        joined.append(token)
    return joined
