"""The whole page: one HTML document with inline CSS and SVG (no script, nothing to fetch)."""

from __future__ import annotations

from html import escape

from .health import CSS, calendar, drift, events_chart, freshness, quality
from .model import Report
from .panels import audience, blog, model_days, when

__all__ = ["render_html"]


_BASIS = {
    "events": ", from the events",
    "models": ": hours from their manifests, everything else from the model tables",
}


def _panel(anchor: str, title: str, body: str) -> str:
    return f'<section class="panel" id="{anchor}"><h3>{escape(title)}</h3>{body}</section>'


def render_html(report: Report) -> str:
    """The report as a complete HTML document (UTF-8 text)."""
    title = f"async-amp report: {report.project}, {report.first:%Y-%m-%d} to {report.last:%Y-%m-%d}"
    hours = len(report.hours)
    read = (
        f"events (manifests) <b id='rows'>{sum(c.events for c in report.hours):,}</b>"
        if report.basis == "models"
        else f"events read <b id='rows'>{report.rows_read:,}</b>"
    )
    summary = (
        f"<div class='chips'><span class='chip'>hours <b id='hours'>{hours:,}</b></span>"
        f"<span class='chip'>{read}</span>"
        f"<span class='chip'>page views <b>{report.page_views:,}</b></span></div>"
    )
    body = "".join(
        (
            f"<h1>{escape(report.project)}: {report.first:%Y-%m-%d %H}:00 to "
            f"{report.last:%Y-%m-%d %H}:00 UTC</h1><p class='note'>Read from "
            f"{escape(report.where)} at {report.now:%Y-%m-%d %H:%M} UTC by async-amp"
            f"{_BASIS[report.basis]}.</p>",
            summary,
            "<h2>Extraction health</h2>",
            _panel(
                "health-calendar",
                "Every hour of the range (days down, UTC hours across)",
                calendar(report),
            ),
            _panel("health-events", "Events per hour", events_chart(report)),
            "<div class='grid'>",
            _panel("health-freshness", "Freshness", freshness(report)),
            _panel("health-quality", "Duplicates and _extra rows", quality(report)),
            "</div>",
            _panel(
                "health-drift",
                "Schema drift: fields and property keys seen for the first time",
                drift(report),
            ),
            "<h2>Day by day, in the project's time zone</h2>",
            _panel("model-days-panel", "Days (model tables)", model_days(report)),
            "<h2>Who is viewing the website</h2>",
            _panel("audience", "Visitors", audience(report)),
            "<h2>Which blog posts deliver the most engagement</h2>",
            _panel("blog-posts", f"Top {report.settings.top} blog posts", blog(report)),
            "<h2>How and when people view the website</h2>",
            _panel("when", "When", when(report)),
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>{body}</main>"
        "</body></html>\n"
    )
