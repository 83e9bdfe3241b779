"""Azurite, the real Azure Storage emulator, for tests: a context manager and pytest fixtures.

Install once with ``npm ci --prefix tools`` (``make test`` does it). In ``tests/conftest.py``::

    from tests.azurite import azure_container, azurite  # noqa: F401  (fixtures)

``azurite`` (session scope) starts one ``azurite-blob`` on a free loopback port, in memory, and
stops it with SIGTERM at the end; ``azure_container`` gives each test its own container name.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_container_sas,
)
from azure.storage.blob.aio import BlobServiceClient

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AZURITE_BIN",
    "Azurite",
    "AzuriteError",
    "azure_container",
    "azurite",
    "run_azurite",
]

TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
AZURITE_BIN = TOOLS_DIR / "node_modules" / ".bin" / "azurite-blob"
# The well-known development account every Azurite accepts (public, not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_LISTENING = re.compile(r"successfully listens on (http://[\d.]+:(\d+))")


class AzuriteError(RuntimeError):
    """Azurite is not installed, or did not start."""


@dataclass(frozen=True, slots=True)
class Azurite:
    """A running Azurite blob service on loopback."""

    blob_endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    port: int
    account_name: str = ACCOUNT_NAME
    account_key: str = ACCOUNT_KEY

    @property
    def account_url(self) -> str:
        return self.blob_endpoint

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

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


def _install_hint() -> str:
    return (
        f"Azurite is not installed ({AZURITE_BIN} is missing): run `npm ci --prefix tools` "
        "(`make test` does it; needs Node.js >= 20 and npm)"
    )


@contextlib.contextmanager
def run_azurite(*, timeout_s: float = START_TIMEOUT_S) -> Iterator[Azurite]:
    """Start ``azurite-blob`` on a free loopback port, in memory; stop it with SIGTERM."""
    if not AZURITE_BIN.exists():
        raise AzuriteError(_install_hint())
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURITE_")}
    with tempfile.TemporaryDirectory(prefix="azurite-") as workdir:
        out_path = Path(workdir) / "stdout.log"
        err_path = Path(workdir) / "stderr.log"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                [
                    str(AZURITE_BIN),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    "0",
                    "--inMemoryPersistence",
                    "--silent",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=env,
            )
        try:
            port = _wait_listening(process, out_path, err_path, timeout_s)
            yield Azurite(blob_endpoint=f"http://127.0.0.1:{port}/{ACCOUNT_NAME}", port=port)
        finally:
            _stop(process)


def _wait_listening(
    process: subprocess.Popen[bytes], out_path: Path, err_path: Path, timeout_s: float
) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        match = _LISTENING.search(out_path.read_text(errors="replace"))
        if match:
            return int(match.group(2))
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            state = f"exited with code {code}" if code is not None else f"not ready in {timeout_s}s"
            output = (
                out_path.read_text(errors="replace") + err_path.read_text(errors="replace")
            ).strip()
            msg = f"Azurite {state}; its output:\n{output or '(none)'}"
            raise AzuriteError(msg)
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
