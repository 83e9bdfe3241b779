"""Render the generated documentation, so the reference cannot drift from the code.

``docs/cli.md`` is the ``--help`` of every command; the key tables of
``docs/configuration.md`` (after each ``<!-- keys: SECTION -->`` marker) come from the config
declaration (``async_amp.config``), and the column table of ``docs/schema.md`` (after
``<!-- columns -->``) from the event schema (``async_amp.output.columnar.schema``)::

    python -m tools.docgen           # rewrite them (make docs)
    python -m tools.docgen --check   # exit 1 when one is out of date

The help is rendered at a fixed width, whatever the terminal, so the output is the same on
every machine running the same Python minor version.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from async_amp.cli.parser import build_parser
from async_amp.config import ProjectConfig, keys_of, sections
from async_amp.config.load import ENV_PREFIX

__all__ = [
    "WIDTH",
    "commands",
    "main",
    "render_cli",
    "render_configuration",
    "render_merged_ids",
    "render_models",
    "render_schema",
]

WIDTH = 100
HEADER = """\
# Command-line reference

<!-- Generated from `--help` by `python -m tools.docgen` (make docs).
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


_MARKER = re.compile(r"^<!-- keys: (\[?[\w]+\]?) -->$", re.M)
_COLUMNS_MARKER = re.compile(r"^<!-- columns -->$", re.M)
_TABLE_HEAD = (
    "| key | type | default | environment variable | meaning |\n| --- | --- | --- | --- | --- |\n"
)


def _literal(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str | Path):
        return f'`"{value}"`'
    if isinstance(value, tuple):  # a list of names: as TOML writes it
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value!r}`"


def _key_table(section: str) -> str:
    """The Markdown table of one section's keys (``[projects]``: the ``[[projects]]`` ones)."""
    cls = ProjectConfig if section == "[projects]" else sections()[section]
    rows = []
    for key in keys_of(cls).values():
        if cls is ProjectConfig:
            env = "—"
            default = "(required)" if key.required or key.default is MISSING else None
        else:
            env = f"`{ENV_PREFIX}{section.upper()}_{key.name.upper()}`"
            default = None
        shown = default or key.shown or _literal(key.default)
        rows.append(f"| `{key.name}` | {key.kind} | {shown} | {env} | {key.doc} |\n")
    return _TABLE_HEAD + "".join(rows)


def render_configuration(current: str) -> str:
    """``current`` (``docs/configuration.md``) with every key table regenerated."""
    return _splice(current, _MARKER, lambda m: _key_table(m.group(1)))


def render_schema(current: str) -> str:
    """``current`` (``docs/schema.md``) with its column table regenerated."""
    from async_amp.output.columnar.schema import column_table  # noqa: PLC0415 - pyarrow only for this file

    return _splice(current, _COLUMNS_MARKER, lambda _: column_table())


_MERGED_MARKER = re.compile(r"^<!-- merged_ids columns -->$", re.M)


def render_merged_ids(current: str) -> str:
    """``current`` (``docs/merged-ids.md``) with its column table regenerated."""
    from async_amp.merged.schema import merged_column_table  # noqa: PLC0415 - pyarrow only here

    return _splice(current, _MERGED_MARKER, lambda _: merged_column_table())


_MODEL_MARKER = re.compile(r"^<!-- model: (\w+) -->$", re.M)


def render_models(current: str) -> str:
    """``current`` (``docs/models.md``) with each model table's column table regenerated."""
    from async_amp.models.schema import column_table  # noqa: PLC0415 - pyarrow only here

    return _splice(current, _MODEL_MARKER, lambda m: column_table(m.group(1)))


def _splice(
    current: str, marker_re: re.Pattern[str], table_for: Callable[[re.Match[str]], str]
) -> str:
    """``current`` with the Markdown table after each marker replaced by ``table_for``."""
    parts: list[str] = []
    pos = 0
    for marker in marker_re.finditer(current):
        parts.append(current[pos : marker.end()] + "\n\n")
        rest = current[marker.end() :].lstrip("\n")
        table = 0
        for line in rest.splitlines(keepends=True):
            if not line.startswith("|"):
                break
            table += len(line)
        pos = len(current) - len(rest) + table
        parts.append(table_for(marker))
    parts.append(current[pos:])
    return "".join(parts)


def _targets(root: Path) -> dict[Path, str]:
    config_md = root / "configuration.md"
    current = config_md.read_text(encoding="utf-8") if config_md.is_file() else ""
    schema_md = root / "schema.md"
    schema = schema_md.read_text(encoding="utf-8") if schema_md.is_file() else "<!-- columns -->\n"
    models_md = root / "models.md"
    models = models_md.read_text(encoding="utf-8") if models_md.is_file() else ""
    merged_md = root / "merged-ids.md"
    merged = merged_md.read_text(encoding="utf-8") if merged_md.is_file() else ""
    return {
        merged_md: render_merged_ids(merged),
        root / "cli.md": render_cli(),
        models_md: render_models(models),
        config_md: render_configuration(current),
        schema_md: render_schema(schema),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = argparse.ArgumentParser(
        prog="python -m tools.docgen",
        description="Render docs/cli.md from the --help of every async-amp command, and the "
        "key tables of docs/configuration.md from the config declaration.",
        epilog="example: python -m tools.docgen --check",
    )
    args.add_argument(
        "--docs", type=Path, default=Path("docs"), help="the docs folder (e.g. --docs docs)"
    )
    args.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a file is out of date (e.g. --check in CI)",
    )
    ns = args.parse_args(argv)
    stale = 0
    for path, text in _targets(ns.docs).items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        if ns.check:
            print(f"{path} is out of date: run 'make docs'", file=sys.stderr)
            stale += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
