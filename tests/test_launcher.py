"""The loopback-server launcher Azurite and the S3 test server share, with real child processes
(a few lines of Python) in place of the servers."""

from __future__ import annotations

import os
import sys

import pytest

from tools.launcher import ServerProcess


class _Child(ServerProcess[int]):
    what = "the child"

    def __init__(self, code: str) -> None:
        super().__init__(host="127.0.0.1", port=0, start_timeout_s=20, stop_timeout_s=5)
        self.code = code
        self.port_seen = 0

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.code]

    def environ(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self, out: str) -> int | None:
        lines = [line for line in out.splitlines() if line.startswith("listening on ")]
        return int(lines[0].rpartition(" ")[2]) if lines else None

    def start(self) -> int:
        self.port_seen = self.launch()
        return self.port_seen


def test_start_waits_for_the_ready_line_and_stop_ends_the_child() -> None:
    code = "import time; time.sleep(0.3); print('listening on 4321', flush=True); time.sleep(60)"
    with _Child(code) as child:
        assert child.port_seen == 4321
        pid = child.pid
        assert pid is not None
        os.kill(pid, 0)  # alive
    assert child.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: gone


def test_a_child_that_exits_is_reported_with_its_output() -> None:
    child = _Child("import sys; print('no such port'); sys.exit(3)")
    with pytest.raises(RuntimeError, match=r"the child exited with code 3; its output:\nno such"):
        child.start()
    assert child.pid is None
