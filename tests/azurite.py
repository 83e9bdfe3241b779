"""Azurite, the real Azure Storage emulator, for tests: a context manager and pytest fixtures.

Install once with ``npm ci --prefix tools`` (``make test`` does it). In ``tests/conftest.py``::

    from tests.azurite import azure_container, azurite  # noqa: F401  (fixtures)

``azurite`` (session scope) starts one ``azurite-blob`` on a free loopback port, in memory, and
stops it with SIGTERM at the end; ``azure_container`` gives each test its own container name.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from azure.storage.blob import (
    AccountSasPermissions,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_container_sas,
)
from azure.storage.blob.aio import BlobServiceClient

from tools.azurite import (
    ACCOUNT_KEY,
    ACCOUNT_NAME,
    START_TIMEOUT_S,
    AzuriteEndpoint,
    AzuriteError,
    AzuriteProcess,
)

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AZURITE_BIN",
    "Azurite",
    "AzuriteError",
    "azure_container",
    "azurite",
    "azurite_proxy",
    "free_port",
    "run_azurite",
]

TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
AZURITE_BIN = TOOLS_DIR / "node_modules" / ".bin" / "azurite-blob"


@dataclass(frozen=True, slots=True)
class Azurite(AzuriteEndpoint):
    """A running Azurite blob service on loopback, with helpers for tests (SAS, clients)."""

    def sas_token(
        self,
        permissions: str = "racwdl",
        *,
        container: str | None = None,
        expires_in: timedelta = timedelta(hours=1),
    ) -> str:
        """An account SAS (or a container SAS with ``container``), e.g. ``"rl"`` or ``"racwdl"``."""
        expiry = datetime.now(UTC) + expires_in
        if container is not None:
            return generate_container_sas(
                self.account_name,
                container,
                account_key=self.account_key,
                permission=ContainerSasPermissions.from_string(permissions),
                expiry=expiry,
            )
        return generate_account_sas(
            self.account_name,
            account_key=self.account_key,
            resource_types=ResourceTypes(service=True, container=True, object=True),
            permission=AccountSasPermissions.from_string(permissions),
            expiry=expiry,
        )

    def service_client(self, **options: Any) -> BlobServiceClient:
        """An admin client for assertions (no retries); use it with ``async with``."""
        options.setdefault("retry_total", 0)
        return BlobServiceClient.from_connection_string(self.connection_string, **options)


@contextlib.contextmanager
def run_azurite(*, timeout_s: float = START_TIMEOUT_S) -> Iterator[Azurite]:
    """Start ``azurite-blob`` on a free loopback port, in memory; stop it with SIGTERM."""
    with AzuriteProcess(AZURITE_BIN, start_timeout_s=timeout_s) as process:
        assert process.endpoint is not None
        yield Azurite(blob_endpoint=process.endpoint.blob_endpoint, port=process.endpoint.port)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite for the whole session (fails, never skips, when it is not installed)."""
    failure = ""
    try:
        with run_azurite() as server:
            yield server
    except AzuriteError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(failure, pytrace=False)


@pytest.fixture
def azure_container() -> str:
    """A container name of this test's own (not created: the sink or the test creates it)."""
    return f"t-{uuid.uuid4().hex[:24]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Intercept = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
_HOP_REQUEST = {"host", "content-length", "transfer-encoding"}
_HOP_RESPONSE = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@contextlib.asynccontextmanager
async def azurite_proxy(
    azurite: Azurite, intercept: Intercept, *, max_body: int = 64 * 1024 * 1024
) -> AsyncIterator[str]:
    """A loopback proxy in front of Azurite; yields its blob endpoint.

    ``intercept(request)`` sees every request first (its body already read): it returns a
    response to answer in Azurite's place, or None to forward the request unchanged.
    """
    upstream = f"http://127.0.0.1:{azurite.port}"
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            answer = await intercept(request)
            if answer is not None:
                return answer
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_REQUEST}
            async with session.request(
                request.method,
                yarl.URL(upstream + request.raw_path, encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                skip_auto_headers=("Content-Type",),
            ) as response:
                payload = await response.read()
                out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_RESPONSE}
                return web.Response(status=response.status, headers=out, body=payload)

        app = web.Application(client_max_size=max_body)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}/devstoreaccount1"
        finally:
            await runner.cleanup()
