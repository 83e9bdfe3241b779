"""The ``quiet`` benchmark case."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..common import WORK_DIR, DataSpec, hours
from ..ideal import ideal_of_log, ideal_wall, in_order_wall, windows_of
from ..measure import WEEK, Bench, Server, generate
from ..results import CaseResult, Row, join_notes, speedups, target

NAME = "quiet"
ORDER = 30


@dataclass(frozen=True, slots=True)
class Params:
    """What ``--quick`` scales down."""

    hours: int
    events: int
    latency: dict[str, Any]
    concurrency: int


FULL = Params(
    hours=7 * 24,
    events=100,  # ~20 KB ZIP per hour on average (16-25 KB)
    latency={"fixed_s": 2.0, "s_per_mb": 2.0, "mb_per_s_per_conn": 20.0, "max_in_flight": 8},
    concurrency=4,
)
QUICK = Params(
    hours=2 * 24,
    events=100,
    latency={"fixed_s": 0.5, "s_per_mb": 2.0, "mb_per_s_per_conn": 20.0, "max_in_flight": 8},
    concurrency=4,
)


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    latency = p.latency
    c = p.concurrency
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.3, seed=2)
    hour_list = hours(WEEK, p.hours)
    first, last = hour_list[0], hour_list[-1]
    days = p.hours // 24
    result = CaseResult(
        "quiet",
        f"Quiet project: {days} days, Latency("
        f"{', '.join(f'{k}={v}' for k, v in latency.items())}), concurrency {c}",
        {"data": spec.to_json(), "hours": p.hours, "latency": latency, "concurrency": c},
    )
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    result.params["expected"] = asdict(expected)
    has_flag = bench.window_flag()
    result.params["window_hours_flag"] = has_flag
    variants: list[tuple[str, str]] = [
        ("hourly (--window-hours 1)", "1"),
        ("6-hour windows (--window-hours 6)", "6"),
        ("24-hour windows (--window-hours 24)", "24"),
        ("auto (--window-hours auto)", "auto"),
    ]
    with Server({"data": spec.to_json(), "latency": latency}, WORK_DIR / "quiet") as server:
        size_of: dict[int, list[int]] = {}
        began = time.monotonic()
        for width in (1, 6, 24):
            size_of[width], _ = server.warm(windows_of(first, p.hours, width))
        result.warm_s = time.monotonic() - began
        hourly = size_of[1]
        result.params["zip_kb_per_hour"] = {
            "min": min(hourly) / 1e3,
            "mean": statistics.mean(hourly) / 1e3,
            "max": max(hourly) / 1e3,
        }
        result.title += (
            f", hourly ZIPs of {statistics.mean(hourly) / 1e3:.1f} KB on average "
            f"({min(hourly) / 1e3:.1f}-{max(hourly) / 1e3:.1f})"
        )
        for label, value in variants:
            width = int(value) if value.isdigit() else None
            if has_flag:
                reason = bench.probe(["--window-hours", value])
                args = ["--window-hours", value]
                shown = label
            elif value == "1":  # this build always asks hour by hour: run it without the flag
                reason, args = "", []
                shown = "hourly (no flag: this build's only mode)"
            else:
                reason = "--window-hours is not in this build of async-amp"
                args, shown = [], label
            if reason:
                result.rows.append(
                    Row(
                        variant=label,
                        tool="async-amp",
                        available=False,
                        note=f"not available: {reason}",
                    )
                )
                continue
            run = bench.extract(
                "quiet",
                f"w{value}",
                server,
                first=first,
                last=last,
                concurrency=c,
                expected=expected,
                args=args,
            )
            row = bench.row(shown, "async-amp", [run])
            if width is None:
                row.ideal_s = ideal_of_log(run["server"]["log"], c, latency)
                row.note = join_notes(
                    f"{row.wall_s / row.ideal_s:.2f}x the ideal for the windows it chose",
                    row.note,
                )
            else:
                row.ideal_s = ideal_wall(size_of[width], c, latency)
                row.extra["in_order_s"] = in_order_wall(size_of[width], c, latency)
                row.note = join_notes(
                    f"{row.wall_s / row.ideal_s:.2f}x ideal (in-order pool: "
                    f"{row.extra['in_order_s']:.2f} s)",
                    row.note,
                )
            result.rows.append(row)
        run = bench.baseline("quiet", server, first=first, last=last, expected=expected)
        row = bench.row("baseline (1 day/request)", "baseline", [run])
        row.ideal_s = ideal_wall(size_of[24], 1, latency)
        row.note = join_notes(f"{row.wall_s / row.ideal_s:.2f}x its own ideal", row.note)
        result.rows.append(row)
    result.server_cpu_total_s = server.total_cpu_s
    speedups(result.rows)

    for row in result.rows:
        if row.tool != "async-amp":
            continue
        key = "auto" if "auto" in row.variant else "hourly" if "hourly" in row.variant else None
        if key is None:
            continue
        if not row.available:
            result.targets.append(
                target(f"quiet: {key}", ">= 3x faster than baseline", "not available", None)
            )
            continue
        speed = row.speedup or 0
        result.targets.append(
            target(f"quiet: {key}", ">= 3x faster than baseline", f"{speed:.2f}x", speed >= 3)
        )
        result.headline.append(f"{row.variant}: {speed:.2f}x the baseline's speed")
    return result
