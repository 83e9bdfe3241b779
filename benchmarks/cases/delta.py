"""The ``delta`` benchmark case: ``--format delta`` on the throughput day, and log growth.

Rows:
- ``async-amp --format delta c=4`` (local) and ``... --sink azure c=4`` (Azurite), against
  ``async-amp --format ndjson c=4`` on the same data in the same script run (the reference:
  what the Delta conversion and commits cost). A run is valid when the table's latest
  snapshot holds exactly the dataset's events.
- big hour: one ~1 GB hour (560,000 events, 3 archive members) into ``--format delta``
  against ``--format ndjson``: peak RSS, which must not grow with the hour.
- compact: a 2-day table (3 archive members an hour, so 3 data files an hour), then
  ``async-amp compact`` over both days (one file a day after it): live files and data files
  on storage before, after, and after a vacuum with no retention left; every row unchanged.
- log growth: 2,000 hourly commits (each replacing one (date, hour) partition, 50 rows, with
  ``format = "delta"``'s own write path: a data file put into the table, one transaction)
  into one table with async-amp's checkpoint every 24 commits; at 100, 500, 1,000 and
  2,000 commits, the median of 5 of opening the table and listing its live files, against
  the same log copied without its checkpoints (a reader that must replay every JSON commit).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .. import azurite as azurite_mod
from ..common import WORK_DIR, DataSpec, fmt_hour, hours
from ..measure import DAY, PY, Bench, Server, generate
from ..results import CaseResult, Row, find_row, join_notes

NAME = "delta"
ORDER = 70


@dataclass(frozen=True, slots=True)
class Params:
    hours: int
    events: int
    commits: tuple[int, ...]
    big_hour_events: int
    compact_events: int


FULL = Params(
    hours=24,
    events=60_000,
    commits=(100, 500, 1000, 2000),
    big_hour_events=560_000,
    compact_events=300,
)
QUICK = Params(hours=2, events=5_000, commits=(100, 200), big_hour_events=56_000, compact_events=60)


def _extract(
    bench: Bench,
    label: str,
    server: Server,
    first: datetime,
    last: datetime,
    expected: Any,
    fmt: str,
    azure: azurite_mod.Azurite | None = None,
    after: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One measured ``async-amp extract --format FMT`` child, checked by reading the table.

    ``bytes_written`` is the NDJSON the run turned into rows (MB/s of NDJSON-equivalent, the
    same for every row); the table's own size is ``stored_bytes``."""
    events = expected.events
    import pyarrow as pa  # noqa: PLC0415
    from deltalake import DeltaTable  # noqa: PLC0415

    work = bench.workdir("delta", label)
    container = "bench" if azure else None
    cmd = [PY, "-m", "async_amp", "extract", "--config"]
    cmd += [str(bench.config_file(work, container=container))]
    cmd += ["--start", fmt_hour(first), "--end", fmt_hour(last), "--output", str(work / "out")]
    cmd += ["--concurrency", "4", "--format", fmt, "--log-format", "json", "--quiet"]
    cmd += ["--log-file", str(work / "run.jsonl")]
    extra: dict[str, str] = {}
    if azure is not None:
        cmd += ["--sink", "azure"]
        extra["AZURE_STORAGE_CONNECTION_STRING"] = azure.connection_string
    env = bench._extract_env(server, fsync=False, extra=extra)
    result = bench._measured(cmd, env, work, server, azure)
    result["events"] = events
    problems = [result["problem"]] if result["problem"] else []
    if fmt == "delta":
        if azure is not None:
            from async_amp.config import AzureConfig  # noqa: PLC0415
            from async_amp.output.delta.location import azure_options  # noqa: PLC0415

            options, _, _ = azure_options(
                AzureConfig(), {"AZURE_STORAGE_CONNECTION_STRING": azure.connection_string}
            )
            table = DeltaTable(f"az://{container}/amplitude/bench", storage_options=options)
        else:
            table = DeltaTable(str(work / "out" / "bench"))
        rows = table.count()
        result["bytes_written"] = sum(
            pa.table(table.get_add_actions(flatten=True))["size_bytes"].to_pylist()
        )
        if rows != events:
            problems.append(f"{rows} rows in the table, {events} expected")
    else:
        result["stored_bytes"] = sum(
            p.stat().st_size for p in (work / "out").rglob("[0-9]*.json") if p.is_file()
        )
        if result["stored_bytes"] != expected.ndjson_bytes:
            problems.append(f"{result['stored_bytes']} bytes, {expected.ndjson_bytes} expected")
    result["bytes_written"] = expected.ndjson_bytes
    if after is not None and not problems:
        result["after"] = after(work / "out" / "bench")
        problems += result["after"].pop("problems", [])
    result["valid"] = not problems
    result["problem"] = "; ".join(problems)
    shutil.rmtree(work / "out", ignore_errors=True)
    return result


def _open_and_list(uri: str, repeat: int = 5) -> tuple[float, int]:
    from deltalake import DeltaTable  # noqa: PLC0415

    times, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = len(DeltaTable(uri).file_uris())  # one file per hour committed
        times.append(time.perf_counter() - started)
    return statistics.median(times), count


def log_growth(milestones: tuple[int, ...], work: Path) -> list[dict[str, Any]]:
    """Commit hour after hour; at each milestone time opening the table (and listing its live
    files: one per hour, in day partitions) with and without its checkpoints."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from async_amp.output.delta.files import put_file  # noqa: PLC0415
    from async_amp.output.delta.table import TableLocation, replace_hour  # noqa: PLC0415

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    uri, plain = str(work / "table"), work / "no-checkpoints"
    location = TableLocation(uri)
    ts = pa.timestamp("us", tz="UTC")
    events = pa.schema([("uuid", pa.utf8()), ("event_time", ts), ("_export_hour", ts)])
    data_schema = events.append(pa.field("hour", pa.int32(), nullable=False))  # day layout
    schema = events.append(pa.field("date", pa.date32(), nullable=False)).append(
        pa.field("hour", pa.int32(), nullable=False)
    )
    first = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    done = 0
    write_s = 0.0
    for milestone in milestones:
        started = time.perf_counter()
        for n in range(done, milestone):
            hour = first + timedelta(hours=n)
            spool = work / "spool.parquet"
            data = pa.table(
                {
                    "uuid": pa.array([f"{hour:%Y%m%d%H}-{i}" for i in range(50)]),
                    "event_time": pa.array([hour] * 50, ts),
                    "_export_hour": pa.array([hour] * 50, ts),
                    "hour": pa.array([hour.hour] * 50, pa.int32()),
                },
                schema=data_schema,
            )
            pq.write_table(data, spool, compression="zstd")
            replace_hour(
                location, hour, [put_file(location, spool, hour)], schema=schema, metadata={}
            )
        write_s += time.perf_counter() - started
        done = milestone
        shutil.rmtree(plain, ignore_errors=True)
        (plain / "_delta_log").mkdir(parents=True)
        for commit in (Path(uri) / "_delta_log").glob("*.json"):
            shutil.copy(commit, plain / "_delta_log" / commit.name)
        ours, partitions = _open_and_list(uri)
        ref, ref_partitions = _open_and_list(str(plain))
        assert partitions == ref_partitions == milestone, (partitions, ref_partitions)
        rows.append(
            {
                "commits": milestone,
                "open_and_list_s": round(ours, 4),
                "without_checkpoints_s": round(ref, 4),
                "ratio": round(ref / ours, 1),
                "checkpoints": len(list((Path(uri) / "_delta_log").glob("*.checkpoint.parquet"))),
                "commit_s": round(write_s / milestone, 4),
            }
        )
    shutil.rmtree(work, ignore_errors=True)
    return rows


def _compacted(table_dir: Path) -> dict[str, Any]:
    """File counts of a local table before and after ``compact`` of its days (the default
    retention, then none left), and whether every row stayed the same."""
    from deltalake import DeltaTable  # noqa: PLC0415

    from async_amp.output.delta.compact import compact_day  # noqa: PLC0415
    from async_amp.output.delta.table import TableLocation  # noqa: PLC0415

    def counts() -> dict[str, int]:
        table = DeltaTable(str(table_dir))
        return {
            "live_files": len(table.file_uris()),
            "files_on_storage": len(list(table_dir.glob("date=*/*.parquet"))),
            "rows": table.count(),
        }

    before_rows = DeltaTable(str(table_dir)).to_pyarrow_table().sort_by("uuid")
    days = sorted({p.name[5:] for p in table_dir.glob("date=*")})
    out: dict[str, Any] = {"before": counts()}
    started = time.perf_counter()
    for day in days:
        compact_day(TableLocation(str(table_dir)), date.fromisoformat(day), retention_hours=168)
    out["compact_s"] = round(time.perf_counter() - started, 2)
    out["after"] = counts()
    for day in days:  # as the nightly run a week later would: the retention has passed
        compact_day(TableLocation(str(table_dir)), date.fromisoformat(day), retention_hours=0)
    out["after_retention"] = counts()
    after_rows = DeltaTable(str(table_dir)).to_pyarrow_table().sort_by("uuid")
    out["problems"] = [] if after_rows.equals(before_rows) else ["compact changed rows"]
    return out


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.hours)
    first, last = hour_list[0], hour_list[-1]
    result = CaseResult(
        "delta",
        f"--format delta: the throughput data ({p.hours} h x {p.events:,} events), "
        "concurrency 4, local and Azurite; and the Delta log after many hourly commits",
        {"data": spec.to_json(), "hours": p.hours, "commits": list(p.commits)},
    )
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    runs: dict[str, list[dict[str, Any]]] = {"ndjson": [], "delta": [], "azure": []}
    missing = azurite_mod.available()
    with Server({"data": spec.to_json()}, WORK_DIR / "delta") as server:
        _, result.warm_s = server.warm([(h, h) for h in hour_list])
        runs["ndjson"].append(_extract(bench, "ndjson", server, first, last, expected, "ndjson"))
        runs["delta"].append(_extract(bench, "delta", server, first, last, expected, "delta"))
        if not missing:
            with azurite_mod.run_azurite() as az:
                runs["azure"].append(
                    _extract(bench, "azure", server, first, last, expected, "delta", az)
                )
        result.server_cpu_total_s = server.total_cpu_s
    ref = bench.row("reference: async-amp --format ndjson c=4", "reference", runs["ndjson"])
    ours = bench.row("async-amp --format delta c=4", "async-amp", runs["delta"])
    result.rows += [ours, ref]
    if runs["azure"]:
        az_row = bench.row("async-amp --format delta --sink azure c=4", "async-amp", runs["azure"])
        az_row.note = join_notes(f"Azurite CPU {az_row.other_cpu_s or 0:.1f} s", az_row.note)
        result.rows.append(az_row)
    else:
        result.rows.append(
            Row(
                "async-amp --format delta --sink azure c=4",
                "async-amp",
                available=False,
                note=f"not available: {missing}",
            )
        )
    delta_row = find_row(result.rows, "async-amp --format delta c=4")
    if delta_row and delta_row.wall_s and ref.wall_s:
        ratio = delta_row.wall_s / ref.wall_s
        delta_row.note = join_notes(delta_row.note, f"{ratio:.2f}x the NDJSON run's wall time")
        result.headline.append(
            f"--format delta: {expected.ndjson_bytes / 1e6 / delta_row.wall_s:.0f} MB/s of NDJSON "
            f"end to end, {ratio:.2f}x the wall time of --format ndjson on the same day"
        )
    big_at = DAY + timedelta(hours=12)
    big = DataSpec.one_hour(big_at, p.big_hour_events)
    big_expected = generate(big, [big_at])
    result.generation_s += big_expected.generation_s
    small = DataSpec(events_per_hour=p.compact_events, pages_per_hour=3, variation=0.3)
    two_days = hours(DAY, 48)
    small_expected = generate(small, two_days)
    result.generation_s += small_expected.generation_s
    with Server({"data": big.to_json()}, WORK_DIR / "delta") as server:
        _, warm_s = server.warm([(big_at, big_at)])
        result.warm_s += warm_s
        big_ref = _extract(bench, "big-ndjson", server, big_at, big_at, big_expected, "ndjson")
        big_run = _extract(bench, "big-delta", server, big_at, big_at, big_expected, "delta")
    size = f"{big_expected.ndjson_bytes / 1e6:,.0f} MB hour"
    big_ref_row = bench.row(
        f"reference: big hour, --format ndjson ({size})", "reference", [big_ref]
    )
    big_row = bench.row(f"big hour: async-amp --format delta ({size})", "async-amp", [big_run])
    if big_row.peak_rss and big_ref_row.peak_rss:
        big_row.note = join_notes(
            big_row.note, f"{big_row.peak_rss / big_ref_row.peak_rss:.2f}x the NDJSON run's RSS"
        )
    result.rows += [big_row, big_ref_row]
    with Server({"data": small.to_json()}, WORK_DIR / "delta") as server:
        _, warm_s = server.warm([(h, h) for h in two_days])
        result.warm_s += warm_s
        two = _extract(
            bench,
            "compact",
            server,
            two_days[0],
            two_days[-1],
            small_expected,
            "delta",
            after=_compacted,
        )
    result.params["compact"] = two.get("after", {"problem": two.get("problem")})
    compacted = result.params["compact"]
    if "before" in compacted:
        result.headline.append(
            f"compact on a 2-day table: {compacted['before']['live_files']} live files -> "
            f"{compacted['after']['live_files']} (one per day), "
            f"{compacted['after_retention']['files_on_storage']} on storage once the retention "
            f"has passed; rows unchanged: {two['valid']}"
        )
    if big_row.peak_rss:
        result.headline.append(
            f"--format delta, one {size}: peak RSS {big_row.peak_rss / 2**20:.0f} MiB "
            f"(--format ndjson {(big_ref_row.peak_rss or 0) / 2**20:.0f} MiB)"
        )
    growth = log_growth(p.commits, WORK_DIR / "delta" / "log")
    result.params["log_growth"] = growth
    last_row = growth[-1]
    result.headline.append(
        f"Delta log: after {last_row['commits']:,} hourly commits, opening the table and listing "
        f"its files takes {1000 * last_row['open_and_list_s']:.0f} ms with checkpoints, "
        f"{1000 * last_row['without_checkpoints_s']:.0f} ms replaying the JSON log alone "
        f"({last_row['ratio']}x)"
    )
    return result
