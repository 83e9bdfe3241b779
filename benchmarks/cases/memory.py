"""The ``memory`` benchmark case."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..common import WORK_DIR, DataSpec, child_env, fmt_hour, measure
from ..measure import DAY, PY, Bench, Server, generate
from ..results import MB, MIB, CaseResult, Row, join_notes, target

NAME = "memory"
ORDER = 40


@dataclass(frozen=True, slots=True)
class Params:
    """What ``--quick`` scales down."""

    events: tuple[int, ...]


FULL = Params(
    events=(140_000, 560_000),  # ~250 MB and ~1 GB of NDJSON in one hour
)
QUICK = Params(
    events=(14_000, 56_000),  # ~25 MB and ~100 MB
)


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    hour = DAY + timedelta(hours=12)
    result = CaseResult(
        "memory",
        "Memory: peak RSS extracting one large hour (3 partitions), concurrency 4",
        {"hour": fmt_hour(hour), "events": list(p.events)},
    )
    floor_work = bench.workdir("memory", "floor")
    floor_cmd = [PY, "-m", "async_amp", "extract", "--config", str(bench.config_file(floor_work))]
    floor_cmd += ["--start", fmt_hour(hour), "--end", fmt_hour(hour), "--dry-run"]
    floor_cmd += ["--output", str(floor_work / "out"), "--log-format", "json", "--quiet"]
    m = measure(floor_cmd, env=child_env(), cwd=floor_work, timeout_s=120)
    result.rows.append(
        Row(
            variant="startup floor (extract --dry-run)",
            tool="async-amp",
            wall_s=m.wall_s,
            cpu_s=m.cpu_s,
            user_s=m.user_s,
            sys_s=m.sys_s,
            peak_rss=m.peak_rss,
            exit_code=m.exit_code,
            valid=m.exit_code == 0,
            note="interpreter + imports, no request",
        )
    )
    by_size: dict[int, tuple[Row, Row]] = {}
    for events in p.events:
        spec = DataSpec.one_hour(hour, events)
        expected = generate(spec, [hour])
        result.generation_s += expected.generation_s
        size = f"{expected.ndjson_bytes / MB:,.0f} MB hour"
        with Server({"data": spec.to_json()}, WORK_DIR / "memory") as server:
            _, warm_s = server.warm([(hour, hour)])
            result.warm_s += warm_s
            run = bench.extract(
                "memory",
                f"m{events}",
                server,
                first=hour,
                last=hour,
                concurrency=4,
                expected=expected,
            )
            ours = bench.row(f"async-amp, {size}", "async-amp", [run])
            run = bench.baseline(
                "memory", server, first=hour, last=hour, expected=expected, label=f"b{events}"
            )
            base = bench.row(f"baseline, {size}", "baseline", [run])
        ours.speedup = base.wall_s / ours.wall_s if base.wall_s and ours.wall_s else None
        ours.extra["ndjson_bytes"] = base.extra["ndjson_bytes"] = expected.ndjson_bytes
        ours.note = join_notes(
            f"{(ours.peak_rss or 0) / (base.peak_rss or 1):.2f}x baseline RSS", ours.note
        )
        result.rows += [ours, base]
        by_size[events] = (ours, base)
    small, big = by_size[min(p.events)][0], by_size[max(p.events)][0]
    if small.peak_rss and big.peak_rss:
        growth = (big.peak_rss - small.peak_rss) / MIB
        big_mb = big.peak_rss / MB
        flat = growth <= 10
        result.headline.append(
            f"peak RSS {small.peak_rss / MIB:.0f} MiB -> {big.peak_rss / MIB:.0f} MiB while the "
            f"hour grows {max(p.events) / min(p.events):.0f}x "
            f"(baseline {by_size[max(p.events)][1].peak_rss / MIB:.0f} MiB)"  # type: ignore[operator]
        )
        result.targets.append(
            target(
                "memory: 1 GB hour",
                "<= 100 MB (1e8 bytes) peak RSS",
                f"{big_mb:.1f} MB ({big.peak_rss / MIB:.1f} MiB)",
                big.peak_rss <= 100 * MB,
            )
        )
        result.targets.append(
            target(
                "memory: flat",
                "the 4x larger hour adds <= 10 MiB peak RSS",
                f"{growth:+.1f} MiB",
                flat,
            )
        )
    return result
