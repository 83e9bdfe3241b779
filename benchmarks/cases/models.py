"""The ``models`` benchmark case: building the model tables of a day against extracting it.

The throughput case's day (24 h x 60,000 events, 3 partitions per hour) is extracted as
Parquet, then ``async-amp model`` builds that local day's tables (UTC) from it; both are
measured in the same run, on the same machine. Target: the build costs at most a quarter of
the extraction's CPU. Its peak RSS is reported too (memory follows one day of slim rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..common import WORK_DIR, DataSpec, hours
from ..measure import DAY, PY, Bench, Server, fmt_hour, generate
from ..results import MB, CaseResult, target

NAME = "models"
ORDER = 65


@dataclass(frozen=True, slots=True)
class Params:
    hours: int
    events: int


FULL = Params(hours=24, events=60_000)
QUICK = Params(hours=2, events=20_000)


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    result = CaseResult(
        NAME,
        f"model tables of one day ({p.hours} h x {p.events:,} events, Parquet) against its "
        "Parquet extraction",
        {"hours": p.hours, "events": p.events},
    )
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.hours)
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    work = bench.workdir(NAME, "day")
    config = bench.config_file(work)
    out = work / "out"
    with Server({"data": spec.to_json(), "zip_cache_bytes": 4 * 1024**3}, WORK_DIR / NAME) as s:
        _, result.warm_s = s.warm([(h, h) for h in hour_list])
        extract_cmd = [
            PY, "-m", "async_amp", "extract", "--config", str(config),
            "--start", fmt_hour(hour_list[0]), "--end", fmt_hour(hour_list[-1]),
            "--output", str(out), "--concurrency", "4", "--format", "parquet",
            "--log-format", "json", "--quiet", "--log-file", str(work / "run.jsonl"),
        ]  # fmt: skip
        env = bench._extract_env(s, fsync=False, extra={})
        extraction = bench._measured(extract_cmd, env, work, s, None)
    day = DAY.date().isoformat()
    model_cmd = [
        PY, "-m", "async_amp", "model", "--config", str(config), "--start", day, "--end", day,
        "--output", str(out),
    ]  # fmt: skip
    building = bench._measured(model_cmd, env, work, None, None)
    for run_ in (extraction, building):
        run_["valid"] = run_["exit_code"] == 0
        run_["events"] = expected.events
    ref = bench.row("extract --format parquet c=4", "async-amp", [extraction], "the reference")
    row = bench.row("model, that day", "async-amp", [building], "sessions, users, pages, days")
    share = (row.cpu_s or 0) / (ref.cpu_s or 1)
    row.note = f"{row.note}; {share:.2f}x the extraction's CPU"
    result.rows += [ref, row]
    result.headline.append(
        f"model tables of the day: {row.cpu_s or 0:.1f} s CPU, {share:.2f}x the Parquet "
        f"extraction's {ref.cpu_s or 0:.1f} s; peak RSS {(row.peak_rss or 0) / MB:.0f} MB"
    )
    result.targets.append(
        target(
            "models: CPU",
            "<= 0.25x the day's Parquet extraction CPU",
            f"{share:.2f}x",
            bool(row.valid and ref.valid and share <= 0.25),
        )
    )
    extra: dict[str, Any] = {"model_stdout": building["stdout"][-2000:]}
    row.extra.update(extra)
    return result
