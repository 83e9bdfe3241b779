"""The audience, blog-post and when panels: who visits, what they read, and when."""

from __future__ import annotations

from datetime import timedelta
from html import escape
from zoneinfo import ZoneInfo

from .health import WEEKDAYS, absent
from .model import Report
from .svg import bars, hbars, sparkline

__all__ = ["audience", "blog", "model_days", "weekday_counts", "when"]


def _no_page_views(report: Report) -> str:
    names = ", ".join(f'"{e}"' for e in report.settings.page_view_events)
    return absent(
        f"No page-view events in this range (looked for event types {names}; set "
        "[report] page_view_events to the names your site sends)."
    )


def audience(report: Report) -> str:
    if report.basis == "models":
        return _audience_from_models(report)
    days = report.days
    if not any(d.visitors for d in days):
        return absent("No events with a device_id in this range: no visitors to count.")
    returning = [d.visitors - d.new_visitors for d in days]
    chart = bars(
        [
            ("new (first seen that day)", [d.new_visitors for d in days]),
            ("returning (seen on an earlier day of the range)", returning),
        ],
        [f"{d.day:%b %d}" for d in days],
        label="visitors per day, new and returning",
        unit="visitors in a day (scale top)",
    )
    total = sum(d.new_visitors for d in days)
    grid = _breakdowns(report, total)
    return (
        f"<div class='chips'><span class='chip'>distinct visitors (device_id) <b id='visitors'>"
        f"{total:,}</b></span><span class='chip'>identified users (user_id) <b>"
        f"{report.identified_total:,}</b></span></div>{chart}<p class='note'>Breakdowns count "
        "each visitor once, by the first event they sent in the range.</p>"
        f"<div class='grid'>{grid}</div>{leads(report)}"
    )


def _breakdowns(report: Report, total: int) -> str:
    panels = [
        ("Countries", report.countries),
        ("Cities", report.cities),
        ("Referrer / UTM source", report.sources),
        ("Operating system", report.oses),
        ("Browser", report.browsers),
    ]
    return "".join(
        f'<section class="panel"><h3>{escape(name)}</h3>{hbars(items, total=total)}</section>'
        for name, items in panels
    )


def _audience_from_models(report: Report) -> str:
    """Users (``amplitude_id``) of the model tables; new and returning per day are the days
    panel's, not repeated here."""
    if not report.users_total:
        return absent("No events with an amplitude_id on these days: no users to count.")
    total = sum(n for _, n in report.countries)
    return (
        f"<div class='chips'><span class='chip'>distinct users (amplitude_id) <b id='visitors'>"
        f"{report.users_total:,}</b></span><span class='chip'>identified users (user_id) <b>"
        f"{report.identified_total:,}</b></span></div><p class='note'>From the model tables, "
        "over the local days the range touches; new and returning users per day are in the "
        "days panel above. Breakdowns count each user once, by their first session.</p>"
        f"<div class='grid'>{_breakdowns(report, total)}</div>{leads(report)}"
    )


def leads(report: Report) -> str:
    if not report.leads:
        return "<h3>Identified users</h3>" + absent(
            "No events with a user_id in this range: nobody logged in or signed up."
        )
    rows = "".join(
        f"<tr><td><code>{escape(u.user_id)}</code></td><td>{escape(u.company)}</td>"
        f"<td>{escape(u.city)}{', ' if u.city and u.country else ''}{escape(u.country)}</td>"
        f"<td class='num'>{u.last_visit:%Y-%m-%d %H:%M}</td><td class='num'>{u.days:,}</td>"
        f"<td class='num'>{u.events:,}</td></tr>"
        for u in report.leads
    )
    more = report.identified_total - len(report.leads)
    tail = f"<p class='note'>{more:,} more not listed ([report] leads).</p>" if more > 0 else ""
    return (
        f"<h3>Identified users, most recent first ({report.identified_total:,})</h3>"
        "<table id='leads'><tr><th>user_id</th><th>company</th><th>where</th><th class='num'>"
        "last visit (UTC)</th><th class='num'>days</th><th class='num'>events</th></tr>"
        f"{rows}</table>{tail}"
    )


def blog(report: Report) -> str:
    prefix = report.settings.blog_prefix
    if not report.page_views:
        return _no_page_views(report)
    if not report.blog:
        return absent(
            f"No page views with a path under {prefix} in this range (set [report] "
            "blog_prefix and page_path_keys to match your site)."
        )
    rows = "".join(
        f"<tr><td class='num'>{i}</td><td class='post'><b>{escape(p.title or p.path)}</b><br>"
        f"<span class='note'>{escape(p.path)}</span></td><td class='num views'>{p.views:,}</td>"
        f"<td class='num'>{p.visitors:,}</td><td class='num'>{p.continued_share:.0%}</td>"
        f"<td>{sparkline(p.daily)}</td></tr>"
        for i, p in enumerate(report.blog, 1)
    )
    visitors = (
        "distinct amplitude_id per day, summed over the days (model table pages_daily)"
        if report.basis == "models"
        else "distinct device_id"
    )
    return (
        f"<p class='note'>{report.blog_views:,} views of pages under <code>{escape(prefix)}"
        f"</code>. Visitors: {visitors}. Went on: share of those visitors who sent "
        "another event in the same session after their first view of the post.</p>"
        "<table id='blog'><tr><th class='num'>#</th><th>post</th><th class='num'>views</th>"
        "<th class='num'>visitors</th><th class='num'>went on</th><th>views per day</th></tr>"
        f"{rows}</table>"
    )


def weekday_counts(report: Report) -> dict[int, int]:
    """How many times each ISO weekday (1 = Monday) occurs among the local days the range
    touches, in the heatmap's time zone."""
    zone = ZoneInfo(report.settings.time_zone)
    day, last = report.first.astimezone(zone).date(), report.last.astimezone(zone).date()
    found: dict[int, int] = {}
    while day <= last:
        found[day.isoweekday()] = found.get(day.isoweekday(), 0) + 1
        day += timedelta(days=1)
    return found


def _weekday_heatmap(report: Report) -> str:
    """Page views per weekday and hour, as the average over the occurrences of that weekday
    (three Sundays and two Mondays in a range are compared per day, not in total)."""
    times = weekday_counts(report)
    means = {k: n / times[k[0]] for k, n in report.weekday_hour.items() if times.get(k[0])}
    top = max(means.values(), default=0.0) or 1.0
    size, left = 18, 34
    parts = [f'<text x="{left + h * size + 3}" y="10">{h:02d}</text>' for h in range(0, 24, 3)]
    for d, name in enumerate(WEEKDAYS, 1):
        parts.append(f'<text x="0" y="{14 + (d - 1) * size + 13}">{name}</text>')
        for h in range(24):
            mean = means.get((d, h), 0.0)
            alpha = 0.06 + 0.94 * mean / top
            parts.append(
                f'<rect x="{left + h * size}" y="{14 + (d - 1) * size}" width="{size}" '
                f'height="{size}" fill="rgba(47,111,179,{alpha:.2f})" data-mean="{mean:.3f}">'
                f"<title>{name} {h:02d}:00: {mean:,.1f} page views on average "
                f"({report.weekday_hour.get((d, h), 0):,} over {times.get(d, 0)} {name})"
                "</title></rect>"
            )
    width, height = left + 24 * size, 14 + 7 * size
    return (
        f'<svg class="cal wk wide" id="weekday-hour" style="min-width:{width}px" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="page views by weekday and hour, average per day">{"".join(parts)}</svg>'
        f"<div class='scale' id='heat-scale'><span>0</span><i></i><span>{top:,.1f} page views "
        "in an hour, on average per occurrence of the weekday</span></div>"
    )


def when(report: Report) -> str:
    if not report.page_views:
        return _no_page_views(report)
    tz = escape(report.settings.time_zone)
    at = " of their session's start" if report.basis == "models" else ""
    sessions = sum(n for _, n in report.session_lengths)
    lengths = (
        hbars(report.session_lengths)
        if sessions
        else absent("No events with a session_id: session lengths cannot be measured.")
    )
    return (
        f"<h3>Page views by weekday and hour{at} ({tz})</h3>{_weekday_heatmap(report)}"
        f"<section class='panel'><h3>Session length ({sessions:,} sessions)</h3>{lengths}"
        "</section>"
    )


def model_days(report: Report) -> str:
    """The model table ``daily``: events, users, sessions per local day, final or not."""
    days = report.model_days
    if not days:
        return absent(
            "No model tables for this range: run async-amp model --start DAY --end DAY (or "
            "set [models] enabled = true) to see days in the project's time zone."
        )
    chart = bars(
        [
            ("new users", [d.new_users for d in days]),
            ("returning users", [d.active_users - d.new_users for d in days]),
        ],
        [f"{d.day:%b %d}" for d in days],
        label="active users per local day",
        unit="active users in a day (scale top)",
    )
    rows = "".join(
        f"<tr><td class='num'>{d.day:%a %m-%d}</td><td class='num'>{d.events:,}</td>"
        f"<td class='num'>{d.active_users:,}</td><td class='num'>{d.new_users:,}</td>"
        f"<td class='num'>{d.sessions:,}</td><td class='num'>{d.page_views:,}</td>"
        f"<td class='num'>{_minutes(d.avg_session_s)}</td>"
        f"<td class='{'' if d.status == 'final' else 'mute'}'>{escape(d.status)}</td></tr>"
        for d in days
    )
    return (
        f"{chart}<table id='model-days'><tr><th class='num'>day</th>"
        "<th class='num'>events</th><th class='num'>users</th><th class='num'>new</th>"
        "<th class='num'>sessions</th><th class='num'>views</th><th class='num'>"
        f"avg session</th><th>status</th></tr>{rows}</table><p class='note'>Local days of "
        f"{escape(report.model_zone)}, from the model "
        "table <code>daily</code>: events by event_time in the project's time zone, once per "
        "uuid, as Amplitude's charts count them; provisional days may still grow with late "
        "events.</p>"
    )


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:,.1f} m"
