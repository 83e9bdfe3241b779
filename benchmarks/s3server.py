"""moto's S3 server for the S3 case: ``tools.s3server.S3ServerProcess``, the one
launcher the tests use too (IAM not enforced here: its policy checks would cost CPU on every
request), plus what the benchmark needs around it.

Each run gets a fresh server with one empty bucket, so one run's gigabytes don't weigh on the
next (moto keeps objects in spooled temporary files).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import botocore.session

from async_amp.output.manifest import MANIFEST_NAME
from async_amp.output.marker import MARKER_NAME
from tools.s3server import S3ServerProcess

S3_BUCKET = "bench"

__all__ = ["S3_BUCKET", "S3ServerProcess", "moto_version", "run_s3", "s3_bytes", "s3_env"]


def _client(s3: S3ServerProcess):  # type: ignore[no-untyped-def]
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=s3.admin.access_key_id,
        aws_secret_access_key=s3.admin.secret_access_key,
    )


@contextlib.contextmanager
def run_s3() -> Iterator[S3ServerProcess]:
    with S3ServerProcess() as s3:
        _client(s3).create_bucket(Bucket=S3_BUCKET)
        yield s3


def s3_env(s3: S3ServerProcess) -> dict[str, str]:
    """The environment of ``async-amp extract --sink s3`` into the bench bucket."""
    return {
        "ASYNC_AMP_S3_BUCKET": S3_BUCKET,
        "ASYNC_AMP_S3_ENDPOINT_URL": s3.endpoint_url,
        "ASYNC_AMP_S3_ADDRESSING_STYLE": "path",
        **s3.admin.environ(),
    }


def is_data_key(key: str) -> bool:
    """An extracted NDJSON file: not a manifest, the output's marker, or a hidden lease."""
    name = key.rsplit("/", 1)[-1]
    return key.endswith(".json") and name not in (MANIFEST_NAME, MARKER_NAME) and "/." not in key


def s3_bytes(s3: S3ServerProcess, bucket: str) -> int:
    """Bytes of the data objects (``.json``, not manifests or leases) in ``bucket``."""
    total = 0
    for page in _client(s3).get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            if is_data_key(key):
                total += obj["Size"]
    return total


def moto_version() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version("moto")
