"""The ``throughput`` benchmark case."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..common import WORK_DIR, DataSpec, hours
from ..measure import DAY, Bench, Server, generate
from ..profiling import profile_run
from ..results import CaseResult, find_row, speedups, target

NAME = "throughput"
ORDER = 10


@dataclass(frozen=True, slots=True)
class Params:
    """What ``--quick`` scales down."""

    hours: int
    events: int
    concurrency: tuple[int, ...]
    fsync_row: bool
    repeats: int


FULL = Params(
    hours=24,
    events=60_000,  # x 24 = 1.44 M events, ~2.6 GB NDJSON, 3 partitions per hour
    concurrency=(1, 4),
    fsync_row=True,
    repeats=5,
)
QUICK = Params(
    hours=2,
    events=20_000,
    concurrency=(1, 4),
    fsync_row=False,
    repeats=1,
)


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.hours)
    first, last = hour_list[0], hour_list[-1]
    result = CaseResult(
        "throughput",
        f"Throughput: {p.hours} h x {p.events:,} events, 3 partitions/h, no latency",
        {"data": spec.to_json(), "hours": p.hours, "repeats": p.repeats},
    )
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    result.params["expected"] = asdict(expected)
    server_spec = {"data": spec.to_json(), "zip_cache_bytes": 4 * 1024**3}
    with Server(server_spec, WORK_DIR / "throughput") as server:
        _, result.warm_s = server.warm(
            [(h, h) for h in hour_list] + [(first, last)]  # async-amp's windows and the baseline's
        )
        # Variants take turns, repeat after repeat, so a burst of load from elsewhere on a
        # shared machine lands on all of them rather than on one.
        common: dict[str, Any] = {"first": first, "last": last, "expected": expected}
        variants: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = []
        for c in p.concurrency:
            variants.append(
                (
                    f"async-amp c={c}",
                    "async-amp",
                    "",
                    functools.partial(
                        bench.extract, "throughput", f"c{c}", server, concurrency=c, **common
                    ),
                )
            )
        if bench.window_flag() and not bench.probe(["--window-hours", "auto"]):
            # an extra row for the lead: auto windows on a busy day (the default is hourly)
            auto = functools.partial(
                bench.extract,
                "throughput",
                "auto",
                server,
                concurrency=4,
                args=["--window-hours", "auto"],
                **common,
            )
            auto()  # unmeasured: the server builds and caches the windows auto asks for
            note = "after one unmeasured run that builds its windows' ZIPs"
            variants.append(("async-amp c=4 --window-hours auto", "async-amp", note, auto))
        if p.fsync_row:
            fsync = functools.partial(
                bench.extract, "throughput", "fsync", server, concurrency=4, fsync=True, **common
            )
            variants.append(("async-amp c=4 fsync=on", "async-amp", "fsync: the default", fsync))
        base = functools.partial(bench.baseline, "throughput", server, **common)
        variants.append(("baseline (1 day/request)", "baseline", "", base))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in variants}
        for _ in range(p.repeats):
            for name, _tool, _note, fn in variants:
                runs[name].append(fn())
        for name, tool, note, _fn in variants:
            result.rows.append(bench.row(name, tool, runs[name], note))
        if bench.profile:
            result.params["profile"] = profile_run(bench, server, first, last, expected)
    result.server_cpu_total_s = server.total_cpu_s
    speedups(result.rows)

    best = max(
        (r for r in result.rows if r.tool == "async-amp" and "fsync" not in r.variant and r.valid),
        key=lambda r: r.mb_per_s or 0,
        default=None,
    )
    base = find_row(result.rows, "baseline (1 day/request)")
    if best is not None and base is not None and best.wall_s and base.wall_s:
        result.headline.append(
            f"{best.variant}: {best.speedup:.1f}x the baseline's speed, "
            f"{(best.cpu_s or 0) / (base.cpu_s or 1):.2f}x its CPU, "
            f"{(best.peak_rss or 0) / (base.peak_rss or 1):.2f}x its peak RSS"
        )
        gbps = (best.mb_per_s or 0) / 1000
        result.targets.append(
            target(
                "throughput",
                ">= 1.0 GB/s NDJSON written, 1-day local run",
                f"{gbps:.2f} GB/s ({best.variant})",
                gbps >= 1.0,
            )
        )
    return result
