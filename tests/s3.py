"""A real S3-compatible server (moto's standalone server) for tests: pytest fixtures.

``s3_server`` (session scope) starts one moto server in a process of its own on a free loopback
port, with IAM enforced: requests must be signed by one of its users (``admin`` may do anything
in S3, ``read_only`` only ``s3:Get*`` / ``s3:List*``). ``s3_bucket`` creates an empty bucket of
the test's own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import AioSession

from tools.s3server import REGION, S3Key, S3ServerError, S3ServerProcess

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["REGION", "S3Key", "S3ServerProcess", "admin_client", "s3_bucket", "s3_server"]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3ServerProcess]:
    """One moto server for the whole session (fails, never skips, when it cannot start)."""
    failure = ""
    try:
        with S3ServerProcess(enforce_iam=True) as server:
            yield server
    except S3ServerError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(failure, pytrace=False)


def admin_client(server: S3ServerProcess, key: S3Key | None = None) -> Any:
    """An S3 client for assertions and set-up (path style, no retries); ``async with`` it."""
    from aiobotocore.config import AioConfig

    key = key or server.admin
    return AioSession().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture
async def s3_bucket(s3_server: S3ServerProcess) -> AsyncIterator[str]:
    """A new empty bucket of this test's own."""
    name = f"t-{uuid.uuid4().hex[:24]}"
    client: S3Client
    async with admin_client(s3_server) as client:
        await client.create_bucket(Bucket=name)
    yield name
