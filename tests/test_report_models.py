"""The report's "when" heatmap, charts and text at 1280 and 390 px, in headless Chromium.

The heatmap shows page views per weekday and hour as the average over the occurrences of
each weekday in the range (the lake's range touches two Mondays and two Tuesdays in
Europe/Berlin and one of every other day), checked against DuckDB over the stored files;
text in the calendar, the heatmap and the chart axes is measured in the DOM at phone width;
charts carry no text inside their stretched SVG, and each has its legend.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest

from async_amp.reports import render_html
from tools.chromium import Chromium

from .report_lake import SETTINGS, Lake, shared_lake

PAGE_VIEWS = ("[Amplitude] Page Viewed", "Page Viewed", "Blog Post Viewed", "page_view")
SHOTS = Path("/tmp/async-amp-report-shots")  # looked at by hand; not asserted on

_SCRIPT = """(() => {
    const size = (sel) => [...document.querySelectorAll(sel)].map(
        e => e.getBoundingClientRect().height);
    return {
        means: Object.fromEntries([...document.querySelectorAll('#weekday-hour rect')].map(
            (r, i) => [i, Number(r.dataset.mean)])),
        calText: size('#calendar text'), heatText: size('#weekday-hour text'),
        axisText: [...document.querySelectorAll('.xaxis span')].map(
            e => parseFloat(getComputedStyle(e).fontSize)),
        axisLabels: [...document.querySelectorAll('#health-events .xaxis span')].map(e => e.innerText),
        svgChartText: document.querySelectorAll('svg.chart text').length,
        scale: document.querySelector('#heat-scale').innerText,
        qualityLegend: document.querySelector('#health-quality .legend')?.innerText || '',
        width: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
    };
})()"""


@pytest.fixture(scope="module")
def lake() -> Lake:
    return shared_lake()


@pytest.fixture(scope="module")
def seen(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("page")
    page_file = folder / "report.html"
    page_file.write_text(render_html(lake.report), encoding="utf-8")

    async def look() -> dict[str, Any]:
        found: dict[str, Any] = {}
        async with Chromium.open(page_file.resolve().as_uri(), width=1280) as page:
            found["wide"] = await page.evaluate(_SCRIPT)
            wide_png = await page.screenshot(width=1280)
            await page.send(
                "Emulation.setDeviceMetricsOverride",
                width=390,
                height=844,
                deviceScaleFactor=1,
                mobile=True,
            )
            found["phone"] = await page.evaluate(_SCRIPT)
            phone_png = await page.screenshot(width=390)
        SHOTS.mkdir(exist_ok=True)
        (SHOTS / "report-1280.png").write_bytes(wide_png)
        (SHOTS / "report-390.png").write_bytes(phone_png)
        return found

    yield anyio.run(look)
    shutil.rmtree(folder, ignore_errors=True)


def test_the_heatmap_is_the_average_per_occurrence_of_each_weekday(
    lake: Lake, seen: dict[str, Any]
) -> None:
    names = ", ".join(f"'{e}'" for e in PAGE_VIEWS)
    local = f"timezone('{SETTINGS.time_zone}', event_time::TIMESTAMP::TIMESTAMPTZ)"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        counts = con.execute(
            f"SELECT isodow({local}), hour({local}), count(*) FROM ({lake.read_sql()}) "
            f"WHERE event_type IN ({names}) GROUP BY ALL"
        ).fetchall()
    # the range, 2026-11-02T00 to 2026-11-09T23 UTC, touches Berlin's 11-02 (Mon) to 11-10 (Tue)
    occurrences = {1: 2, 2: 2, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1}
    expected = {(d - 1) * 24 + h: n / occurrences[d] for d, h, n in counts}
    means = {int(k): v for k, v in seen["wide"]["means"].items()}
    assert len(means) == 7 * 24
    for cell, mean in means.items():
        assert mean == pytest.approx(expected.get(cell, 0.0), abs=1e-3), cell
    top = max(expected.values())
    assert f"{top:,.1f} page views in an hour, on average" in seen["wide"]["scale"]


@pytest.mark.parametrize("width", ["wide", "phone"])
def test_text_stays_readable_and_unstretched(seen: dict[str, Any], width: str) -> None:
    found = seen[width]
    for key in ("calText", "heatText"):
        assert found[key] and min(found[key]) >= 10, (key, min(found[key]))
    assert found["axisText"] and min(found["axisText"]) >= 11
    assert found["svgChartText"] == 0  # no text inside a chart that stretches
    scroll_width, client_width = found["width"]
    assert scroll_width <= client_width


def test_charts_have_date_axes_and_legends(seen: dict[str, Any]) -> None:
    labels = seen["wide"]["axisLabels"]
    assert labels[0] == "Nov 02 00:00" and labels[-1].startswith("Nov 09")
    assert "duplicate uuids" in seen["wide"]["qualityLegend"]
    assert "rows with _extra" in seen["wide"]["qualityLegend"]


def test_the_heatmap_follows_the_models_time_zone_unless_the_report_names_one() -> None:
    from dataclasses import replace

    from async_amp.config import Config, ModelsConfig, ReportConfig
    from async_amp.reports.api import _settings

    models = ModelsConfig(time_zone="America/New_York")
    assert _settings(Config(models=models)).time_zone == "America/New_York"
    own = Config(models=models, report=replace(ReportConfig(), time_zone="Europe/Berlin"))
    assert _settings(own).time_zone == "Europe/Berlin"
    assert _settings(Config()).time_zone == "UTC"


_MODEL_SCRIPT = """(() => ({
    sessions: document.querySelector('#when section h3').innerText,
    users: document.querySelector('#visitors').innerText,
    leads: [...document.querySelectorAll('#audience h3')].map(e => e.innerText).join('|'),
    days: document.querySelectorAll('#model-days tr').length - 1,
    basis: document.querySelector('main > p.note').innerText,
}))()"""


def test_the_report_from_the_model_tables_matches_a_plain_python_answer(
    lake: Lake, tmp_path: Path
) -> None:
    """The same lake, its model tables built: the report reads no event, and its panels'
    numbers (sessions, users, identified users, days) are the reference's over the events
    the simulator served for the hours the lake holds."""
    from dataclasses import replace
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from async_amp.config import ModelsConfig
    from async_amp.hours import hour_range
    from async_amp.models.api import model
    from async_amp.reports.api import report

    from .helpers import make_config
    from .models_reference import read_events, reference
    from .report_lake import DATASET, FAILED, FIRST, LAG, LAST, MISSING, NEWEST, NOW

    out = tmp_path / "data"
    shutil.copytree(lake.root, out)
    zone = ZoneInfo(SETTINGS.time_zone)
    config = make_config("http://127.0.0.1:9", out, availability_lag_hours=LAG)
    config = replace(config, report=SETTINGS, models=ModelsConfig(time_zone=zone.key))
    days = [FIRST.astimezone(zone).date() + timedelta(days=n) for n in range(9)]
    assert days[-1] == LAST.astimezone(zone).date()
    anyio.run(lambda: model(config, start=days[0], end=days[-1], now=NOW))
    page_file = tmp_path / "report.html"
    result = anyio.run(
        lambda: report(config, start=FIRST, end=LAST, output=page_file, now=NOW, basis="models")
    )
    assert result.report.basis == "models" and result.report.rows_read == 0

    async def look() -> dict[str, Any]:
        async with Chromium.open(page_file.resolve().as_uri(), width=1280) as page:
            found: dict[str, Any] = await page.evaluate(_MODEL_SCRIPT)
            return found

    seen = anyio.run(look)
    held = [h for h in hour_range(FIRST, NEWEST) if h not in (MISSING, FAILED)]
    lines = [
        line
        for hour in held
        for page in DATASET.pages(hour)
        for line in DATASET.ndjson(hour, page).splitlines()
    ]
    events = read_events(lines, SETTINGS, zone)
    expected = reference(events, days, dict.fromkeys(days, "provisional"))
    sessions = len(expected["sessions"])
    users = {r["amplitude_id"] for r in expected["users_daily"]}
    identified = {r["user_id"] for r in expected["users_daily"] if r["user_id"] is not None}
    assert sessions > 100 and len(identified) > 5  # the lake has something to count
    assert seen["sessions"] == f"Session length ({sessions:,} sessions)"
    assert seen["users"] == f"{len(users):,}"
    assert f"Identified users, most recent first ({len(identified):,})" in seen["leads"]
    assert seen["days"] == len(days)
    assert "from the model tables" in seen["basis"]
