"""The ``s3`` benchmark case: the throughput day into moto's S3 server (``--sink s3``) against
a plain aiobotocore upload of the same files (the calls the sink makes, nothing around them)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Any

from ..common import WORK_DIR, DataSpec, hours
from ..measure import DAY, Bench, Server, generate, materialize_ndjson
from ..results import CaseResult, Row, add_targets, find_row, join_notes
from ..s3server import moto_version, run_s3

NAME = "s3"
ORDER = 52


@dataclass(frozen=True, slots=True)
class Params:
    """What ``--quick`` scales down (the day is the throughput case's)."""

    hours: int
    events: int
    repeats: int


FULL = Params(hours=8, events=60_000, repeats=2)  # ~0.9 GB: moto spools it all to disk
QUICK = Params(hours=2, events=20_000, repeats=1)


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.hours)
    first, last = hour_list[0], hour_list[-1]
    uploaders: dict[str, dict[str, Any]] = {
        "aiobotocore": {"client": "aiobotocore", "files_in_flight": 4, "part_mib": 8},
    }
    result = CaseResult(
        "s3",
        f"S3 sink into moto {moto_version()}'s S3 server: the throughput data "
        f"({p.hours} h x {p.events:,} events), concurrency 4",
        {"data": spec.to_json(), "hours": p.hours, "uploaders": uploaders},
    )
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    src = WORK_DIR / "s3" / "src"
    began = time.monotonic()
    materialize_ndjson(spec, hour_list, src)
    result.params["materialize_s"] = time.monotonic() - began
    server_spec = {"data": spec.to_json(), "zip_cache_bytes": 4 * 1024**3}
    ours_runs: list[dict[str, Any]] = []
    ref_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in uploaders}
    try:
        with Server(server_spec, WORK_DIR / "s3") as server:
            _, result.warm_s = server.warm([(h, h) for h in hour_list])
            # a fresh server for every run; the two tools take turns
            for _ in range(p.repeats):
                with run_s3() as s3:
                    ours_runs.append(
                        bench.extract(
                            "s3",
                            "extract",
                            server,
                            first=first,
                            last=last,
                            concurrency=4,
                            expected=expected,
                            s3=s3,
                        )
                    )
                for name, uploader in uploaders.items():
                    with run_s3() as s3:
                        ref_runs[name].append(
                            bench.upload_reference_s3(src, s3, expected, uploader)
                        )
        result.server_cpu_total_s = server.total_cpu_s
    finally:
        shutil.rmtree(src, ignore_errors=True)
    row = bench.row("async-amp --sink s3 c=4", "async-amp", ours_runs)
    row.note = join_notes(f"moto CPU {row.other_cpu_s:.1f} s", row.note)
    result.rows.append(row)
    refs: list[Row] = []
    for name, uploader in uploaders.items():
        ref = bench.row(f"reference: {name} multipart upload", "reference", ref_runs[name])
        ref.note = join_notes(
            f"moto CPU {ref.other_cpu_s:.1f} s; {uploader['files_in_flight']} files at once, "
            f"{uploader['part_mib']} MiB parts",
            ref.note,
        )
        refs.append(ref)
    result.rows += refs
    ours = find_row(result.rows, "async-amp --sink s3 c=4")
    add_targets(result, "s3", ours, refs, "a plain aiobotocore upload of the same files")
    return result
