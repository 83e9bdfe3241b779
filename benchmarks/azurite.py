"""Azurite's blob service for the Azure case: ``tools.azurite.AzuriteProcess``, the
one launcher the demo and the tests use too, plus what the benchmark reports about it.

``tools/node_modules/.bin/azurite-blob`` comes from ``npm ci --prefix tools`` (``make bench``
runs it). Each run gets a fresh in-memory Azurite so one run's gigabytes don't weigh on the next.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from tools.azurite import AzuriteProcess, dev_connection_string

from .common import ROOT

AZURITE_BIN = ROOT / "tools" / "node_modules" / ".bin" / "azurite-blob"


@dataclass(frozen=True, slots=True)
class Azurite:
    """A running Azurite: its process (whose CPU the benchmark reads) and its endpoint."""

    pid: int
    port: int
    blob_endpoint: str

    @property
    def connection_string(self) -> str:
        return dev_connection_string(self.blob_endpoint)


def available() -> str | None:
    """None when Azurite can be started, else why not."""
    if not AZURITE_BIN.exists():
        return f"{AZURITE_BIN.relative_to(ROOT)} is missing: run `npm ci --prefix tools`"
    return None


def version() -> str:
    package = ROOT / "tools" / "node_modules" / "azurite" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


@contextlib.contextmanager
def run_azurite() -> Iterator[Azurite]:
    with AzuriteProcess(AZURITE_BIN) as process:
        assert process.pid is not None and process.endpoint is not None
        yield Azurite(process.pid, process.endpoint.port, process.endpoint.blob_endpoint)
