"""Every DuckDB block of docs/querying.md, run against a real extraction from the simulator.

The SQL is read from the document itself (fenced ``sql`` blocks whose first line is
``-- duckdb: <name>``), in document order, so the documentation and this test cannot drift.
Each block must have a check here: a new query without one fails the test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest

from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import run_simulator

from .helpers import KEY, SECRET, make_config, run

DOC = Path(__file__).resolve().parent.parent / "docs" / "querying.md"
BLOCK = re.compile(r"^```sql\n-- duckdb: (?P<name>[\w-]+)\n(?P<sql>.*?)^```$", re.M | re.S)
MONDAY = datetime(2026, 11, 2, tzinfo=UTC)  # a whole week, Monday to Sunday
QUIET = MONDAY + timedelta(days=1, hours=4)

Rows = list[dict[str, Any]]


def doc_blocks() -> list[tuple[str, str]]:
    return [(m["name"], m["sql"]) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


class Demo:
    """A week of simulated website events extracted into ``root/data``, queried with DuckDB."""

    def __init__(self, root: Path, events: int) -> None:
        self.root = root
        self.events = events
        self.results: dict[str, Rows] = {}

    def manifests(self) -> list[dict[str, Any]]:
        return [
            json.loads(p.read_bytes())
            for p in sorted((self.root / "data/website").glob("*/*/_manifest.json"))
        ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("querying")
    dataset = Dataset(events_per_hour=60, pages_per_hour=2, quiet_hours=frozenset({QUIET}))
    last = MONDAY + timedelta(days=7) - timedelta(hours=1)

    async def extract() -> int:
        async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
            config = make_config(sim.base_url, root / "data", window_hours=24)
            summary = await run(config, MONDAY, last)
        assert summary.exit_code == 0
        return summary.events

    demo = Demo(root, anyio.run(extract))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the document's paths are relative: data/website/...
        connection = duckdb.connect()
        try:
            for name, sql in doc_blocks():
                relation = connection.sql(sql)
                if relation is None:  # a statement (CREATE VIEW, COPY): no rows
                    demo.results[name] = []
                else:
                    columns = relation.columns
                    demo.results[name] = [
                        dict(zip(columns, row, strict=True)) for row in relation.fetchall()
                    ]
        finally:
            connection.close()
        yield demo


# --- a check for every block ----------------------------------------------------------------


def _no_rows(demo: Demo, rows: Rows) -> None:
    assert rows == []


def _events_per_day(demo: Demo, rows: Rows) -> None:
    assert [r["date"].isoformat() for r in rows] == [
        (MONDAY + timedelta(days=d)).date().isoformat() for d in range(7)
    ]
    assert all(r["events"] == r["manifest_events"] for r in rows)
    # the data, the manifests and the extraction's own count agree
    assert sum(r["events"] for r in rows) == demo.events
    assert sum(m["events"] for m in demo.manifests()) == demo.events
    assert sum(r["complete_hours"] for r in rows) == 7 * 24 - 1
    assert [r["empty_hours"] for r in rows] == [0, 1, 0, 0, 0, 0, 0]


def _top_pages(demo: Demo, rows: Rows) -> None:
    top = rows[0]
    assert (top["page_path"], top["page_title"]) == ("/", "ShipFast - Ship software faster")
    assert rows[1]["page_path"] == "/pricing"  # the dataset's second favourite
    assert len(rows) == 10
    assert [r["views"] for r in rows] == sorted((r["views"] for r in rows), reverse=True)
    assert all(0 < r["engaged_sessions"] <= r["views"] for r in rows)
    assert all(r["visitors"] <= r["views"] for r in rows)


def _top_blog_posts(demo: Demo, rows: Rows) -> None:
    top = rows[0]
    assert top["title"] == "How we ship fast: 40 deploys a day"
    assert top["category"] == "Engineering" and top["page_path"] == "/blog/how-we-ship-fast"
    assert top["views"] > 2 * rows[2]["views"]  # Zipf: the first post dominates
    assert all(0 < r["engaged_pct"] <= 100 for r in rows)


def _visitors_by_country(demo: Demo, rows: Rows) -> None:
    assert rows[0]["country"] == "United States"
    assert {r["country"] for r in rows[:5]} >= {"United States", "Germany", "India"}
    assert all(r["visitors"] > 0 and r["sessions"] > 0 for r in rows)


def _sessions_by_referrer(demo: Demo, rows: Rows) -> None:
    order = [r["referring_domain"] for r in rows]
    assert order[:2] == ["www.google.com", "(direct)"]
    assert "www.linkedin.com" in order[:4]
    for r in rows:
        assert 0 < r["engaged_sessions"] < r["sessions"]  # bounces exist; so do engaged visits


def _top_companies(demo: Demo, rows: Rows) -> None:
    assert rows[0]["company_domain"] == "acme.com" and rows[0]["company"] == "Acme Corp"
    assert None not in {r["company_domain"] for r in rows}
    assert all(r["visitors"] > 0 for r in rows)


def _by_hour_of_day(demo: Demo, rows: Rows) -> None:
    assert [r["hour_utc"] for r in rows] == list(range(24))
    views = [r["page_views"] for r in rows]
    assert 12 <= views.index(max(views)) <= 18  # the dataset peaks mid-afternoon UTC
    assert 0 <= views.index(min(views)) <= 6  # and is quietest at night
    assert sum(views) > 0


def _by_day_of_week(demo: Demo, rows: Rows) -> None:
    assert [r["day"] for r in rows] == [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    per_day = [r["page_views_per_day"] for r in rows]
    assert min(per_day[:5]) > max(per_day[5:])  # weekdays are busier than the weekend


def _to_parquet(demo: Demo, rows: Rows) -> None:
    assert [list(r.values()) for r in rows] == [[demo.events]]  # COPY answers the rows written


def _from_parquet(demo: Demo, rows: Rows) -> None:
    assert sum(r["events"] for r in rows) == demo.events
    assert (demo.root / "website_parquet").is_dir()


CHECKS: dict[str, Callable[[Demo, Rows], None]] = {
    "events": _no_rows,
    "sessions": _no_rows,
    "events-per-day": _events_per_day,
    "hours-that-disagree": _no_rows,
    "top-pages": _top_pages,
    "top-blog-posts": _top_blog_posts,
    "visitors-by-country": _visitors_by_country,
    "sessions-by-referrer": _sessions_by_referrer,
    "top-companies": _top_companies,
    "by-hour-of-day": _by_hour_of_day,
    "by-day-of-week": _by_day_of_week,
    "to-parquet": _to_parquet,
    "from-parquet": _from_parquet,
}


def test_every_duckdb_block_has_a_check_and_every_check_a_block() -> None:
    names = [name for name, _ in doc_blocks()]
    assert len(names) == len(set(names)), "two blocks share a name"
    assert set(names) == set(CHECKS), (
        f"blocks without a check: {set(names) - set(CHECKS)}; "
        f"checks without a block: {set(CHECKS) - set(names)}"
    )


@pytest.mark.parametrize("name", list(CHECKS))
def test_documented_query(demo: Demo, name: str) -> None:
    assert name in demo.results, f"docs/querying.md has no '-- duckdb: {name}' block"
    CHECKS[name](demo, demo.results[name])


def test_the_events_view_holds_exactly_the_extracted_events(demo: Demo) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo.root)
        with duckdb.connect() as con:
            con.sql(dict(doc_blocks())["events"])
            ((total, distinct),) = con.sql(
                "SELECT count(*), count(DISTINCT uuid) FROM events"
            ).fetchall()
            manifests_read = con.sql(
                "SELECT count(*) FROM events WHERE event_type IS NULL"
            ).fetchall()
    assert total == distinct == demo.events
    assert manifests_read == [(0,)]  # the glob never picks up _manifest.json
