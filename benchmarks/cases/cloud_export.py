"""The ``cloud_export`` benchmark case: the throughput day read from moto's S3 server as
Amplitude's cloud export (``[source] kind = "cloud_export"``), against the same day through
the Export API path (the simulator), in the same run, into NDJSON and into Parquet.

The export's files are the simulator's own gzip members, laid out in the bucket before the
timed runs (not timed). Each run is valid when it exits 0 and counts every event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from async_amp.simulator.cloud_export import export_files

from ..common import WORK_DIR, DataSpec, hours
from ..measure import DAY, Bench, Expected, Server, generate
from ..results import MB, CaseResult, Row, join_notes
from ..s3server import _client, run_s3

NAME = "cloud_export"
ORDER = 62
BUCKET = "amplitude-export"
PREFIX = "export/events"


@dataclass(frozen=True, slots=True)
class Params:
    hours: int
    events: int


FULL = Params(hours=24, events=60_000)
QUICK = Params(hours=24, events=1_500)  # a whole day of thin hours: per-hour costs show


def _run(
    bench: Bench,
    label: str,
    server: Server,
    expected: Expected,
    first: Any,
    last: Any,
    fmt: str,
    env: dict[str, str] | None,
) -> dict[str, Any]:
    run = bench.extract(
        NAME, label, server, first=first, last=last, concurrency=4, expected=expected,
        args=["--format", fmt], env=env,
    )  # fmt: skip
    problems = [p for p in (run.get("problem") or "").split("; ") if p and "bytes written" not in p]
    if run.get("exit_code") != 0:
        problems.append(f"exit code {run.get('exit_code')}")
    if run.get("events") != expected.events:
        problems.append(f"{run.get('events')} events, {expected.events} expected")
    run["valid"] = not problems
    run["problem"] = "; ".join(dict.fromkeys(problems))
    run["bytes_written"] = expected.ndjson_bytes  # what was read and written or converted
    return run


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    result = CaseResult(
        NAME,
        f"Cloud export in S3 (moto) against the Export API: {p.hours} h x {p.events:,} events",
        {"hours": p.hours, "events": p.events},
    )
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.hours)
    first, last = hour_list[0], hour_list[-1]
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    size = f"{expected.ndjson_bytes / MB:,.0f} MB NDJSON"
    with (
        Server({"data": spec.to_json(), "zip_cache_bytes": 4 * 1024**3}, WORK_DIR / NAME) as s,
        run_s3() as s3,
    ):
        _, result.warm_s = s.warm([(h, h) for h in hour_list])
        client = _client(s3)
        client.create_bucket(Bucket=BUCKET)
        for name, data in export_files(spec.dataset(), hour_list, prefix=PREFIX):
            client.put_object(Bucket=BUCKET, Key=name, Body=data)
        cloud = {
            "ASYNC_AMP_SOURCE_KIND": "cloud_export",
            "ASYNC_AMP_SOURCE_STORE": "s3",
            "ASYNC_AMP_SOURCE_BUCKET": BUCKET,
            "ASYNC_AMP_SOURCE_PREFIX": PREFIX,
            "ASYNC_AMP_S3_ENDPOINT_URL": s3.endpoint_url,
            "ASYNC_AMP_S3_ADDRESSING_STYLE": "path",
            **s3.admin.environ(),
        }
        for fmt in ("ndjson", "parquet"):
            api = _run(bench, f"api-{fmt}", s, expected, first, last, fmt, None)
            exp = _run(bench, f"export-{fmt}", s, expected, first, last, fmt, cloud)
            ref: Row = bench.row(f"{fmt} c=4 ({size}): Export API", "async-amp", [api], "reference")
            row: Row = bench.row(
                f"{fmt} c=4 ({size}): cloud export from S3", "async-amp", [exp], "MB/s of NDJSON"
            )
            if ref.wall_s and row.wall_s and ref.cpu_s and row.cpu_s:
                row.note = join_notes(
                    row.note,
                    f"{row.wall_s / ref.wall_s:.2f}x the API path's wall, "
                    f"{row.cpu_s / ref.cpu_s:.2f}x its CPU",
                )
            result.rows += [ref, row]
    return result
