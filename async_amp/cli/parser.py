"""The top-level parser: ``async-amp [--version] COMMAND ...``, with every command module added.

A command is any module of ``async_amp.cli.commands`` with a ``register(commands)`` function;
its ``ORDER`` says where it is listed (see the package docstring).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from types import ModuleType
from typing import Any

from ..version import __version__
from .options import EXIT_USAGE

__all__ = ["Parser", "build_parser", "command_modules"]


class Parser(argparse.ArgumentParser):
    """One line and exit 2 on a usage error, no usage dump."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"async-amp: error: {message} (see '{self.prog} --help')\n")


def command_modules() -> list[ModuleType]:
    """The modules of ``async_amp.cli.commands`` that define ``register``, in their ``ORDER``."""
    package = importlib.import_module(f"{__package__}.commands")
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if callable(getattr(module, "register", None)):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 1000), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="async-amp",
        description="Fast, lossless, resumable Amplitude Export API extraction into a local "
        "folder, Azure Blob Storage, S3 or GCS, as NDJSON, gzip, Parquet or Delta Lake.",
        epilog="example: async-amp extract --start 2026-11-01 --end 2026-11-02",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"async-amp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in command_modules():
        module.register(commands)
    return parser
