from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.azurite import azure_container, azurite  # noqa: F401 - session fixtures
from tests.e2e import reap_spawned
from tests.gcs import gcs_bucket, gcs_emulator, gcs_front, gcs_xml_url  # noqa: F401 - session fixtures
from tests.s3 import s3_bucket, s3_server  # noqa: F401 - session fixtures


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_stray_processes() -> Iterator[None]:
    """No extraction started by ``tests.e2e.spawn`` outlives its test."""
    yield
    reap_spawned()
