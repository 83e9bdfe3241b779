"""What the end-to-end suites of every sink share: the CLI as a child process, and waiting on it.

The sink is chosen by the environment (``ASYNC_AMP_OUTPUT_SINK``), so the same ``cli`` serves
the Azure and the S3 suites.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from .helpers import KEY, NOW, SECRET

__all__ = [
    "cli",
    "cli_args",
    "communicate",
    "e2e_env",
    "expect_user_error",
    "reap_spawned",
    "spawn",
    "wait_until",
]

_FOREIGN = ("ASYNC_AMP_", "AZURE_", "AMP_", "AZURITE_", "AWS_")


def e2e_env(base_url: str, **extra: str) -> dict[str, str]:
    """The CLI's environment: nothing inherited that configures async-amp, Azure or AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env.update(
        AMP_API_KEY=KEY,
        AMP_SECRET_KEY=SECRET,
        ASYNC_AMP_AMPLITUDE_BASE_URL=base_url,
        ASYNC_AMP_OUTPUT_FSYNC="false",
        ASYNC_AMP_NOW=NOW.isoformat(),
        AWS_EC2_METADATA_DISABLED="true",  # botocore's chain never asks the metadata service
        AWS_CONFIG_FILE=os.devnull,  # nor reads the machine's ~/.aws
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    env.update(extra)
    return env


def cli_args(first: str, last: str, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "async_amp", "extract"]
    return [*args, "--start", first, "--end", last, "--log-format", "json", *extra]


@contextlib.contextmanager
def cli(
    cwd: Path, env: dict[str, str], first: str, last: str, *extra: str, **popen: Any
) -> Iterator[subprocess.Popen[str]]:
    """``python -m async_amp extract`` in ``cwd`` (no config.toml, no .env there); killed if
    the test fails before it ends."""
    args = popen.pop("launcher", []) + cli_args(first, last, *extra)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    with subprocess.Popen(args, env=env, cwd=cwd, text=True, **popen) as proc:
        try:
            yield proc
        finally:
            if proc.returncode is None and proc.poll() is None:
                proc.kill()


_SPAWNED: list[subprocess.Popen[str]] = []


def spawn(
    env: Mapping[str, str], cwd: Path, first: datetime, last: datetime, *extra: str
) -> subprocess.Popen[str]:
    """``python -m async_amp extract`` from ``first`` to ``last`` (hours) in ``cwd``, left
    running; killed at the end of the test if it still is (``reap_spawned``)."""
    args = cli_args(f"{first:%Y-%m-%dT%H}", f"{last:%Y-%m-%dT%H}", *extra)
    proc = subprocess.Popen(
        args, env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _SPAWNED.append(proc)
    return proc


def reap_spawned() -> None:
    """A test that fails half-way must not leave an extraction running (tests/conftest.py)."""
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


async def communicate(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    out, err = await anyio.to_thread.run_sync(lambda: proc.communicate(timeout=timeout))
    return out, err


async def expect_user_error(
    cwd: Path, env: dict[str, str], expected: str, secrets: list[str]
) -> tuple[str, float]:
    """Run an extraction that must stop on a user error: exit 2, nothing on stdout, one line on
    stderr holding ``expected``, no secret (nor the Amplitude keys) in the output or the logs.
    Returns that line and the seconds it took."""
    started = time.monotonic()
    with cli(cwd, env, "2026-11-01T00", "2026-11-01T05") as proc:
        out, err = await communicate(proc, 60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("async-amp: error: ") and expected in lines[0], lines[0]
    logs = "".join(p.read_text() for p in cwd.rglob("*.jsonl"))
    for secret in [*secrets, KEY, SECRET]:
        assert secret not in out + err + logs
    return lines[0], elapsed


async def wait_until(
    condition: Callable[[], Awaitable[bool]], proc: subprocess.Popen[str], what: str
) -> None:
    deadline = time.monotonic() + 30
    while not await condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended ({proc.returncode}) before {what}:\n{out}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await anyio.sleep(0.05)
