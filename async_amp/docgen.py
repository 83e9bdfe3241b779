"""Render ``docs/cli.md`` from the ``--help`` of every command, so the reference cannot drift.

    python -m async_amp.docgen docs/cli.md           # rewrite it (make docs)
    python -m async_amp.docgen docs/cli.md --check   # exit 1 when it is out of date (CI)

The help is rendered at a fixed width, whatever the terminal, so the output is the same on
every machine running the same Python minor version.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .cli import build_parser

__all__ = ["WIDTH", "commands", "main", "render_cli"]

WIDTH = 100
HEADER = """\
# Command-line reference

<!-- Generated from `--help` by `python -m async_amp.docgen docs/cli.md` (make docs).
     Do not edit by hand: change the help text in the code and regenerate. -->

Every command accepts `--help`. Options that are also config keys follow the precedence
CLI flag > environment (`ASYNC_AMP_<SECTION>_<KEY>`) > `config.toml` > default; see
[configuration.md](configuration.md). What each exit code means, and what to do about it:
[operations.md](operations.md#exit-codes).
"""


@contextmanager
def _columns(width: int) -> Iterator[None]:
    """argparse wraps help at ``$COLUMNS - 2``: pin it while rendering."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width + 2)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers by name, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render_cli(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole of ``docs/cli.md``."""
    parser = parser or build_parser()
    parts = [HEADER]
    with _columns(WIDTH):
        sections = [(parser.prog, parser.format_help())]
        sections += [(sub.prog, sub.format_help()) for sub in commands(parser).values()]
    index = "".join(f"- [`{name}`](#{name.replace(' ', '-')})\n" for name, _ in sections[1:])
    parts.append(index)
    for name, text in sections:
        parts.append(f"## {name}\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = argparse.ArgumentParser(
        prog="python -m async_amp.docgen",
        description="Render docs/cli.md from the --help of every async-amp command.",
        epilog="example: python -m async_amp.docgen docs/cli.md --check",
    )
    args.add_argument(
        "path", type=Path, help="the Markdown file to write (e.g. docs/cli.md)", nargs="?"
    )
    args.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the file is out of date (e.g. --check in CI)",
    )
    ns = args.parse_args(argv)
    path: Path = ns.path or Path("docs/cli.md")
    text = render_cli()
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if ns.check:
        if current != text:
            print(f"{path} is out of date: run 'make docs'", file=sys.stderr)
            return 1
        return 0
    if current != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
