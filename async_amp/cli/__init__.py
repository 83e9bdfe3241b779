"""The ``async-amp`` command: a thin presenter over the library's API.

Nothing outside this package imports it; it imports the library. Its modules:

- ``parser.py``: the top-level parser; finds the commands (below) and adds them in order.
- ``options.py``: options shared by several commands (range, storage, logs), argument types,
  how a command reads its config, the exit codes.
- ``output.py``: log output for people and machines (JSON or console on stderr, a JSON file).
- ``commands/``: one module per subcommand: ``extract.py`` (the extract presenter),
  ``simulate.py``, ``demo.py``, ``ops.py`` (``status`` and ``verify``).

Adding a subcommand is one new module in ``commands/``, which nothing else needs to name::

    '''``async-amp report``: ...'''
    import argparse

    ORDER = 60  # where it is listed in --help: extract 10, simulate 20, demo 30, status 40

    def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        cmd = commands.add_parser("report", help="... (e.g. async-amp report --start -7d)",
                                  description="...")
        add_range_options(cmd)          # from ..options: reuse the shared options
        cmd.set_defaults(handler=run)   # run(args: argparse.Namespace) -> int (exit code)

Every module in ``commands/`` that defines ``register`` is a command. A handler raises
``async_amp.UserError`` for anything the user must fix (printed as one line, exit 2) and
returns the exit code otherwise. Then run ``make docs`` to regenerate ``docs/cli.md``
(a test fails until you do) and add a test to ``tests/test_cli.py`` or a file of its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from ..errors import UserError
from .options import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, join_relative_bounds
from .output import EXIT_SIGNAL, shutdown_logging
from .parser import build_parser
from .tuning import tune_malloc

__all__ = ["EXIT_INCOMPLETE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the console script exits with it)."""
    if os.environ.get("ASYNC_AMP_MALLOPT", "1") != "0":
        tune_malloc()
    parser = build_parser()
    args = parser.parse_args(join_relative_bounds(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UserError as exc:
        print(f"async-amp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("async-amp: interrupted", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGINT]
    finally:
        shutdown_logging()
