"""``make docs``: the outputs of docs/models.md's DuckDB queries, from the demo's data.

Runs ``async-amp demo`` into a temporary folder with the clock pinned (as
``tools/report_shot.py`` does), then runs every fenced ``sql`` block of docs/models.md whose
first line is ``-- duckdb: <name>`` in that folder (the document's paths are relative:
``data/_models/website/...``) and writes what DuckDB prints under it, in the ``text`` block
that follows (added when missing)::

    python -m tools.models_doc              # a fresh demo
    python -m tools.models_doc /tmp/demo    # a folder holding a demo's data/
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import duckdb

from tools.report_shot import run_demo

__all__ = ["BLOCK", "DOC", "main", "outputs", "render"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "models.md"
BLOCK = re.compile(
    r"^```sql\n-- duckdb: (?P<name>[\w-]+)\n(?P<sql>.*?)^```\n(?:\n```text\n.*?^```\n)?",
    re.M | re.S,
)


def render(connection: duckdb.DuckDBPyConnection, sql: str) -> str:
    """What DuckDB shows for ``sql``: its box of rows (types under the names)."""
    relation = connection.sql(sql)
    assert relation is not None, "a doc query returns rows"
    return str(relation).rstrip("\n")


def outputs(text: str, folder: Path) -> str:
    """``text`` (the document) with each query's output block made from ``folder``'s data."""
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    before = Path.cwd()
    os.chdir(folder)
    try:

        def one(match: re.Match[str]) -> str:
            shown = render(connection, match["sql"])
            return (
                f"```sql\n-- duckdb: {match['name']}\n{match['sql']}```\n\n```text\n{shown}\n```\n"
            )

        return BLOCK.sub(one, text)
    finally:
        os.chdir(before)
        connection.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        DOC.write_text(outputs(DOC.read_text(encoding="utf-8"), Path(args[0])), encoding="utf-8")
    else:
        with tempfile.TemporaryDirectory(prefix="async-amp-models-doc-") as name:
            run_demo(Path(name))
            text = outputs(DOC.read_text(encoding="utf-8"), Path(name))
        DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
