"""Every DuckDB and polars example of docs/querying-parquet.md, run against a real Parquet
extraction from the simulator, must print exactly the output the document shows under it.

Blocks are read from the document: a fenced ``sql`` block whose first line is
``-- duckdb: <name>``, or a ``python`` block whose first line is ``# polars: <name>`` (it
leaves its frame in ``result``), each followed by a ``text`` block with the output. After a
deliberate change, ``ASYNC_AMP_UPDATE_DOCS=1 pytest tests/test_querying_parquet.py`` rewrites
the outputs; review the diff.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest

from async_amp.output.stores import make_sink
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import run_simulator

from .helpers import KEY, SECRET, make_config, run

DOC = Path(__file__).resolve().parent.parent / "docs" / "querying-parquet.md"
BLOCK = re.compile(
    r"^```(?P<lang>sql|python)\n(?:-- duckdb|# polars): (?P<name>[\w-]+)\n(?P<code>.*?)^```\n\n"
    r"```text\n(?P<output>.*?)^```$",
    re.M | re.S,
)
DAY = datetime(2026, 11, 2, tzinfo=UTC)


def render(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """An aligned plain-text table: what the document shows under each query."""

    def cell(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, date | datetime):
            return value.isoformat()
        return str(value)

    table = [columns, *([cell(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in table
    )


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """``{name: (shown, printed)}`` for every example of the document."""
    root = tmp_path_factory.mktemp("parquet-querying")
    dataset = Dataset(events_per_hour=60, pages_per_hour=2)

    async def extract() -> None:
        async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
            config = make_config(sim.base_url, root / "data", window_hours=24)
            config = replace(config, output=replace(config.output, format="parquet"))
            sink = make_sink(config, run_id="test-run", environ={})
            summary = await run(config, DAY, DAY + timedelta(hours=23), sink=sink)
        assert summary.exit_code == 0

    anyio.run(extract)
    text = DOC.read_text(encoding="utf-8")
    found: dict[str, tuple[str, str]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the document's paths are relative: data/website/...
        con = duckdb.connect()
        for block in BLOCK.finditer(text):
            if block["lang"] == "sql":
                relation = con.sql(block["code"])
                printed = render(relation.columns, relation.fetchall())
            else:
                scope: dict[str, Any] = {}
                exec(block["code"], scope)  # the document's own example
                frame = scope["result"]
                printed = render(frame.columns, frame.rows())
            found[block["name"]] = (block["output"], printed)
    if os.environ.get("ASYNC_AMP_UPDATE_DOCS") == "1":
        updated = BLOCK.sub(
            lambda m: m[0].replace(
                f"```text\n{m['output']}```", f"```text\n{found[m['name']][1]}```"
            ),
            text,
        )
        DOC.write_text(updated, encoding="utf-8")
    return found


NAMES = ["per_hour", "top_pages", "sessions_by_country", "extra_keys", "by_event_type", "referrers"]


def test_every_example_is_checked() -> None:
    assert [m["name"] for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_documented_output(outputs: dict[str, tuple[str, str]], name: str) -> None:
    shown, printed = outputs[name]
    assert printed.count("\n") > 1, f"{name} printed no rows"
    assert shown == printed, f"docs/querying-parquet.md shows another output for {name}"
