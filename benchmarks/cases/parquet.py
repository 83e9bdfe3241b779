"""The ``parquet`` benchmark case: ``--format parquet`` beside NDJSON on the same data.

Two parts, each with the NDJSON extraction of the same data as its reference in the same run:

- throughput: the throughput case's day (24 h x 60,000 events, 3 partitions per hour, ~2.6 GB
  NDJSON), concurrency 4; speed in MB/s of NDJSON converted (the bytes the ``ndjson`` format
  would have written), target >= 300 MB/s;
- memory: one ~1 GB hour (560,000 events, 3 partitions), concurrency 4; target peak RSS
  <= 300 MB.

A Parquet run is valid when it exits 0 and its summary counts every event of the data (one row
per line; the tests check the rows themselves).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from ..common import WORK_DIR, DataSpec, hours
from ..measure import DAY, Bench, Expected, Server, generate
from ..results import MB, MIB, CaseResult, Row, join_notes, target

NAME = "parquet"
ORDER = 60


@dataclass(frozen=True, slots=True)
class Params:
    """What ``--quick`` scales down."""

    hours: int
    events: int
    big_hour_events: int
    repeats: int


FULL = Params(hours=24, events=60_000, big_hour_events=560_000, repeats=1)
QUICK = Params(hours=2, events=20_000, big_hour_events=56_000, repeats=1)


def _parquet_run(
    bench: Bench,
    label: str,
    server: Server,
    first: datetime,
    last: datetime,
    expected: Expected,
) -> dict[str, Any]:
    run = bench.extract(
        NAME,
        label,
        server,
        first=first,
        last=last,
        concurrency=4,
        expected=expected,
        args=["--format", "parquet"],
    )
    # the generic check compares .json bytes written; a Parquet run writes none
    problems = [p for p in (run.get("problem") or "").split("; ") if p and "bytes written" not in p]
    if run.get("exit_code") != 0:
        problems.append(f"exit code {run.get('exit_code')}")
    if run.get("events") != expected.events:
        problems.append(f"{run.get('events')} rows, {expected.events} expected")
    run["valid"] = not problems
    run["problem"] = "; ".join(dict.fromkeys(problems))
    run["bytes_written"] = expected.ndjson_bytes  # NDJSON-equivalent: what was converted
    return run


def _pair(
    bench: Bench,
    tag: str,
    server: Server,
    first: datetime,
    last: datetime,
    expected: Expected,
    repeats: int,
) -> tuple[Row, Row]:
    """(NDJSON row, Parquet row), taking turns repeat after repeat."""
    ndjson: list[dict[str, Any]] = []
    parquet: list[dict[str, Any]] = []
    for _ in range(repeats):
        ndjson.append(
            bench.extract(
                NAME, f"{tag}-ndjson", server, first=first, last=last, concurrency=4,
                expected=expected,
            )
        )  # fmt: skip
        parquet.append(_parquet_run(bench, f"{tag}-parquet", server, first, last, expected))
    size = f"{expected.ndjson_bytes / MB:,.0f} MB NDJSON"
    ref = bench.row(f"{tag}: ndjson c=4 ({size})", "async-amp", ndjson, "the reference")
    row = bench.row(
        f"{tag}: parquet c=4 ({size})", "async-amp", parquet, "MB/s of NDJSON converted"
    )
    if ref.wall_s and row.wall_s and ref.cpu_s and row.cpu_s:
        row.note = join_notes(
            row.note,
            f"{row.wall_s / ref.wall_s:.2f}x NDJSON's wall, {row.cpu_s / ref.cpu_s:.2f}x its CPU",
        )
    return ref, row


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    result = CaseResult(
        NAME,
        f"Parquet: {p.hours} h x {p.events:,} events, and one {p.big_hour_events:,}-event hour, "
        "against NDJSON of the same data",
        {"hours": p.hours, "events": p.events, "big_hour_events": p.big_hour_events},
    )
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.hours)
    first, last = hour_list[0], hour_list[-1]
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    result.params["expected"] = asdict(expected)
    with Server({"data": spec.to_json(), "zip_cache_bytes": 4 * 1024**3}, WORK_DIR / NAME) as s:
        _, result.warm_s = s.warm([(h, h) for h in hour_list])
        ref, fast = _pair(bench, "day", s, first, last, expected, p.repeats)
    result.rows += [ref, fast]

    hour = DAY + timedelta(hours=12)
    big = DataSpec.one_hour(hour, p.big_hour_events)
    big_expected = generate(big, [hour])
    result.generation_s += big_expected.generation_s
    with Server({"data": big.to_json()}, WORK_DIR / NAME) as s:
        _, warm_s = s.warm([(hour, hour)])
        result.warm_s += warm_s
        mem_ref, mem = _pair(bench, "big hour", s, hour, hour, big_expected, 1)
    result.rows += [mem_ref, mem]

    if fast.valid and fast.mb_per_s:
        result.headline.append(
            f"Parquet converts {fast.mb_per_s:.0f} MB/s of NDJSON end to end "
            f"(NDJSON output {ref.mb_per_s or 0:.0f} MB/s)"
        )
    result.targets.append(
        target(
            "parquet: throughput",
            ">= 300 MB/s of NDJSON converted, 1-day local run",
            f"{fast.mb_per_s or 0:.0f} MB/s",
            bool(fast.valid and (fast.mb_per_s or 0) >= 300),
        )
    )
    if mem.peak_rss:
        result.targets.append(
            target(
                "parquet: memory, 1 GB hour",
                "<= 300 MB (3e8 bytes) peak RSS",
                f"{mem.peak_rss / MB:.0f} MB ({mem.peak_rss / MIB:.0f} MiB; NDJSON "
                f"{(mem_ref.peak_rss or 0) / MB:.0f} MB)",
                bool(mem.valid and mem.peak_rss <= 300 * MB),
            )
        )
    return result
