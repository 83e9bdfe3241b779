"""The report as a person sees it, in real headless Chromium, checked against DuckDB.

The lake (``report_lake``) is extracted from the simulator with every hour state in it; the
page is rendered from it and opened from a file in the distribution's Chromium, driven over
the DevTools protocol (``tools.chromium``). Expected numbers come from DuckDB
queries over the same stored files, not from the report's own code.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest

from async_amp.config import ReportConfig
from async_amp.reports import render_html
from tools.chromium import Chromium

from .report_lake import (
    DROP,
    FAILED,
    FIELD_FROM,
    HOURS,
    MISSING,
    NEWEST,
    PROPERTY_FROM,
    QUIET,
    Lake,
    shared_lake,
)

PAGE_VIEWS = ("[Amplitude] Page Viewed", "Page Viewed", "Blog Post Viewed", "page_view", "Pageview")


@pytest.fixture(scope="module")
def lake() -> Lake:
    return shared_lake()


@pytest.fixture(scope="module")
def seen(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Open the page (and a phone-sized copy, and one with page views renamed) in Chromium
    once, and collect what a person sees."""
    folder = tmp_path_factory.mktemp("page")
    page_file = folder / "report.html"
    page_file.write_text(render_html(lake.report), encoding="utf-8")
    absent = folder / "absent.html"
    renamed = ReportConfig(page_view_events=("No Such Event",))
    absent.write_text(render_html(lake.build(renamed)), encoding="utf-8")
    script = """(() => {
        const cells = [...document.querySelectorAll('#calendar rect.cell')];
        const cell = (h) => document.querySelector(`#calendar rect[data-hour="${h}"]`);
        const info = (h) => ({state: cell(h).dataset.state, title: cell(h).textContent,
                              fill: getComputedStyle(cell(h)).fill});
        const first = document.querySelector('#blog tr:nth-child(2)');
        return {
            cells: cells.length,
            states: cells.reduce((m, c) => (m[c.dataset.state] = (m[c.dataset.state] || 0) + 1, m), {}),
            missing: info('%(missing)s'), failed: info('%(failed)s'), quiet: info('%(quiet)s'),
            complete: info('%(complete)s'),
            topTitle: first.querySelector('td.post b').innerText,
            topPath: first.querySelector('td.post .note').innerText,
            topViews: first.querySelector('td.views').innerText,
            topVisitors: first.children[3].innerText,
            leadDays: document.querySelector('#leads tr:nth-child(2)').children[4].innerText,
            leadUser: document.querySelector('#leads tr:nth-child(2) code').innerText,
            drops: document.querySelector('#drops').innerText,
            drift: document.querySelector('#drift').innerText,
            dups: document.querySelector('#dups').innerText,
            extra: document.querySelector('#extra').innerText,
            visitors: document.querySelector('#visitors').innerText,
            newest: document.querySelector('#newest').innerText,
            text: document.body.innerText,
        };
    })()"""
    for name, hour in (
        ("missing", MISSING),
        ("failed", FAILED),
        ("quiet", QUIET),
        ("complete", DROP),
    ):
        script = script.replace(f"%({name})s", f"{hour:%Y-%m-%dT%H}")

    async def look() -> dict[str, Any]:
        async with Chromium.open(page_file.resolve().as_uri()) as page:
            found = await page.evaluate(script)
            found["requests"] = list(page.requests)
            found["url"] = page_file.resolve().as_uri()
            await page.send("Emulation.setEmulatedMedia", media="print")
            found["print_avoid"] = await page.evaluate(
                "[...document.querySelectorAll('section.panel')]"
                ".map(s => getComputedStyle(s).breakInside)"
            )
            pdf = await page.send("Page.printToPDF", printBackground=True)
            found["pdf_pages"] = len(
                re.findall(rb"/Type\s*/Page[^s]", base64.b64decode(pdf["data"]))
            )
            await page.send("Emulation.setEmulatedMedia", media="")
            await page.send(
                "Emulation.setDeviceMetricsOverride",
                width=390,
                height=844,
                deviceScaleFactor=2,
                mobile=True,
            )
            found["phone"] = await page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            await page.goto(absent.resolve().as_uri())
            found["absent"] = await page.evaluate(
                "[...document.querySelectorAll('.absent')].map(e => e.innerText)"
            )
            found["absent_requests"] = list(page.requests)
            return found

    yield anyio.run(look)


def _query(lake: Lake, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        return con.execute(sql.replace("{rows}", f"({lake.read_sql()})")).fetchall()


def test_heatmap_has_one_cell_per_hour_in_range(seen: dict[str, Any]) -> None:
    assert seen["cells"] == HOURS == 8 * 24
    assert seen["states"] == {
        "complete": HOURS - 3 - (23 - NEWEST.hour),
        "empty": 1,
        "missing": 1,
        "failed": 1,
        "not_available": 23 - NEWEST.hour,  # newer than the availability lag at NOW
    }


def test_missing_failed_and_empty_hours_are_shown_as_such(seen: dict[str, Any]) -> None:
    assert seen["missing"]["state"] == "missing"
    assert "missing (no manifest: run extract)" in seen["missing"]["title"]
    assert seen["failed"]["state"] == "failed"
    assert "unreadable manifest" in seen["failed"]["title"]
    assert seen["quiet"]["state"] == "empty"
    assert "0 events" in seen["quiet"]["title"]
    assert seen["complete"]["state"] == "complete"
    assert "2 events, 1 attempt" in seen["complete"]["title"]
    # the colour a person sees differs between the states
    assert len({seen[k]["fill"] for k in ("missing", "failed", "quiet", "complete")}) == 4


def test_top_blog_post_matches_duckdb(lake: Lake, seen: dict[str, Any]) -> None:
    names = ", ".join(f"'{e}'" for e in PAGE_VIEWS)
    (path, title, views, visitors), *_ = _query(
        lake,
        f"""SELECT event_properties.page_path AS path, any_value(event_properties.blog_post_title),
               count(*) AS views, count(DISTINCT device_id)
        FROM {{rows}} WHERE event_type IN ({names}) AND starts_with(event_properties.page_path, '/blog/')
        GROUP BY path ORDER BY views DESC, path LIMIT 1""",
    )
    assert seen["topPath"] == path
    assert seen["topTitle"] == title
    assert seen["topViews"] == f"{views:,}"
    assert seen["topVisitors"] == f"{visitors:,}"


def test_latest_identified_user_and_their_days_match_duckdb(
    lake: Lake, seen: dict[str, Any]
) -> None:
    """Over eight days, so the per-day rows have been folded once (every seven days)."""
    ((user, days),) = _query(
        lake,
        "SELECT user_id, count(DISTINCT date) FROM {rows} WHERE user_id IS NOT NULL "
        "GROUP BY user_id ORDER BY max(event_time) DESC, user_id LIMIT 1",
    )
    assert seen["leadUser"] == user
    assert seen["leadDays"] == f"{days:,}"


def test_visitors_duplicates_and_extra_match_duckdb(lake: Lake, seen: dict[str, Any]) -> None:
    ((visitors, rows, dups, extra),) = _query(
        lake,
        "SELECT count(DISTINCT device_id), count(*), count(*) - count(DISTINCT (date, uuid)), "
        "count(app_build) FROM {rows}",
    )
    assert seen["visitors"] == f"{visitors:,}"
    assert lake.report.rows_read == rows
    assert seen["dups"] == f"{dups:,}" and dups > 0
    assert seen["extra"] == f"{extra:,}" and extra > 0


def test_suspicious_drop_drift_and_freshness_are_shown(seen: dict[str, Any]) -> None:
    assert f"{DROP:%Y-%m-%d %H}:00" in seen["drops"]
    assert seen["drops"].count("\n") == 1  # the header and the one flagged hour
    assert f"{PROPERTY_FROM:%Y-%m-%d}\tevent property\texperiment_variant" in seen["drift"]
    assert f"{FIELD_FROM:%Y-%m-%d}\ttop-level field\tapp_build" in seen["drift"]
    assert seen["newest"] == f"{NEWEST:%Y-%m-%d %H}:00 UTC"


def test_no_request_leaves_the_page(seen: dict[str, Any]) -> None:
    assert seen["requests"] == [seen["url"]]  # the file itself, and nothing else
    assert len(seen["absent_requests"]) == 2  # both files, nothing else


def test_the_request_log_would_catch_a_fetch(tmp_path: Path) -> None:
    """The check above can fail: a page that loads an image is caught."""
    page_file = tmp_path / "leaky.html"
    page_file.write_text('<img src="http://127.0.0.1:9/pixel.png">', encoding="utf-8")

    async def look() -> list[str]:
        async with Chromium.open(page_file.resolve().as_uri()) as page:
            return list(page.requests)

    assert anyio.run(look)[1:] == ["http://127.0.0.1:9/pixel.png"]


def test_page_fits_a_phone_screen(seen: dict[str, Any]) -> None:
    scroll_width, client_width = seen["phone"]
    assert scroll_width <= client_width


def test_panels_without_their_events_say_so(seen: dict[str, Any]) -> None:
    said = "\n".join(seen["absent"])
    assert (
        said.count('No page-view events in this range (looked for event types "No Such Event"') == 2
    )
    assert "0 page views" not in said


def test_page_prints_with_panels_kept_whole(seen: dict[str, Any]) -> None:
    assert seen["print_avoid"] and set(seen["print_avoid"]) == {"avoid"}
    assert seen["pdf_pages"] >= 2
