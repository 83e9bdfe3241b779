"""``async-amp simulate`` as a newcomer runs it: it says where it listens and which keys it
takes, those keys work, and a port in use is one line and exit 2, not a traceback."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TIMEOUT_S = 60


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AMP_"))}
    return env | extra


@contextmanager
def _simulate(cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-m", "async_amp", "simulate", "--port", "0", "--events-per-hour", "20"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()


def _banner(child: subprocess.Popen[str]) -> list[str]:
    assert child.stdout is not None
    return [child.stdout.readline().rstrip("\n") for _ in range(3)]


def _export_status(base_url: str, key: str, secret: str) -> int:
    auth = base64.b64encode(f"{key}:{secret}".encode()).decode()
    request = urllib.request.Request(
        f"{base_url}/api/2/export?start=20261101T00&end=20261101T00",
        headers={"Authorization": f"Basic {auth}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_simulate_prints_its_address_and_the_keys_that_work(tmp_path: Path) -> None:
    with _simulate(tmp_path, _env()) as child:
        lines = _banner(child)
        found = re.fullmatch(
            r"simulated Export API listening on (http://127\.0\.0\.1:(\d+)) \(Ctrl-C stops it\)",
            lines[0],
        )
        assert found, lines
        base_url = found.group(1)
        assert lines[1] == "keys: API key demo-key, secret key demo-secret"
        assert lines[2] == (
            f"try:  ASYNC_AMP_AMPLITUDE_BASE_URL={base_url} AMP_API_KEY=demo-key "
            "AMP_SECRET_KEY=demo-secret async-amp extract --start 2026-11-01 --end 2026-11-01"
        )
        # the keys it printed are the ones it takes, and only those
        assert _export_status(base_url, "demo-key", "demo-secret") == 200
        assert _export_status(base_url, "demo-key", "wrong") == 403
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=TIMEOUT_S)
    assert child.returncode == 130
    assert err == "async-amp: interrupted\n"


def test_simulate_never_prints_keys_taken_from_the_environment(tmp_path: Path) -> None:
    env = _env(AMP_API_KEY="my-real-key-1234", AMP_SECRET_KEY="my-real-secret-5678")
    with _simulate(tmp_path, env) as child:
        lines = _banner(child)
        base_url = lines[0].split()[5]
        assert lines[1] == "keys: the values of AMP_API_KEY and AMP_SECRET_KEY"
        assert "my-real" not in "\n".join(lines)
        assert _export_status(base_url, "my-real-key-1234", "my-real-secret-5678") == 200
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=TIMEOUT_S)
    assert "my-real" not in out + err


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "async_amp", "simulate", "--port", str(port)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"async-amp: error: cannot listen on 127.0.0.1:{port}: the port is in use; stop what "
        "uses it or pick another --port (0: any)\n"
    )
