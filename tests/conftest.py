from __future__ import annotations

import pytest

from tests.azurite import azure_container, azurite  # noqa: F401 - session fixtures
from tests.s3 import s3_bucket, s3_server  # noqa: F401 - session fixtures


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
