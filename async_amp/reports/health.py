"""The extraction-health panels: calendar heatmap, events per hour, freshness, drift, quality."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

from ..hours import HOUR
from .model import HourCell, Report
from .svg import bars, line

__all__ = [
    "CSS",
    "STATE_LABELS",
    "WEEKDAYS",
    "absent",
    "calendar",
    "drift",
    "events_chart",
    "freshness",
    "quality",
]

STATE_LABELS = {
    "complete": "complete",
    "empty": "empty (Amplitude had no data)",
    "missing": "missing (no manifest: run extract)",
    "failed": "failed (unreadable manifest or files without one)",
    "not_available": "not yet available",
}
_KINDS = {"field": "top-level field", "property": "event property"}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

CSS = """
:root{--ok:#2e9d5b;--empty:#b9d8c4;--missing:#d9363e;--failed:#7a1fa2;--later:#e4e4e4;
--ink:#1d232b;--mute:#5b6673;--line:#2f6fb3;--s0:#2f6fb3;--s1:#9cc3ea;--warn:#e08a00}
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);margin:0;background:#f6f7f9}main{max-width:1100px;margin:0 auto;padding:12px}
h1{font-size:1.4em;margin:.4em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:2px solid
#d8dde3;padding-bottom:.2em}h3{font-size:1em;margin:.2em 0 .4em}
section.panel{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:10px 12px;
margin:10px 0;break-inside:avoid;page-break-inside:avoid;overflow-x:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px}
.grid section.panel{margin:0}.mute{color:var(--mute)}.note{color:var(--mute);font-size:.9em}
.chips{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}.chip{padding:2px 8px;border-radius:10px;
background:#eef1f4;font-size:.9em}.chip b{font-variant-numeric:tabular-nums}
table{border-collapse:collapse;width:100%;font-size:.92em}td,th{padding:3px 6px;text-align:left;
border-bottom:1px solid #eceff2;vertical-align:middle}th{font-weight:600;color:var(--mute)}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
#quality td:first-child,#drops td:first-child,#drift td:first-child{white-space:nowrap}
table.rank .name{width:45%}table.rank .barcell{width:30%}
.bar{display:block;height:10px;background:var(--s0);border-radius:2px;
print-color-adjust:exact;-webkit-print-color-adjust:exact}
svg{display:block;max-width:100%;height:auto}svg.chart{width:100%;height:160px}
svg.chart polyline{fill:none;stroke:var(--line);stroke-width:1.5;vector-effect:non-scaling-stroke}
svg .axis{stroke:#999;vector-effect:non-scaling-stroke}
figure.plot{margin:0}.ymax{font-size:12px;color:var(--mute)}
.xaxis{position:relative;height:1.4em;font-size:12px;color:var(--mute);margin-top:2px}
.xaxis span{position:absolute;top:0;white-space:nowrap}
.scale{display:flex;align-items:center;gap:6px;font-size:12px;color:var(--mute);margin:4px 0}
.scale i{display:inline-block;width:140px;height:10px;border-radius:2px;
background:linear-gradient(90deg,rgba(47,111,179,.06),rgba(47,111,179,1));
print-color-adjust:exact;-webkit-print-color-adjust:exact}
svg .gap{fill:var(--missing)}svg .drop{fill:none;stroke:var(--warn);stroke-width:2;
vector-effect:non-scaling-stroke}svg .s0{fill:var(--s0)}svg .s1{fill:var(--s1)}
svg.spark polyline{fill:none;stroke:var(--line);stroke-width:1.5}
.cal text{font-size:11px;fill:var(--mute)}svg.wide{width:100%;max-width:720px}
.cell{stroke:#fff;stroke-width:1}
.s-complete{fill:var(--ok)}.s-empty{fill:var(--empty)}.s-missing{fill:var(--missing)}
.s-failed{fill:var(--failed)}.s-not_available{fill:var(--later)}
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:.85em;margin:4px 0}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;
vertical-align:-1px;print-color-adjust:exact;-webkit-print-color-adjust:exact}
.absent{padding:10px;background:#fff8e6;border:1px dashed var(--warn);border-radius:4px}
.wk rect{stroke:#fff;stroke-width:1}.bad{color:var(--missing);font-weight:600}
@media (max-width:600px){body{font-size:14px}main{padding:6px}td,th{padding:2px 4px}}
@media print{body{background:#fff}main{max-width:none}section.panel{border-color:#bbb}
*{print-color-adjust:exact;-webkit-print-color-adjust:exact}}
"""


def _t(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _ago(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours < 0:
        return "in the future"
    days, rest = divmod(hours, 24)
    return (f"{days} d {rest} h" if days else f"{rest} h") + " ago"


def absent(text: str) -> str:
    return f'<p class="absent" data-absent="1">{escape(text)}</p>'


def _cell_title(cell: HourCell) -> str:
    text = f"{cell.hour:%Y-%m-%d %H}:00 UTC: {STATE_LABELS[cell.state]}"
    if cell.state in ("complete", "empty"):
        attempts = "attempt" if cell.attempts == 1 else "attempts"
        text += f", {cell.events:,} events, {cell.attempts} {attempts}"
    if cell.detail:
        text += f" ({cell.detail})"
    return text


def calendar(report: Report) -> str:
    """Days down, hours across: one ``rect.cell`` per hour of the range."""
    size, left, top = 22, 74, 14
    days = sorted({c.hour.date() for c in report.hours})
    row = {d: i for i, d in enumerate(days)}
    parts = [f'<text x="{left + h * size + 2}" y="10">{h:02d}</text>' for h in range(0, 24, 3)]
    for day, i in row.items():
        parts.append(f'<text x="0" y="{top + i * size + 11}">{day:%a %m-%d}</text>')
    for cell in report.hours:
        x = left + cell.hour.hour * size
        y = top + row[cell.hour.date()] * size
        parts.append(
            f'<rect class="cell s-{cell.state}" data-hour="{cell.hour:%Y-%m-%dT%H}" '
            f'data-state="{cell.state}" x="{x}" y="{y}" width="{size}" height="{size}">'
            f"<title>{escape(_cell_title(cell))}</title></rect>"
        )
    width, height = left + 24 * size + 2, top + len(days) * size + 2
    # never drawn narrower than its own units: its 11px labels stay 11px on a phone (the
    # panel scrolls sideways instead)
    legend = "".join(
        f'<span><i class="s-{s}" style="background:var(--{v})"></i>{escape(label)}: '
        f'<b data-count="{s}">{report.count(s):,}</b></span>'  # type: ignore[arg-type]
        for s, label, v in (
            ("complete", "complete", "ok"),
            ("empty", "empty", "empty"),
            ("missing", "missing", "missing"),
            ("failed", "failed", "failed"),
            ("not_available", "not yet available", "later"),
        )
    )
    return (
        f'<div class="legend">{legend}</div><svg class="cal wide" id="calendar" '
        f'style="min-width:{width}px" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="extraction state per hour">{"".join(parts)}</svg>'
    )


def events_chart(report: Report) -> str:
    cells = report.hours
    index = {c.hour: i for i, c in enumerate(cells)}
    values = [c.events if c.state in ("complete", "empty") else None for c in cells]
    gaps = {i: _cell_title(c) for i, c in enumerate(cells) if c.state in ("missing", "failed")}
    marks = {
        index[d.hour]: f"{d.hour:%Y-%m-%d %H}:00 UTC: {d.events:,} events, "
        f"{d.events / d.baseline:.0%} of the usual {d.baseline:,.0f} (same hour, earlier weeks)"
        for d in report.drops
    }
    labels = [f"{c.hour:%b %d %H}:00" for c in cells]
    chart = line(
        values,
        marks=marks,
        gaps=gaps,
        label="events per hour",
        labels=labels,
        unit="events in an hour (scale top)",
    )
    if report.drops:
        rows = "".join(
            f"<tr><td>{d.hour:%Y-%m-%d %H}:00</td><td class='num'>{d.events:,}</td>"
            f"<td class='num'>{d.baseline:,.0f}</td>"
            f"<td class='num'>{d.events / d.baseline:.0%}</td></tr>"
            for d in report.drops[:50]
        )
        table = (
            f'<table id="drops"><tr><th>suspicious hour (UTC)</th><th class="num">events</th>'
            f'<th class="num">usual</th><th class="num">share</th></tr>{rows}</table>'
        )
    else:
        table = (
            '<p class="note" id="drops">No suspicious drops: no hour fell below '
            f"{report.settings.drop_ratio:.0%} of the same hour in the previous weeks "
            "(needs at least one earlier week in the range).</p>"
        )
    return (
        f"{chart}<p class='note'>Red ticks: missing or failed hours. Orange circles: whole "
        f"archives far below the same hour of earlier weeks.</p>{table}"
    )


def freshness(report: Report) -> str:
    newest = report.newest_complete
    available = report.now.replace(minute=0, second=0, microsecond=0) - report.lag_hours * HOUR
    if newest is None:
        return absent("No hour of the range has been extracted yet.")
    behind = available - HOUR - newest
    lag = (
        ""
        if behind <= timedelta(0)
        else f' <span class="bad">{int(behind / HOUR):,} hours behind</span>'
    )
    return (
        f"<p>Newest extracted hour: <b id='newest'>{newest:%Y-%m-%d %H}:00 UTC</b> "
        f"(ended {_ago(report.now - newest - HOUR)}).{lag}</p><p class='note'>Now: "
        f"{_t(report.now)}. Amplitude makes an hour exportable about {report.lag_hours} h after "
        f"it ends (availability_lag_hours), so hours up to {available - HOUR:%Y-%m-%d %H}:00 "
        "could be there.</p>"
    )


def drift(report: Report) -> str:
    if report.basis == "models":
        return absent(
            "This report was built from the model tables, which keep no schema: schema drift "
            "is read from the events (async-amp report --from events)."
        )
    if not report.rows_read:
        return absent("No events were read, so there is no schema to compare.")
    if not report.new_keys:
        return (
            f"<p class='note'>No new fields: all {report.baseline_keys} top-level fields and "
            "property keys were there from the first day with data.</p>"
        )
    rows = "".join(
        f"<tr><td>{k.day:%Y-%m-%d}</td><td>{_KINDS[k.kind]}</td>"
        f"<td><code>{escape(k.name)}</code></td></tr>"
        for k in report.new_keys[:200]
    )
    return (
        f"<table id='drift'><tr><th>first seen</th><th>kind</th><th>name</th></tr>{rows}</table>"
        f"<p class='note'>{report.baseline_keys} fields and keys were there from the first day.</p>"
    )


def quality(report: Report) -> str:
    if not report.quality_counted:
        return absent(
            "Built from the model tables, and the manifests of this output (NDJSON) do not "
            "count duplicates and _extra rows: async-amp report --from events reads them."
        )
    days = report.days
    dups, extra = sum(d.duplicates for d in days), sum(d.extra_rows for d in days)
    chart = bars(
        [
            ("duplicate uuids", [d.duplicates for d in days]),
            ("rows with _extra", [d.extra_rows for d in days]),
        ],
        [f"{d.day:%Y-%m-%d}" for d in days],
        label="duplicates and _extra rows per day",
        unit="rows in a day (scale top)",
        height=90,
    )
    rows = "".join(
        f"<tr><td>{d.day:%Y-%m-%d}</td><td class='num'>{d.events:,}</td>"
        f"<td class='num'>{d.duplicates:,}</td><td class='num'>{d.extra_rows:,}</td></tr>"
        for d in days
        if d.duplicates or d.extra_rows
    )
    table = (
        f"<table id='quality'><tr><th>day</th><th class='num'>events</th><th class='num'>"
        f"duplicate uuids</th><th class='num'>rows with _extra</th></tr>{rows}</table>"
        if rows
        else ""
    )
    return (
        f"<div class='chips'><span class='chip'>duplicate uuids <b id='dups'>{dups:,}</b></span>"
        f"<span class='chip'>rows with fields outside the schema (_extra) <b id='extra'>{extra:,}"
        f"</b></span></div>{chart if rows else ''}{table}"
    )
