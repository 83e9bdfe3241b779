"""Pieces shared by the benchmark runner and its child processes.

Nothing here is timed. ``DataSpec`` is the JSON-able description of a simulated project that
the runner, the data generator and the simulator process (``benchmarks.server``) all turn into
the same :class:`~async_amp.simulator.dataset.Dataset`; ``measure`` runs one child process (through
``launch.py``) and reads its wall time, CPU time and peak RSS from ``os.wait4``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from async_amp.hours import hour_range, parse_bound

try:
    from async_amp.simulator import Dataset
except ModuleNotFoundError:  # a --rev/--reference from before async_amp/testing was renamed
    from async_amp.testing import Dataset  # type: ignore[import-not-found,no-redef]

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench-data"  # git-ignored: generated data, work folders
CACHE_DIR = DATA_DIR / "cache"  # Dataset(cache_dir=...): gz partitions, reused across runs
WORK_DIR = DATA_DIR / "work"
RESULTS_DIR = ROOT / "benchmarks" / "results"

API_KEY = "bench-key"
SECRET_KEY = "bench-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_hour(text: str) -> datetime:
    """``2025-06-03T05`` -> an aware UTC hour."""
    return parse_bound(text, is_end=False)


def fmt_hour(hour: datetime) -> str:
    return f"{hour:%Y-%m-%dT%H}"


def hours(first: datetime, count: int) -> list[datetime]:
    """``count`` consecutive hours from ``first``."""
    return list(hour_range(first, first + timedelta(hours=count - 1))) if count > 0 else []


@dataclass(frozen=True, slots=True)
class DataSpec:
    """A simulated project, as JSON: the fields of ``Dataset`` the benchmarks vary."""

    events_per_hour: int
    pages_per_hour: int = 3
    variation: float = 0.3
    seed: int = 0
    hour_sizes: Mapping[str, int] = field(default_factory=dict)  # "YYYY-MM-DDTHH" -> events

    def dataset(self) -> Dataset:
        return Dataset(
            events_per_hour=self.events_per_hour,
            pages_per_hour=self.pages_per_hour,
            variation=self.variation,
            seed=self.seed,
            hour_sizes={parse_hour(h): n for h, n in self.hour_sizes.items()},
            cache_dir=CACHE_DIR,
        )

    @classmethod
    def one_hour(cls, hour: datetime, events: int) -> DataSpec:
        """A project with ``events`` events in ``hour`` and none in any other (the cases'
        big hours)."""
        return cls(
            events_per_hour=0, pages_per_hour=3, variation=0.3, hour_sizes={fmt_hour(hour): events}
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["hour_sizes"] = dict(self.hour_sizes)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DataSpec:
        return cls(**data)


@dataclass(slots=True)
class Measured:
    """One child process: wall clock, CPU (user + sys) and peak RSS from ``os.wait4``."""

    args: list[str]
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss: int  # bytes
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


LAUNCHER = Path(__file__).resolve().parent / "launch.py"


def measure(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout_s: float,
) -> Measured:
    """Run ``args`` to completion and measure it; kill it after ``timeout_s``.

    The command is started by ``launch.py`` (a small process of its own, in a new session) so
    that its ``ru_maxrss`` is not inflated by this process's size; the launcher times it and
    reads its rusage from ``wait4``. Output goes to files in ``cwd`` (never a pipe that could
    fill up and stall the child); this process waits and uses no CPU meanwhile.
    """
    out_path, err_path = cwd / "child.stdout", cwd / "child.stderr"
    report = cwd / "child.rusage.json"
    report.unlink(missing_ok=True)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-S", str(LAUNCHER), str(report), *args],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            proc.wait(timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the command it started
            proc.wait()
    try:
        usage = json.loads(report.read_text())
    except (OSError, ValueError):
        usage = {"wall_s": 0.0, "user_s": 0.0, "sys_s": 0.0, "maxrss_kib": 0, "exit_code": -9}
    return Measured(
        args=list(args),
        wall_s=usage["wall_s"],
        user_s=usage["user_s"],
        sys_s=usage["sys_s"],
        peak_rss=usage["maxrss_kib"] * 1024,
        exit_code=usage["exit_code"] if not timed_out else -9,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        timed_out=timed_out,
    )


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + sys, all threads) a running process has used so far."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


_source: list[Path] = []  # a snapshot of async_amp to import instead of the working tree


def use_source(path: Path | None) -> None:
    """Make children import ``async_amp`` from ``path`` (a ``git archive`` of one revision)."""
    _source[:] = [path] if path is not None else []


def machine_busy_s() -> float:
    """CPU seconds all processes on the machine have used since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: ours without any async-amp or Azure settings, plus ``extra``.

    ``PYTHONPATH`` puts the chosen ``async_amp`` source first (ahead of the editable install)
    and the repository root after it, for ``python -m benchmarks.*`` from any folder.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AZURE_"))}
    env.pop("AMP_API_KEY", None)
    env.pop("AMP_SECRET_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [*_source, ROOT])
    env.update(extra)
    return env


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))
