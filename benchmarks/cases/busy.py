"""The ``busy`` benchmark case."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from ..common import WORK_DIR, DataSpec, hours
from ..ideal import ideal_of_log, ideal_wall, in_order_wall
from ..measure import DAY, Bench, Server, generate
from ..results import MB, CaseResult, find_row, join_notes, speedups, target, times

NAME = "busy"
ORDER = 20


@dataclass(frozen=True, slots=True)
class Params:
    """What ``--quick`` scales down."""

    hours: int
    events: int
    latency: dict[str, Any]
    concurrency: tuple[int, ...]


FULL = Params(
    hours=24,
    events=5_200,  # ~1.0 MB ZIP per hour on average (0.8-1.2 MB)
    latency={"fixed_s": 0.5, "s_per_mb": 2.0, "mb_per_s_per_conn": 20.0, "max_in_flight": 8},
    concurrency=(1, 4, 8, 16),
)
QUICK = Params(
    hours=6,
    events=1_300,  # ~250 KB ZIP per hour
    latency={"fixed_s": 0.5, "s_per_mb": 2.0, "mb_per_s_per_conn": 20.0, "max_in_flight": 8},
    concurrency=(1, 4, 8, 16),
)


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    latency = p.latency
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.3, seed=1)
    hour_list = hours(DAY, p.hours)
    first, last = hour_list[0], hour_list[-1]
    result = CaseResult(
        "busy",
        f"Busy project: {p.hours} h, Latency({', '.join(f'{k}={v}' for k, v in latency.items())})",
        {"data": spec.to_json(), "hours": p.hours, "latency": latency},
    )
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    result.params["expected"] = asdict(expected)
    with Server({"data": spec.to_json(), "latency": latency}, WORK_DIR / "busy") as server:
        hourly = [(h, h) for h in hour_list]
        sizes, warm_hourly = server.warm(hourly)
        day_sizes, warm_day = server.warm([(first, last)])
        result.warm_s = warm_hourly + warm_day
        result.params["zip_mb_per_hour"] = {
            "min": min(sizes) / MB,
            "mean": statistics.mean(sizes) / MB,
            "max": max(sizes) / MB,
        }
        result.title += (
            f", hourly ZIPs of {statistics.mean(sizes) / MB:.2f} MB on average "
            f"({min(sizes) / MB:.2f}-{max(sizes) / MB:.2f})"
        )
        for c in p.concurrency:
            run = bench.extract(
                "busy", f"c{c}", server, first=first, last=last, concurrency=c, expected=expected
            )
            row = bench.row(f"async-amp c={c}", "async-amp", [run])
            row.ideal_s = ideal_wall(sizes, c, latency)
            row.extra["in_order_s"] = in_order_wall(sizes, c, latency)
            row.note = join_notes(
                f"{times(row.wall_s, row.ideal_s)} ideal (in-order pool: "
                f"{row.extra['in_order_s']:.2f} s)",
                row.note,
            )
            if run["server"].get("status", {}).get("429"):
                row.note = join_notes(
                    row.note, f"{run['server']['status']['429']} x 429 from server"
                )
            result.rows.append(row)
        if bench.window_flag() and not bench.probe(["--window-hours", "auto"]):
            run = bench.extract(
                "busy",
                "c8-auto",
                server,
                first=first,
                last=last,
                concurrency=8,
                expected=expected,
                args=["--window-hours", "auto"],
            )
            row = bench.row("async-amp c=8 --window-hours auto", "async-amp", [run])
            row.ideal_s = ideal_of_log(run["server"]["log"], 8, latency)
            row.note = join_notes(
                "extra row: auto windows on a busy project; "
                f"{times(row.wall_s, row.ideal_s)} the ideal for the windows it chose",
                row.note,
            )
            result.rows.append(row)
        run = bench.baseline("busy", server, first=first, last=last, expected=expected)
        row = bench.row("baseline (1 day/request)", "baseline", [run])
        row.ideal_s = ideal_wall(day_sizes, 1, latency)
        row.note = join_notes(f"{times(row.wall_s, row.ideal_s)} its own ideal", row.note)
        result.rows.append(row)
    result.server_cpu_total_s = server.total_cpu_s
    speedups(result.rows)

    c8 = find_row(result.rows, "async-amp c=8")
    if c8 is not None and c8.wall_s and c8.ideal_s and c8.speedup:
        ratio = c8.wall_s / c8.ideal_s
        result.headline.append(
            f"c=8: {c8.speedup:.1f}x faster than the baseline, {ratio:.2f}x the ideal schedule"
        )
        result.targets.append(
            target("busy: vs ideal", "c=8 within 1.3x of ideal", f"{ratio:.2f}x", ratio <= 1.3)
        )
        result.targets.append(
            target(
                "busy: vs baseline",
                "c=8 >= 5x faster than baseline",
                f"{c8.speedup:.1f}x",
                c8.speedup >= 5,
            )
        )
    return result
