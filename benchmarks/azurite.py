"""Start and stop Azurite's blob service for the Azure case (no pytest here, unlike tests/).

``tools/node_modules/.bin/azurite-blob`` comes from ``npm ci --prefix tools`` (``make bench``
runs it). Each run gets a fresh in-memory Azurite so one run's gigabytes don't weigh on the next.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .common import ROOT

AZURITE_BIN = ROOT / "tools" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT_NAME = "devstoreaccount1"
# The well-known development account key every Azurite accepts (public, not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTENING = re.compile(r"successfully listens on (http://[\d.]+:(\d+))")


@dataclass(frozen=True, slots=True)
class Azurite:
    pid: int
    port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT_NAME};"
        )


def available() -> str | None:
    """None when Azurite can be started, else why not."""
    if not AZURITE_BIN.exists():
        return f"{AZURITE_BIN.relative_to(ROOT)} is missing: run `npm ci --prefix tools`"
    return None


def version() -> str:
    package = ROOT / "tools" / "node_modules" / "azurite" / "package.json"
    try:
        import json  # noqa: PLC0415

        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


@contextlib.contextmanager
def run_azurite(timeout_s: float = 30.0) -> Iterator[Azurite]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURITE_")}
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as workdir:
        out_path = Path(workdir) / "stdout.log"
        with out_path.open("wb") as out:
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
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
            )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                match = _LISTENING.search(out_path.read_text(errors="replace"))
                if match:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"Azurite did not start: {out_path.read_text(errors='replace')[-2000:]}"
                    raise RuntimeError(msg)
                time.sleep(0.05)
            yield Azurite(pid=process.pid, port=int(match.group(2)))
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
