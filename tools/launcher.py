"""Start a loopback server in a child process, wait until it says it is ready, stop it.

What Azurite (``azurite.py``) and the S3 test server (``s3server.py``) share: the child runs
in a temporary folder with its output in ``stdout.log`` and ``stderr.log`` there; ``start``
polls its output until :meth:`ServerProcess.ready` finds the line that says where it listens
(a free port when ``port=0``), and fails with the end of its output when the child exits or
is not ready in time; ``stop`` sends SIGTERM, then SIGKILL, and removes the folder.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Generic, Self, TypeVar

__all__ = ["STOP_TIMEOUT_S", "ServerProcess", "terminate"]

STOP_TIMEOUT_S = 10.0
_R = TypeVar("_R")


def terminate(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM a child server, SIGKILL it after ``timeout_s``; reap it either way."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServerProcess(Generic[_R]):
    """One server child process; a subclass says how to run it and how it announces itself.

    ``_R`` is what :meth:`ready` reads from the child's output (its port, endpoint, keys).
    """

    what = "the server"  # in errors: "<what> exited with code 1; its output: ..."
    error: type[RuntimeError] = RuntimeError
    prefix = "server-"  # of the temporary folder
    stdin_pipe = False  # True: the child reads stdin and stops when it closes

    def __init__(
        self, *, host: str, port: int, start_timeout_s: float, stop_timeout_s: float
    ) -> None:
        self.host = host
        self.port = port
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    # what a subclass says -------------------------------------------------------------------

    def command(self) -> list[str]:
        """The child's argument list."""
        raise NotImplementedError

    def environ(self) -> dict[str, str]:
        """The child's environment."""
        raise NotImplementedError

    def ready(self, out: str) -> _R | None:
        """What the child's output so far says about where it listens (None: not yet)."""
        raise NotImplementedError

    def failure(self, state: str, out: str, err: str) -> str:
        """The error when the child ``state`` ("exited with code 1", "was not ready in 30 s")."""
        output = (out + err).strip()
        return f"{self.what} {state}; its output:\n{output[-2000:] or '(none)'}"

    # the shared part --------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def launch(self) -> _R:
        """Start the child and wait until it is ready (stopped again if it is not)."""
        if self._process is not None:
            msg = f"{self.what} is already started"
            raise self.error(msg)
        env = self.environ()
        self._workdir = tempfile.TemporaryDirectory(prefix=self.prefix)
        workdir = Path(self._workdir.name)
        out_path, err_path = workdir / "stdout.log", workdir / "stderr.log"
        try:
            args = self.command()
            with out_path.open("wb") as out, err_path.open("wb") as err:
                self._process = subprocess.Popen(  # noqa: S603 - a fixed argument list
                    args,
                    stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=workdir,
                    env=env,
                )
            return self._wait_ready(out_path, err_path)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, out_path: Path, err_path: Path) -> _R:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            found = self.ready(out_path.read_text(errors="replace"))
            if found is not None:
                return found
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                state = (
                    f"exited with code {code}"
                    if code is not None
                    else f"was not ready in {self._start_timeout_s:g} s"
                )
                out = out_path.read_text(errors="replace")
                raise self.error(self.failure(state, out, err_path.read_text(errors="replace")))
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the process (idempotent); whatever it kept in memory is gone afterwards."""
        process, self._process = self._process, None
        if process is not None:
            terminate(process, self._stop_timeout_s)
            if process.stdin is not None:
                process.stdin.close()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def start(self) -> object:
        """:meth:`launch`, keeping what :meth:`ready` found (the subclass's own return value)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
