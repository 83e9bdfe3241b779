"""The ``s3`` benchmark case: the throughput day into moto's S3 server (``--sink s3``) against
a plain aiobotocore upload of the same files (``benchmarks/s3_upload.py``: the calls the sink
makes, nothing around them)."""

from __future__ import annotations

from typing import Any

from ..measure import Bench
from ..results import CaseResult
from ..s3server import moto_version, run_s3
from ..store_case import Params, Store, run_store_case

NAME = "s3"
ORDER = 52

FULL = Params(hours=8, events=60_000, repeats=2)  # ~0.9 GB: moto spools it all to disk
QUICK = Params(hours=2, events=20_000, repeats=1)

UPLOADERS: dict[str, dict[str, Any]] = {
    "aiobotocore": {"client": "aiobotocore", "files_in_flight": 4, "part_mib": 8},
}

STORE = Store(
    sink="s3",
    server="moto",
    start=run_s3,
    reference=lambda bench, src, s3, expected, how: bench.upload_reference_s3(
        src, s3, expected, how
    ),
    label=lambda name: f"reference: {name} multipart upload",
    note=lambda how: f"{how['files_in_flight']} files at once, {how['part_mib']} MiB parts",
    judged="a plain aiobotocore upload of the same files",
)


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    title = f"S3 sink into moto {moto_version()}'s S3 server"
    return run_store_case(bench, STORE, title, p, UPLOADERS)
