"""Small inline-SVG charts: no script, no fonts, no network; text stays selectable and printable."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["bars", "hbars", "line", "sparkline", "x_axis"]


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def x_axis(labels: Sequence[str], *, ticks: int = 6) -> str:
    """Date labels under a chart, in HTML (never stretched with the SVG): the first, the last
    and evenly spaced ones between, each placed at its share of the width."""
    n = len(labels)
    if not n:
        return ""
    picks = sorted({round(k * (n - 1) / max(ticks - 1, 1)) for k in range(ticks)}) if n > 1 else [0]
    spans = []
    for i in picks:
        left = 100 * i / max(n - 1, 1)
        shift = "0" if i == 0 else "-100%" if i == n - 1 else "-50%"
        spans.append(
            f'<span style="left:{left:.2f}%;transform:translateX({shift})">'
            f"{escape(labels[i])}</span>"
        )
    return f'<div class="xaxis">{"".join(spans)}</div>'


def _y_top(top: int, unit: str) -> str:
    return f'<div class="ymax">{top:,} {escape(unit)}</div>'


def sparkline(values: Sequence[int], *, width: int = 120, height: int = 24) -> str:
    """A tiny line of ``values`` (one per day), scaled to its own maximum."""
    if not values:
        return ""
    top = max(values) or 1
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{_num(i * step)},{_num(height - 2 - (height - 4) * v / top)}"
        for i, v in enumerate(values)
    )
    return (
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="views per day"><polyline points="{points}"/></svg>'
    )


def line(
    values: Sequence[int | None],
    *,
    marks: dict[int, str],
    gaps: dict[int, str],
    label: str,
    labels: Sequence[str] = (),
    unit: str = "",
    height: int = 160,
) -> str:
    """``values`` left to right (``None``: nothing known); ``marks`` circle a point with a title,
    ``gaps`` draw a red tick under the axis with a title. Width follows the container; the
    scale's top and the ``labels`` (one per value) are HTML around it, never stretched."""
    n = max(len(values), 1)
    width = max(600, min(n * 2, 4000))
    known = [v for v in values if v is not None]
    top = max(known, default=0) or 1
    step = width / max(n - 1, 1)

    def y(v: int) -> float:
        return height - 14 - (height - 24) * v / top

    parts: list[str] = []
    run: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if run:
                parts.append(f'<polyline points="{" ".join(run)}"/>')
            run = []
            continue
        run.append(f"{_num(i * step)},{_num(y(v))}")
    if run:
        parts.append(f'<polyline points="{" ".join(run)}"/>')
    for i, title in gaps.items():
        parts.append(
            f'<rect class="gap" x="{_num(i * step - 1)}" y="{height - 10}" width="3" height="10">'
            f"<title>{escape(title)}</title></rect>"
        )
    for i, title in marks.items():
        v = values[i] or 0
        parts.append(
            f'<circle class="drop" cx="{_num(i * step)}" cy="{_num(y(v))}" r="5">'
            f"<title>{escape(title)}</title></circle>"
        )
    axis = f'<line class="axis" x1="0" x2="{width}" y1="{height - 14}" y2="{height - 14}"/>'
    return (
        f'<figure class="plot">{_y_top(top, unit)}<svg class="chart" viewBox="0 0 {width} '
        f'{height}" preserveAspectRatio="none" role="img" aria-label="{escape(label)}">'
        f"{axis}{''.join(parts)}</svg>{x_axis(labels)}</figure>"
    )


def bars(
    series: Sequence[tuple[str, Sequence[int]]],
    labels: Sequence[str],
    *,
    label: str,
    unit: str = "",
    height: int = 140,
) -> str:
    """Stacked vertical bars: one bar per label, one colour class per series (``s0``, ``s1``),
    with the dates under them and a legend naming the series."""
    n = max(len(labels), 1)
    width = max(300, min(n * 12, 4000))
    totals = [sum(s[1][i] for s in series) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    w = width / n
    parts: list[str] = []
    for i, name in enumerate(labels):
        base = height - 2.0
        tip = ", ".join(f"{s[0]} {s[1][i]:,}" for s in series)
        cells = []
        for k, (_, values) in enumerate(series):
            h = (height - 14) * values[i] / top
            base -= h
            cells.append(
                f'<rect class="s{k}" x="{_num(i * w + w * 0.1)}" y="{_num(base)}" '
                f'width="{_num(w * 0.8)}" height="{_num(h)}"/>'
            )
        parts.append(f"<g><title>{escape(name)}: {escape(tip)}</title>{''.join(cells)}</g>")
    legend = "".join(
        f"<span><i style='background:var(--s{k})'></i>{escape(name)}</span>"
        for k, (name, _) in enumerate(series)
    )
    return (
        f'<figure class="plot">{_y_top(top, unit)}<svg class="chart" viewBox="0 0 {width} '
        f'{height}" preserveAspectRatio="none" role="img" aria-label="{escape(label)}">'
        f'{"".join(parts)}</svg>{x_axis(labels)}<div class="legend">{legend}</div></figure>'
    )


def hbars(items: Sequence[tuple[str, int]], *, total: int | None = None) -> str:
    """A ranking as an HTML table with proportional bars (CSS widths, prints well)."""
    if not items:
        return ""
    top = max(n for _, n in items) or 1
    whole = total if total is not None else sum(n for _, n in items)
    rows = []
    for name, n in items:
        share = f"{100 * n / whole:.1f}%" if whole else ""
        rows.append(
            f'<tr><td class="name">{escape(name)}</td><td class="num">{n:,}</td>'
            f'<td class="num share">{share}</td><td class="barcell"><span class="bar" '
            f'style="width:{100 * n / top:.1f}%"></span></td></tr>'
        )
    return f'<table class="rank">{"".join(rows)}</table>'
