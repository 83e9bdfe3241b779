"""Start and stop Azurite, the real Azure Storage emulator, for demos and tests.

Only the blob service, on loopback, on a free port, in memory::

    with AzuriteProcess() as azurite:
        azurite.connection_string  # the well-known dev account at this Azurite's endpoint

The binary is ``tools/node_modules/.bin/azurite-blob`` (``npm ci --prefix tools``; ``make
demo-azure`` and ``make test`` run it). Azurite keeps everything in memory: its data is gone
once it stops. ``tests/azurite.py`` builds its pytest fixtures on this class.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .launcher import STOP_TIMEOUT_S, ServerProcess, terminate

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AzuriteEndpoint",
    "AzuriteError",
    "AzuriteProcess",
    "dev_connection_string",
    "find_azurite",
    "install_hint",
    "terminate",
]

# The well-known development account every Azurite accepts (public, documented, not a secret).
ACCOUNT_NAME: Final = "devstoreaccount1"
ACCOUNT_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT_S: Final = 30.0
_BIN_RELATIVE: Final = Path("tools") / "node_modules" / ".bin" / "azurite-blob"
_LISTENING: Final = re.compile(r"successfully listens on (http://[\d.]+:(\d+))")


class AzuriteError(RuntimeError):
    """Azurite is not installed, or did not start."""


def dev_connection_string(blob_endpoint: str) -> str:
    """The connection string of the well-known dev account at ``blob_endpoint``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
        f"AccountKey={ACCOUNT_KEY};BlobEndpoint={blob_endpoint};"
    )


@dataclass(frozen=True, slots=True)
class AzuriteEndpoint:
    """Where a running Azurite blob service answers."""

    blob_endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    port: int
    account_name: str = ACCOUNT_NAME
    account_key: str = ACCOUNT_KEY

    @property
    def account_url(self) -> str:
        return self.blob_endpoint

    @property
    def connection_string(self) -> str:
        return dev_connection_string(self.blob_endpoint)


def find_azurite(start: Path | None = None) -> Path | None:
    """``tools/node_modules/.bin/azurite-blob`` of this checkout (or above ``start``), else the
    one on ``PATH``, else ``None``."""
    roots = [start or Path.cwd(), Path(__file__).resolve().parents[1]]
    for root in roots:
        for folder in (root, *root.parents):
            candidate = folder / _BIN_RELATIVE
            if candidate.exists():
                return candidate
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


def install_hint(binary: Path | None = None) -> str:
    where = f"{binary} is missing" if binary is not None else "azurite-blob not found"
    return (
        f"Azurite is not installed ({where}): run `npm ci --prefix tools` "
        "(`make demo-azure` and `make test` do it; needs Node.js >= 20 and npm)"
    )


class AzuriteProcess(ServerProcess[int]):
    """One ``azurite-blob`` child process: in memory, loopback only, telemetry off.

    ``start()`` (or ``with``) waits until it listens and returns its endpoint; ``stop()`` sends
    SIGTERM (SIGKILL after ``STOP_TIMEOUT_S``). ``port=0`` picks a free port.
    """

    what = "Azurite"
    error = AzuriteError
    prefix = "azurite-"

    def __init__(
        self,
        binary: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        super().__init__(
            host=host, port=port, start_timeout_s=start_timeout_s, stop_timeout_s=stop_timeout_s
        )
        self.binary = binary
        self.endpoint: AzuriteEndpoint | None = None

    def command(self) -> list[str]:
        binary = self.binary or find_azurite()
        if binary is None or not binary.exists():
            raise AzuriteError(install_hint(binary))
        args = [str(binary), "--blobHost", self.host, "--blobPort", str(self.port)]
        # --inMemoryPersistence: no database files in the working directory;
        # --skipApiVersionCheck: the SDK may send a newer API version than Azurite knows.
        return [
            *args,
            "--inMemoryPersistence",
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]

    def environ(self) -> dict[str, str]:
        # Azurite reads AZURITE_* variables (accounts, keys): a stray one would break the
        # well-known account, so the child gets none.
        return {k: v for k, v in os.environ.items() if not k.startswith("AZURITE_")}

    def ready(self, out: str) -> int | None:
        match = _LISTENING.search(out)
        return int(match.group(2)) if match else None

    def start(self) -> AzuriteEndpoint:
        port = self.launch()
        self.endpoint = AzuriteEndpoint(
            blob_endpoint=f"http://{self.host}:{port}/{ACCOUNT_NAME}", port=port
        )
        return self.endpoint

    def stop(self) -> None:
        """Stop the process (idempotent); its in-memory data is gone afterwards."""
        super().stop()
        self.endpoint = None

    # conveniences once started ----------------------------------------------------------------

    def _started(self) -> AzuriteEndpoint:
        if self.endpoint is None:
            msg = "Azurite is not running: call start() first"
            raise AzuriteError(msg)
        return self.endpoint

    @property
    def blob_endpoint(self) -> str:
        return self._started().blob_endpoint

    @property
    def connection_string(self) -> str:
        return self._started().connection_string
