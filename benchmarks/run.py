"""The benchmark runner: async-amp against the script people write, on a simulated Export API.

    .venv/bin/python -m benchmarks.run [--quick] [--case NAME ...] [--json PATH] [--profile]
                                       [--rev REV] [--markdown JSON]

Every case starts the simulated Export API in a process of its own (``benchmarks.server``),
then runs ``python -m async_amp extract`` and the baseline (``benchmarks/baseline.py``) as child
processes and measures each with ``os.wait4`` (through ``benchmarks/launch.py``): wall time,
CPU (user + sys), peak RSS. The simulator's CPU time during each run is read from ``/proc`` (it
shares the machine's cores), and so is the CPU that unrelated jobs used meanwhile ("others").
Outputs are checked: a run whose bytes or events differ from the dataset is marked INVALID.
The method, the ideal-schedule formula and the committed numbers: docs/benchmarks.md.

Cases (``--quick`` scales each down to a smoke test):

- ``throughput``: one day, 1.44 M events (~2.6 GB NDJSON), no latency; concurrency 1 and 4.
- ``busy``: one day of ~1 MB-ZIP hours behind a latency model; concurrency 1, 4, 8, 16 against
  the ideal schedule.
- ``quiet``: seven days of ~20 KB-ZIP hours, slow fixed cost per request; hourly, 6-hour,
  24-hour and automatic windows (``--window-hours``; variants this build lacks are shown as
  "not available").
- ``memory``: peak RSS for one ~250 MB hour and one ~1 GB hour.
- ``azure``: the throughput day into Azurite (``--sink azure``) against the SDK's own upload
  of the same files.

Results: a table on stdout and JSON (default ``benchmarks/results/latest.json``, or
``quick.json`` with ``--quick``). Generated data is cached under ``bench-data/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import io
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import azurite as azurite_mod
from .common import (
    API_KEY,
    DATA_DIR,
    RESULTS_DIR,
    ROOT,
    SECRET_KEY,
    WORK_DIR,
    DataSpec,
    Measured,
    child_env,
    dumps,
    fmt_hour,
    hours,
    machine_busy_s,
    measure,
    parse_hour,
    process_cpu_s,
    use_source,
)

PY = sys.executable
CASES = ("throughput", "busy", "quiet", "memory", "azure")
MB = 1e6
NOISY_CORES = 0.3  # other jobs on the machine used more than this many cores during a run
MIB = 1024 * 1024
DAY = datetime(2025, 6, 3, tzinfo=UTC)  # a Tuesday, long past: every hour is exportable
WEEK = datetime(2025, 6, 2, tzinfo=UTC)  # Monday .. Sunday

# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class Params:
    """Everything ``--quick`` scales down."""

    tp_hours: int
    tp_events: int
    tp_concurrency: tuple[int, ...]
    tp_fsync_row: bool
    tp_repeats: int
    busy_hours: int
    busy_events: int
    busy_latency: dict[str, Any]
    busy_concurrency: tuple[int, ...]
    quiet_hours: int
    quiet_events: int
    quiet_latency: dict[str, Any]
    quiet_concurrency: int
    mem_events: tuple[int, ...]
    az_repeats: int
    timeout_s: float


FULL = Params(
    tp_hours=24,
    tp_events=60_000,  # x 24 = 1.44 M events, ~2.6 GB NDJSON, 3 partitions per hour
    tp_concurrency=(1, 4),
    tp_fsync_row=True,
    tp_repeats=5,
    busy_hours=24,
    busy_events=5_200,  # ~1.0 MB ZIP per hour on average (0.8-1.2 MB)
    busy_latency={"fixed_s": 0.5, "s_per_mb": 2.0, "mb_per_s_per_conn": 20.0, "max_in_flight": 8},
    busy_concurrency=(1, 4, 8, 16),
    quiet_hours=7 * 24,
    quiet_events=100,  # ~20 KB ZIP per hour on average (16-25 KB)
    quiet_latency={"fixed_s": 2.0, "s_per_mb": 2.0, "mb_per_s_per_conn": 20.0, "max_in_flight": 8},
    quiet_concurrency=4,
    mem_events=(140_000, 560_000),  # ~250 MB and ~1 GB of NDJSON in one hour
    az_repeats=2,
    timeout_s=900.0,
)
QUICK = Params(
    tp_hours=2,
    tp_events=20_000,
    tp_concurrency=(1, 4),
    tp_fsync_row=False,
    tp_repeats=1,
    busy_hours=6,
    busy_events=1_300,  # ~250 KB ZIP per hour
    busy_latency={"fixed_s": 0.5, "s_per_mb": 2.0, "mb_per_s_per_conn": 20.0, "max_in_flight": 8},
    busy_concurrency=(1, 4, 8, 16),
    quiet_hours=2 * 24,
    quiet_events=100,
    quiet_latency={"fixed_s": 0.5, "s_per_mb": 2.0, "mb_per_s_per_conn": 20.0, "max_in_flight": 8},
    quiet_concurrency=4,
    mem_events=(14_000, 56_000),  # ~25 MB and ~100 MB
    az_repeats=1,
    timeout_s=180.0,
)

# ----------------------------------------------------------------------------- results


@dataclass(slots=True)
class Row:
    """One line of a case's table (the median repeat when there are several)."""

    variant: str
    tool: str  # async-amp | baseline | reference
    available: bool = True
    note: str = ""
    wall_s: float | None = None
    cpu_s: float | None = None
    user_s: float | None = None
    sys_s: float | None = None
    peak_rss: int | None = None
    bytes_written: int | None = None
    events: int | None = None
    requests: int | None = None
    retries: int | None = None
    throttled: int | None = None
    server_cpu_s: float | None = None
    other_cpu_s: float | None = None  # Azurite's, in the azure case
    foreign_cpu_s: float | None = None  # used by processes outside the benchmark meanwhile
    exit_code: int | None = None
    valid: bool | None = None
    problem: str = ""
    ideal_s: float | None = None
    speedup: float | None = None  # baseline wall / this wall
    repeats: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float | None:
        if self.bytes_written is None or not self.wall_s:
            return None
        return self.bytes_written / MB / self.wall_s

    @property
    def events_per_s(self) -> float | None:
        if self.events is None or not self.wall_s:
            return None
        return self.events / self.wall_s

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        data["mb_per_s"] = self.mb_per_s
        data["events_per_s"] = self.events_per_s
        return _rounded(data)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


@dataclass(slots=True)
class CaseResult:
    name: str
    title: str
    params: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    generation_s: float = 0.0
    warm_s: float = 0.0
    seconds: float = 0.0
    headline: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    server_cpu_total_s: float | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return _rounded(
            {
                "name": self.name,
                "title": self.title,
                "params": self.params,
                "generation_s": self.generation_s,
                "warm_s": self.warm_s,
                "seconds": self.seconds,
                "server_cpu_total_s": self.server_cpu_total_s,
                "headline": self.headline,
                "targets": self.targets,
                "error": self.error,
                "rows": [r.to_json() for r in self.rows],
            }
        )


# ----------------------------------------------------------------------------- data


def _warm_part(spec: dict[str, Any], hour: str, page: int) -> tuple[int, int]:
    """Generate one partition into the cache; returns (gz bytes, NDJSON bytes)."""
    data = DataSpec.from_json(spec).dataset().gz(parse_hour(hour), page)
    return len(data), int.from_bytes(data[-4:], "little")  # gzip ISIZE: size mod 2**32


@dataclass(frozen=True, slots=True)
class Expected:
    events: int
    ndjson_bytes: int
    gz_bytes: int
    generation_s: float


def generate(spec: DataSpec, hour_list: Sequence[datetime]) -> Expected:
    """Make sure every partition is in the cache (2 processes); the totals a run must match."""
    ds = spec.dataset()
    parts = [(fmt_hour(h), p) for h in hour_list for p in ds.pages(h)]
    began = time.monotonic()
    with ProcessPoolExecutor(max_workers=2) as pool:
        sizes = list(
            pool.map(
                _warm_part,
                [spec.to_json()] * len(parts),
                [h for h, _ in parts],
                [p for _, p in parts],
            )
        )
    return Expected(
        events=sum(ds.hour_event_count(h) for h in hour_list),
        ndjson_bytes=sum(n for _, n in sizes),
        gz_bytes=sum(g for g, _ in sizes),
        generation_s=time.monotonic() - began,
    )


# ----------------------------------------------------------------------------- the server


class Server:
    """``python -m benchmarks.server`` as a child process, with its control routes."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.url = ""
        self.total_cpu_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "server.stderr").open("wb") as err:
            self._proc = subprocess.Popen(
                [PY, "-m", "benchmarks.server", "--spec", dumps(self.spec)],
                cwd=self.workdir,  # not ROOT: -m puts the cwd first on sys.path
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], 60)
        line = self._proc.stdout.readline() if ready else b""
        if not line:
            self.__exit__(None, None, None)
            tail = (self.workdir / "server.stderr").read_text(errors="replace")[-2000:]
            msg = f"the simulator process did not start: {tail}"
            raise RuntimeError(msg)
        self.url = json.loads(line)["url"]
        return self

    def __exit__(self, *_: object) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                self.total_cpu_s = usage.ru_utime + usage.ru_stime
                break
            time.sleep(0.05)
        else:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def _call(self, path: str, payload: Any = None, timeout: float = 600) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method="GET" if data is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def warm(self, windows: Sequence[tuple[datetime, datetime]]) -> tuple[list[int], float]:
        answer = self._call(
            "/_bench/warm", {"windows": [[fmt_hour(a), fmt_hour(b)] for a, b in windows]}
        )
        return answer["sizes"], answer["seconds"]

    def reset(self) -> None:
        self._call("/_bench/reset", {})

    def stats(self) -> dict[str, Any]:
        return dict(self._call("/_bench/stats"))


def windows_of(first: datetime, count: int, width: int) -> list[tuple[datetime, datetime]]:
    """``count`` hours from ``first`` in windows of ``width`` hours (the last may be shorter)."""
    return [
        (first + timedelta(hours=n), first + timedelta(hours=min(n + width, count) - 1))
        for n in range(0, count, width)
    ]


def request_cost(size: int, latency: dict[str, Any]) -> float:
    """Seconds one request takes at the simulator with nothing else in flight."""
    mb = size / MB
    rate = latency.get("mb_per_s_per_conn") or 0
    return latency["fixed_s"] + latency["s_per_mb"] * mb + (mb / rate if rate else 0)


def ideal_wall(sizes: Sequence[int], concurrency: int, latency: dict[str, Any]) -> float:
    """Lower bound on wall time: the work spread perfectly over the usable slots.

    ``max(sum(t_i) / min(c, max_in_flight), max(t_i))``: no schedule can keep more than
    ``min(c, max_in_flight)`` requests busy at once, and none finishes before its longest
    request does.
    """
    costs = [request_cost(s, latency) for s in sizes]
    slots = min(concurrency, latency.get("max_in_flight") or concurrency)
    return max(sum(costs) / slots, *costs)


def ideal_of_log(log: Sequence[Sequence[Any]], concurrency: int, latency: dict[str, Any]) -> float:
    """``ideal_wall`` over the requests a run actually made (200s by size, 404s fixed cost)."""
    sizes = [int(bytes_sent) for _, _, status, bytes_sent in log if status == 200]
    costs = [request_cost(s, latency) for s in sizes]
    costs += [latency["fixed_s"]] * sum(1 for _, _, status, _ in log if status == 404)
    if not costs:
        return 0.0
    slots = min(concurrency, latency.get("max_in_flight") or concurrency)
    return max(sum(costs) / slots, *costs)


def in_order_wall(sizes: Sequence[int], concurrency: int, latency: dict[str, Any]) -> float:
    """Wall time of a bounded pool taking requests in order: each starts when a slot frees.

    What a perfect client with ``c`` slots would get, with no 429s and no overhead; it is
    above ``ideal_wall`` when the requests don't divide evenly over the slots.
    """
    slots = [0.0] * min(concurrency, latency.get("max_in_flight") or concurrency)
    for size in sizes:
        heapq.heapreplace(slots, slots[0] + request_cost(size, latency))
    return max(slots)


# ----------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, params: Params, *, quick: bool) -> None:
        self.p = params
        self.quick = quick
        self._window_flag: bool | None = None

    # --- one run of each tool -------------------------------------------------------------

    def _workdir(self, case: str, label: str) -> Path:
        slug = "".join(c if c.isalnum() else "-" for c in label).strip("-")
        work = WORK_DIR / case / slug
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return work

    @staticmethod
    def _config(work: Path, *, container: str | None = None) -> Path:
        text = '[amplitude]\nproject = "bench"\n\n[output]\nlog_dir = "logs"\n'
        if container:
            text += f'\n[azure]\ncontainer = "{container}"\n'
        path = work / "bench.toml"
        path.write_text(text)
        return path

    def _extract_env(self, server: Server, *, fsync: bool, extra: dict[str, str]) -> dict[str, str]:
        return child_env(
            AMP_API_KEY=API_KEY,
            AMP_SECRET_KEY=SECRET_KEY,
            ASYNC_AMP_AMPLITUDE_BASE_URL=server.url,
            ASYNC_AMP_OUTPUT_FSYNC="true" if fsync else "false",
            **extra,
        )

    def extract(
        self,
        case: str,
        label: str,
        server: Server,
        *,
        first: datetime,
        last: datetime,
        concurrency: int,
        expected: Expected,
        args: Sequence[str] = (),
        fsync: bool = False,
        azure: azurite_mod.Azurite | None = None,
        wrap: Sequence[str] = (),
    ) -> dict[str, Any]:
        """One ``async-amp extract`` child, measured and checked."""
        work = self._workdir(case, label)
        container = "bench" if azure else None
        cmd = [
            *wrap,
            PY,
            "-m",
            "async_amp",
            "extract",
            "--config",
            str(self._config(work, container=container)),
            "--start",
            fmt_hour(first),
            "--end",
            fmt_hour(last),
            "--output",
            str(work / "out"),
            "--concurrency",
            str(concurrency),
            "--log-format",
            "json",
            "--quiet",
            "--log-file",
            str(work / "run.jsonl"),
            *args,
        ]
        extra_env: dict[str, str] = {}
        if azure is not None:
            cmd += ["--sink", "azure"]
            extra_env["AZURE_STORAGE_CONNECTION_STRING"] = azure.connection_string
        env = self._extract_env(server, fsync=fsync, extra=extra_env)
        result = self._measured(cmd, env, work, server, azure)
        summary = _run_summary(work / "run.jsonl")
        result.update(
            events=summary.get("events"),
            requests=summary.get("requests"),
            retries=summary.get("retries"),
            throttled=summary.get("throttled"),
            summary=summary,
        )
        if azure is not None:
            result["bytes_written"] = _azure_bytes(azure, container or "")
        else:
            result["bytes_written"] = _local_bytes(work / "out")
        _check(result, expected)
        _clean(work)
        return result

    def baseline(
        self,
        case: str,
        server: Server,
        *,
        first: datetime,
        last: datetime,
        expected: Expected,
        label: str = "baseline",
    ) -> dict[str, Any]:
        work = self._workdir(case, label)
        cmd = [
            PY,
            str(ROOT / "benchmarks" / "baseline.py"),
            "--url",
            server.url,
            "--start",
            fmt_hour(first),
            "--end",
            fmt_hour(last),
            "--output",
            str(work / "out"),
        ]
        env = child_env(AMP_API_KEY=API_KEY, AMP_SECRET_KEY=SECRET_KEY)
        result = self._measured(cmd, env, work, server, None)
        try:
            report = json.loads(result["stdout"].strip().splitlines()[-1])
        except (IndexError, ValueError):
            report = {}
        result.update(
            events=report.get("events"),
            requests=report.get("requests"),
            bytes_written=_local_bytes(work / "out"),
        )
        _check(result, expected)
        _clean(work)
        return result

    def _measured(
        self,
        cmd: list[str],
        env: dict[str, str],
        work: Path,
        server: Server | None,
        azure: azurite_mod.Azurite | None,
    ) -> dict[str, Any]:
        if server is not None:
            server.reset()
        cpu0 = server.cpu_s() if server is not None else 0.0
        other0 = process_cpu_s(azure.pid) if azure else None
        busy0 = machine_busy_s()
        m: Measured = measure(cmd, env=env, cwd=work, timeout_s=self.p.timeout_s)
        busy = machine_busy_s() - busy0
        server_cpu = server.cpu_s() - cpu0 if server is not None else None
        other = process_cpu_s(azure.pid) - other0 if azure and other0 is not None else None
        # CPU that processes outside this benchmark used meanwhile (other jobs on the machine)
        foreign = busy - m.cpu_s - (server_cpu or 0.0) - (other or 0.0)
        stats = server.stats() if server is not None else {}
        problem = ""
        if m.timed_out:
            problem = f"killed after {self.p.timeout_s:.0f} s"
        elif m.exit_code != 0:
            problem = f"exit {m.exit_code}: {_last_line(m.stderr) or _last_line(m.stdout)}"
        return {
            "wall_s": m.wall_s,
            "user_s": m.user_s,
            "sys_s": m.sys_s,
            "cpu_s": m.cpu_s,
            "peak_rss": m.peak_rss,
            "exit_code": m.exit_code,
            "server_cpu_s": server_cpu,
            "other_cpu_s": other,
            "foreign_cpu_s": max(0.0, foreign),
            "server": stats,
            "stdout": m.stdout[-4000:],
            "stderr": m.stderr[-4000:],
            "problem": problem,
        }

    def upload_reference(
        self, src: Path, azure: azurite_mod.Azurite, expected: Expected, uploader: dict[str, Any]
    ) -> dict[str, Any]:
        """``benchmarks.azure_upload``: the SDK alone uploading the same NDJSON files."""
        work = self._workdir("azure", "reference")
        cmd = [PY, "-m", "benchmarks.azure_upload", str(src), "reference"]
        cmd += [f"--method={uploader['method']}"]
        cmd += [f"--files-in-flight={uploader['files_in_flight']}"]
        cmd += [f"--max-concurrency={uploader['max_concurrency']}"]
        cmd += [f"--block-mib={uploader['block_mib']}"]
        env = child_env(AZURE_STORAGE_CONNECTION_STRING=azure.connection_string)
        result = self._measured(cmd, env, work, None, azure)
        result["bytes_written"] = _azure_bytes(azure, "reference")
        result["events"] = expected.events  # not counted by an upload; the same files
        _check(result, expected)
        shutil.rmtree(work, ignore_errors=True)
        return result

    @staticmethod
    def row(variant: str, tool: str, runs: list[dict[str, Any]], note: str = "") -> Row:
        """The median-wall run of ``runs`` as a row; every run kept in ``repeats``."""
        ordered = sorted(runs, key=lambda r: r["wall_s"])
        mid = ordered[(len(ordered) - 1) // 2]
        walls = [r["wall_s"] for r in runs]
        if len(runs) > 1:
            spread = f"median of {len(runs)}: {min(walls):.2f}-{max(walls):.2f} s"
            note = f"{note}; {spread}" if note else spread
        row = Row(
            variant=variant,
            tool=tool,
            note=note,
            wall_s=mid["wall_s"],
            cpu_s=mid["cpu_s"],
            user_s=mid["user_s"],
            sys_s=mid["sys_s"],
            peak_rss=mid["peak_rss"],
            bytes_written=mid.get("bytes_written"),
            events=mid.get("events"),
            requests=mid.get("requests"),
            retries=mid.get("retries"),
            throttled=mid.get("throttled"),
            server_cpu_s=mid.get("server_cpu_s"),
            other_cpu_s=mid.get("other_cpu_s"),
            foreign_cpu_s=mid.get("foreign_cpu_s"),
            exit_code=mid["exit_code"],
            valid=all(r.get("valid") for r in runs),
            problem="; ".join(sorted({r["problem"] for r in runs if r.get("problem")})),
        )
        row.repeats = [
            {k: v for k, v in r.items() if k not in ("stdout", "stderr", "summary", "server")}
            for r in runs
        ]
        server = dict(mid.get("server") or {})
        log = server.pop("log", [])
        row.extra["server"] = server
        if 0 < len(log) <= 40:  # the windows a run asked for, e.g. what auto chose
            row.extra["windows"] = [f"{a}..{b} {status} {size}" for a, b, status, size in log]
        return row

    # --- capabilities -----------------------------------------------------------------------

    def window_flag(self) -> bool:
        """Does this build's ``extract`` have ``--window-hours``?"""
        if self._window_flag is None:
            done = subprocess.run(
                [PY, "-m", "async_amp", "extract", "--help"],
                capture_output=True,
                text=True,
                cwd=tempfile.gettempdir(),
                env=child_env(),
                check=False,
            )
            self._window_flag = "--window-hours" in done.stdout
        return self._window_flag

    def probe(self, args: Sequence[str], *, env_extra: dict[str, str] | None = None) -> str:
        """'' when ``extract ARGS --dry-run`` is accepted, else the error it prints."""
        work = self._workdir("probe", "probe")
        cmd = [PY, "-m", "async_amp", "extract", "--config", str(self._config(work))]
        cmd += ["--start", fmt_hour(DAY), "--end", fmt_hour(DAY + timedelta(hours=1))]
        cmd += ["--output", str(work / "out"), "--log-format", "json", "--quiet", "--dry-run"]
        cmd += list(args)
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=work,
            env=child_env(**(env_extra or {})),
            check=False,
            timeout=120,
        )
        shutil.rmtree(work, ignore_errors=True)
        if done.returncode == 0:
            return ""
        return _last_line(done.stderr) or f"exit {done.returncode}"


# ----------------------------------------------------------------------------- helpers


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _run_summary(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    for line in reversed(path.read_text(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("event") == "run.summary":
                return dict(record)
    return {}


def _local_bytes(out: Path) -> int:
    return sum(
        p.stat().st_size for p in out.rglob("*.json") if p.name != "_manifest.json" and p.is_file()
    )


def _azure_bytes(azure: azurite_mod.Azurite, container: str) -> int:
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    with BlobServiceClient.from_connection_string(azure.connection_string) as service:
        blobs = service.get_container_client(container).list_blobs()
        return sum(
            b.size
            for b in blobs
            if b.name.endswith(".json") and not b.name.endswith("_manifest.json")
        )


def _check(result: dict[str, Any], expected: Expected) -> None:
    problems = [result["problem"]] if result["problem"] else []
    if result.get("bytes_written") != expected.ndjson_bytes:
        problems.append(
            f"{result.get('bytes_written')} bytes written, {expected.ndjson_bytes} expected"
        )
    if result.get("events") != expected.events:
        problems.append(f"{result.get('events')} events, {expected.events} expected")
    result["valid"] = not problems
    result["problem"] = "; ".join(problems)


def _clean(work: Path) -> None:
    shutil.rmtree(work / "out", ignore_errors=True)
    os.sync()  # dirty pages of this run are not flushed on the next run's time


def _speedups(rows: list[Row]) -> None:
    base = next((r for r in rows if r.tool == "baseline" and r.wall_s), None)
    for row in rows:
        if base is not None and base.wall_s and row.wall_s and row.available:
            row.speedup = base.wall_s / row.wall_s


def _target(name: str, goal: str, measured: str, met: bool | None) -> dict[str, Any]:
    verdict = {True: "MET", False: "MISSED", None: "NOT AVAILABLE"}[met]
    return {"target": name, "goal": goal, "measured": measured, "met": met, "verdict": verdict}


def _find(rows: list[Row], variant: str) -> Row | None:
    return next((r for r in rows if r.variant == variant), None)


# ----------------------------------------------------------------------------- the cases


def case_throughput(bench: Bench, *, profile: bool) -> CaseResult:
    p = bench.p
    spec = DataSpec(events_per_hour=p.tp_events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.tp_hours)
    first, last = hour_list[0], hour_list[-1]
    result = CaseResult(
        "throughput",
        f"Throughput: {p.tp_hours} h x {p.tp_events:,} events, 3 partitions/h, no latency",
        {"data": spec.to_json(), "hours": p.tp_hours, "repeats": p.tp_repeats},
    )
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    result.params["expected"] = asdict(expected)
    server_spec = {"data": spec.to_json(), "zip_cache_bytes": 4 * 1024**3}
    with Server(server_spec, WORK_DIR / "throughput") as server:
        _, result.warm_s = server.warm(
            [(h, h) for h in hour_list] + [(first, last)]  # async-amp's windows and the baseline's
        )
        # Variants take turns, repeat after repeat, so a burst of load from elsewhere on a
        # shared machine lands on all of them rather than on one.
        common: dict[str, Any] = {"first": first, "last": last, "expected": expected}
        variants: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = []
        for c in p.tp_concurrency:
            variants.append(
                (
                    f"async-amp c={c}",
                    "async-amp",
                    "",
                    functools.partial(
                        bench.extract, "throughput", f"c{c}", server, concurrency=c, **common
                    ),
                )
            )
        if bench.window_flag() and not bench.probe(["--window-hours", "auto"]):
            # an extra row for the lead: auto windows on a busy day (the default is hourly)
            auto = functools.partial(
                bench.extract,
                "throughput",
                "auto",
                server,
                concurrency=4,
                args=["--window-hours", "auto"],
                **common,
            )
            auto()  # unmeasured: the server builds and caches the windows auto asks for
            note = "after one unmeasured run that builds its windows' ZIPs"
            variants.append(("async-amp c=4 --window-hours auto", "async-amp", note, auto))
        if p.tp_fsync_row:
            fsync = functools.partial(
                bench.extract, "throughput", "fsync", server, concurrency=4, fsync=True, **common
            )
            variants.append(("async-amp c=4 fsync=on", "async-amp", "fsync: the default", fsync))
        base = functools.partial(bench.baseline, "throughput", server, **common)
        variants.append(("baseline (1 day/request)", "baseline", "", base))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in variants}
        for _ in range(p.tp_repeats):
            for name, _tool, _note, fn in variants:
                runs[name].append(fn())
        for name, tool, note, _fn in variants:
            result.rows.append(bench.row(name, tool, runs[name], note))
        if profile:
            result.params["profile"] = profile_run(bench, server, first, last, expected)
    result.server_cpu_total_s = server.total_cpu_s
    _speedups(result.rows)

    best = max(
        (r for r in result.rows if r.tool == "async-amp" and "fsync" not in r.variant and r.valid),
        key=lambda r: r.mb_per_s or 0,
        default=None,
    )
    base = _find(result.rows, "baseline (1 day/request)")
    if best is not None and base is not None and best.wall_s and base.wall_s:
        result.headline.append(
            f"{best.variant}: {best.speedup:.1f}x the baseline's speed, "
            f"{(best.cpu_s or 0) / (base.cpu_s or 1):.2f}x its CPU, "
            f"{(best.peak_rss or 0) / (base.peak_rss or 1):.2f}x its peak RSS"
        )
        gbps = (best.mb_per_s or 0) / 1000
        result.targets.append(
            _target(
                "throughput",
                ">= 1.0 GB/s NDJSON written, 1-day local run",
                f"{gbps:.2f} GB/s ({best.variant})",
                gbps >= 1.0,
            )
        )
    return result


def profile_run(
    bench: Bench, server: Server, first: datetime, last: datetime, expected: Expected
) -> dict[str, Any]:
    """One c=4 run under py-spy (sampling all threads); the top functions by own time."""
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(pyspy).exists():
        return {"error": "py-spy is not installed (pip install py-spy)"}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    raw = RESULTS_DIR / "profile-throughput.txt"
    wrap = [pyspy, "record", "--rate", "250", "--format", "raw", "--output", str(raw), "--"]
    # raw = collapsed stacks with line numbers; summarize_profile groups them
    run = bench.extract(
        "throughput",
        "profile",
        server,
        first=first,
        last=last,
        concurrency=4,
        expected=expected,
        wrap=wrap,
    )
    report = summarize_profile(raw)
    report["run"] = {k: run[k] for k in ("wall_s", "cpu_s", "valid", "problem")}
    return report


# Leaf frames of a thread that is waiting, not working: py-spy counts some of them as active.
WAITING = frozenset(
    {"Condition.wait", "Queue.get", "EpollSelector.select", "Event.wait", "_shutdown", ""}
)


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Shares of the working samples per function, from py-spy's raw (collapsed) output.

    Samples whose innermost frame is a wait (a worker thread blocked on a lock or queue, the
    event loop in ``select``, a thread with no Python frame) are counted apart as "waiting";
    percentages are of the remaining working samples. Own time is per line for async_amp's
    functions (C calls such as sha256 or inflate are charged to the line that makes them).
    """
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = waiting = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";") if stack.strip() else [""]
        if _frame(frames[-1]).split(" (")[0] in WAITING:
            waiting += count
            continue
        own[_frame(frames[-1], lines=True)] += count
        for frame in {_frame(f) for f in frames}:
            incl[frame] += count
    busy = total - waiting
    if not busy:
        return {"error": f"no samples in {raw}"}
    return {
        "samples": total,
        "waiting_pct": 100 * waiting / total,
        "self": [{"function": f, "pct": 100 * n / busy} for f, n in own.most_common(top)],
        "inclusive": [
            {"function": f, "pct": 100 * n / busy}
            for f, n in incl.most_common()
            if "async_amp/" in f
        ][:top],
    }


def _frame(text: str, *, lines: bool = False) -> str:
    """``decode (/work/main/async_amp/archive.py:75)`` -> ``decode (async_amp/archive.py)``.

    With ``lines``, async_amp frames keep their line number.
    """
    name, _, where = text.strip().partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    if not path:
        path, line = where, ""
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3.11/", "bench-data/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if "/async_amp/" in path:
        path = "async_amp/" + path.split("/async_amp/", 1)[1]
    if lines and path.startswith("async_amp/") and line:
        return f"{name} ({path}:{line})"
    return f"{name} ({path})" if path else name


def case_busy(bench: Bench) -> CaseResult:
    p = bench.p
    latency = p.busy_latency
    spec = DataSpec(events_per_hour=p.busy_events, pages_per_hour=3, variation=0.3, seed=1)
    hour_list = hours(DAY, p.busy_hours)
    first, last = hour_list[0], hour_list[-1]
    result = CaseResult(
        "busy",
        f"Busy project: {p.busy_hours} h, Latency("
        f"{', '.join(f'{k}={v}' for k, v in latency.items())})",
        {"data": spec.to_json(), "hours": p.busy_hours, "latency": latency},
    )
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    result.params["expected"] = asdict(expected)
    with Server({"data": spec.to_json(), "latency": latency}, WORK_DIR / "busy") as server:
        hourly = [(h, h) for h in hour_list]
        sizes, warm_hourly = server.warm(hourly)
        day_sizes, warm_day = server.warm([(first, last)])
        result.warm_s = warm_hourly + warm_day
        result.params["zip_mb_per_hour"] = {
            "min": min(sizes) / MB,
            "mean": statistics.mean(sizes) / MB,
            "max": max(sizes) / MB,
        }
        result.title += (
            f", hourly ZIPs of {statistics.mean(sizes) / MB:.2f} MB on average "
            f"({min(sizes) / MB:.2f}-{max(sizes) / MB:.2f})"
        )
        for c in p.busy_concurrency:
            run = bench.extract(
                "busy", f"c{c}", server, first=first, last=last, concurrency=c, expected=expected
            )
            row = bench.row(f"async-amp c={c}", "async-amp", [run])
            row.ideal_s = ideal_wall(sizes, c, latency)
            row.extra["in_order_s"] = in_order_wall(sizes, c, latency)
            row.note = _join(
                f"{row.wall_s / row.ideal_s:.2f}x ideal (in-order pool: "
                f"{row.extra['in_order_s']:.2f} s)",
                row.note,
            )
            if run["server"].get("status", {}).get("429"):
                row.note = _join(row.note, f"{run['server']['status']['429']} x 429 from server")
            result.rows.append(row)
        if bench.window_flag() and not bench.probe(["--window-hours", "auto"]):
            run = bench.extract(
                "busy",
                "c8-auto",
                server,
                first=first,
                last=last,
                concurrency=8,
                expected=expected,
                args=["--window-hours", "auto"],
            )
            row = bench.row("async-amp c=8 --window-hours auto", "async-amp", [run])
            row.ideal_s = ideal_of_log(run["server"]["log"], 8, latency)
            row.note = _join(
                "extra row: auto windows on a busy project; "
                f"{row.wall_s / row.ideal_s:.2f}x the ideal for the windows it chose",
                row.note,
            )
            result.rows.append(row)
        run = bench.baseline("busy", server, first=first, last=last, expected=expected)
        row = bench.row("baseline (1 day/request)", "baseline", [run])
        row.ideal_s = ideal_wall(day_sizes, 1, latency)
        row.note = _join(f"{row.wall_s / row.ideal_s:.2f}x its own ideal", row.note)
        result.rows.append(row)
    result.server_cpu_total_s = server.total_cpu_s
    _speedups(result.rows)

    c8 = _find(result.rows, "async-amp c=8")
    if c8 is not None and c8.wall_s and c8.ideal_s and c8.speedup:
        ratio = c8.wall_s / c8.ideal_s
        result.headline.append(
            f"c=8: {c8.speedup:.1f}x faster than the baseline, {ratio:.2f}x the ideal schedule"
        )
        result.targets.append(
            _target("busy: vs ideal", "c=8 within 1.3x of ideal", f"{ratio:.2f}x", ratio <= 1.3)
        )
        result.targets.append(
            _target(
                "busy: vs baseline",
                "c=8 >= 5x faster than baseline",
                f"{c8.speedup:.1f}x",
                c8.speedup >= 5,
            )
        )
    return result


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def case_quiet(bench: Bench) -> CaseResult:
    p = bench.p
    latency = p.quiet_latency
    c = p.quiet_concurrency
    spec = DataSpec(events_per_hour=p.quiet_events, pages_per_hour=3, variation=0.3, seed=2)
    hour_list = hours(WEEK, p.quiet_hours)
    first, last = hour_list[0], hour_list[-1]
    days = p.quiet_hours // 24
    result = CaseResult(
        "quiet",
        f"Quiet project: {days} days, Latency("
        f"{', '.join(f'{k}={v}' for k, v in latency.items())}), concurrency {c}",
        {"data": spec.to_json(), "hours": p.quiet_hours, "latency": latency, "concurrency": c},
    )
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    result.params["expected"] = asdict(expected)
    has_flag = bench.window_flag()
    result.params["window_hours_flag"] = has_flag
    variants: list[tuple[str, str]] = [
        ("hourly (--window-hours 1)", "1"),
        ("6-hour windows (--window-hours 6)", "6"),
        ("24-hour windows (--window-hours 24)", "24"),
        ("auto (--window-hours auto)", "auto"),
    ]
    with Server({"data": spec.to_json(), "latency": latency}, WORK_DIR / "quiet") as server:
        size_of: dict[int, list[int]] = {}
        began = time.monotonic()
        for width in (1, 6, 24):
            size_of[width], _ = server.warm(windows_of(first, p.quiet_hours, width))
        result.warm_s = time.monotonic() - began
        hourly = size_of[1]
        result.params["zip_kb_per_hour"] = {
            "min": min(hourly) / 1e3,
            "mean": statistics.mean(hourly) / 1e3,
            "max": max(hourly) / 1e3,
        }
        result.title += (
            f", hourly ZIPs of {statistics.mean(hourly) / 1e3:.1f} KB on average "
            f"({min(hourly) / 1e3:.1f}-{max(hourly) / 1e3:.1f})"
        )
        for label, value in variants:
            width = int(value) if value.isdigit() else None
            if has_flag:
                reason = bench.probe(["--window-hours", value])
                args = ["--window-hours", value]
                shown = label
            elif value == "1":  # this build always asks hour by hour: run it without the flag
                reason, args = "", []
                shown = "hourly (no flag: this build's only mode)"
            else:
                reason = "--window-hours is not in this build of async-amp"
                args, shown = [], label
            if reason:
                result.rows.append(
                    Row(
                        variant=label,
                        tool="async-amp",
                        available=False,
                        note=f"not available: {reason}",
                    )
                )
                continue
            run = bench.extract(
                "quiet",
                f"w{value}",
                server,
                first=first,
                last=last,
                concurrency=c,
                expected=expected,
                args=args,
            )
            row = bench.row(shown, "async-amp", [run])
            if width is None:
                row.ideal_s = ideal_of_log(run["server"]["log"], c, latency)
                row.note = _join(
                    f"{row.wall_s / row.ideal_s:.2f}x the ideal for the windows it chose",
                    row.note,
                )
            else:
                row.ideal_s = ideal_wall(size_of[width], c, latency)
                row.extra["in_order_s"] = in_order_wall(size_of[width], c, latency)
                row.note = _join(
                    f"{row.wall_s / row.ideal_s:.2f}x ideal (in-order pool: "
                    f"{row.extra['in_order_s']:.2f} s)",
                    row.note,
                )
            result.rows.append(row)
        run = bench.baseline("quiet", server, first=first, last=last, expected=expected)
        row = bench.row("baseline (1 day/request)", "baseline", [run])
        row.ideal_s = ideal_wall(size_of[24], 1, latency)
        row.note = _join(f"{row.wall_s / row.ideal_s:.2f}x its own ideal", row.note)
        result.rows.append(row)
    result.server_cpu_total_s = server.total_cpu_s
    _speedups(result.rows)

    for row in result.rows:
        if row.tool != "async-amp":
            continue
        key = "auto" if "auto" in row.variant else "hourly" if "hourly" in row.variant else None
        if key is None:
            continue
        if not row.available:
            result.targets.append(
                _target(f"quiet: {key}", ">= 3x faster than baseline", "not available", None)
            )
            continue
        speed = row.speedup or 0
        result.targets.append(
            _target(f"quiet: {key}", ">= 3x faster than baseline", f"{speed:.2f}x", speed >= 3)
        )
        result.headline.append(f"{row.variant}: {speed:.2f}x the baseline's speed")
    return result


def case_memory(bench: Bench) -> CaseResult:
    p = bench.p
    hour = DAY + timedelta(hours=12)
    result = CaseResult(
        "memory",
        "Memory: peak RSS extracting one large hour (3 partitions), concurrency 4",
        {"hour": fmt_hour(hour), "events": list(p.mem_events)},
    )
    floor_work = bench._workdir("memory", "floor")
    floor_cmd = [PY, "-m", "async_amp", "extract", "--config", str(bench._config(floor_work))]
    floor_cmd += ["--start", fmt_hour(hour), "--end", fmt_hour(hour), "--dry-run"]
    floor_cmd += ["--output", str(floor_work / "out"), "--log-format", "json", "--quiet"]
    m = measure(floor_cmd, env=child_env(), cwd=floor_work, timeout_s=120)
    result.rows.append(
        Row(
            variant="startup floor (extract --dry-run)",
            tool="async-amp",
            wall_s=m.wall_s,
            cpu_s=m.cpu_s,
            user_s=m.user_s,
            sys_s=m.sys_s,
            peak_rss=m.peak_rss,
            exit_code=m.exit_code,
            valid=m.exit_code == 0,
            note="interpreter + imports, no request",
        )
    )
    by_size: dict[int, tuple[Row, Row]] = {}
    for events in p.mem_events:
        spec = DataSpec(
            events_per_hour=0, pages_per_hour=3, variation=0.3, hour_sizes={fmt_hour(hour): events}
        )
        expected = generate(spec, [hour])
        result.generation_s += expected.generation_s
        size = f"{expected.ndjson_bytes / MB:,.0f} MB hour"
        with Server({"data": spec.to_json()}, WORK_DIR / "memory") as server:
            _, warm_s = server.warm([(hour, hour)])
            result.warm_s += warm_s
            run = bench.extract(
                "memory",
                f"m{events}",
                server,
                first=hour,
                last=hour,
                concurrency=4,
                expected=expected,
            )
            ours = bench.row(f"async-amp, {size}", "async-amp", [run])
            run = bench.baseline(
                "memory", server, first=hour, last=hour, expected=expected, label=f"b{events}"
            )
            base = bench.row(f"baseline, {size}", "baseline", [run])
        ours.speedup = base.wall_s / ours.wall_s if base.wall_s and ours.wall_s else None
        ours.extra["ndjson_bytes"] = base.extra["ndjson_bytes"] = expected.ndjson_bytes
        ours.note = _join(
            f"{(ours.peak_rss or 0) / (base.peak_rss or 1):.2f}x baseline RSS", ours.note
        )
        result.rows += [ours, base]
        by_size[events] = (ours, base)
    small, big = by_size[min(p.mem_events)][0], by_size[max(p.mem_events)][0]
    if small.peak_rss and big.peak_rss:
        growth = (big.peak_rss - small.peak_rss) / MIB
        big_mb = big.peak_rss / MB
        flat = growth <= 10
        result.headline.append(
            f"peak RSS {small.peak_rss / MIB:.0f} MiB -> {big.peak_rss / MIB:.0f} MiB while the "
            f"hour grows {max(p.mem_events) / min(p.mem_events):.0f}x "
            f"(baseline {by_size[max(p.mem_events)][1].peak_rss / MIB:.0f} MiB)"  # type: ignore[operator]
        )
        result.targets.append(
            _target(
                "memory: 1 GB hour",
                "<= 100 MB (1e8 bytes) peak RSS",
                f"{big_mb:.1f} MB ({big.peak_rss / MIB:.1f} MiB)",
                big.peak_rss <= 100 * MB,
            )
        )
        result.targets.append(
            _target(
                "memory: flat",
                "the 4x larger hour adds <= 10 MiB peak RSS",
                f"{growth:+.1f} MiB",
                flat,
            )
        )
    return result


def materialize_ndjson(spec: DataSpec, hour_list: Sequence[datetime], dest: Path) -> int:
    """Write the NDJSON files an extraction produces (from the gz cache, not timed)."""
    from isal import igzip  # noqa: PLC0415

    ds = spec.dataset()
    shutil.rmtree(dest, ignore_errors=True)
    total = 0
    for hour in hour_list:
        for page in ds.pages(hour):
            path = dest / ds.member_name(hour, page).removesuffix(".gz")
            path.parent.mkdir(parents=True, exist_ok=True)
            data = igzip.decompress(ds.gz(hour, page))
            path.write_bytes(data)
            total += len(data)
    return total


def case_azure(bench: Bench) -> CaseResult:
    p = bench.p
    spec = DataSpec(events_per_hour=p.tp_events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.tp_hours)
    first, last = hour_list[0], hour_list[-1]
    # upload_blob: the fastest of the settings tried on this machine (files at once x blocks
    # per file: 4x1, 4x2, 4x4, 8x2, 2x4, 1x8, 2x1, 1x1 all land at 40-66 MB/s, bound by
    # Azurite's CPU). blocks: stage_block with Content-MD5 + commit_block_list, as the sink does,
    # which Azurite takes for well under half the CPU per byte: the higher ceiling, and the one
    # the target is judged against.
    uploaders: dict[str, dict[str, Any]] = {
        "upload_blob": {"method": "upload_blob", "files_in_flight": 4, "max_concurrency": 1},
        "blocks": {"method": "blocks", "files_in_flight": 4, "max_concurrency": 1},
    }
    for uploader in uploaders.values():
        uploader["block_mib"] = 8
    result = CaseResult(
        "azure",
        f"Azure sink into Azurite {azurite_mod.version()}: the throughput data "
        f"({p.tp_hours} h x {p.tp_events:,} events), concurrency 4",
        {"data": spec.to_json(), "hours": p.tp_hours, "uploaders": uploaders},
    )
    missing = azurite_mod.available()
    if missing:
        result.error = missing
        result.rows.append(
            Row(
                "async-amp --sink azure",
                "async-amp",
                available=False,
                note=f"not available: {missing}",
            )
        )
        return result
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    src = WORK_DIR / "azure" / "src"
    began = time.monotonic()
    materialize_ndjson(spec, hour_list, src)
    result.params["materialize_s"] = time.monotonic() - began
    server_spec = {"data": spec.to_json(), "zip_cache_bytes": 4 * 1024**3}
    ours_runs: list[dict[str, Any]] = []
    ref_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in uploaders}
    reason = ""
    try:
        with Server(server_spec, WORK_DIR / "azure") as server:
            _, result.warm_s = server.warm([(h, h) for h in hour_list])
            # a fresh in-memory Azurite for every run; the two tools take turns
            for _ in range(p.az_repeats):
                with azurite_mod.run_azurite() as az:
                    reason = reason or bench.probe(
                        ["--sink", "azure"],
                        env_extra={"AZURE_STORAGE_CONNECTION_STRING": az.connection_string},
                    )
                    if not reason:
                        ours_runs.append(
                            bench.extract(
                                "azure",
                                "extract",
                                server,
                                first=first,
                                last=last,
                                concurrency=4,
                                expected=expected,
                                azure=az,
                            )
                        )
                for name, uploader in uploaders.items():
                    with azurite_mod.run_azurite() as az:
                        ref_runs[name].append(bench.upload_reference(src, az, expected, uploader))
        result.server_cpu_total_s = server.total_cpu_s
    finally:
        shutil.rmtree(src, ignore_errors=True)
    if ours_runs:
        row = bench.row("async-amp --sink azure c=4", "async-amp", ours_runs)
        row.note = _join(f"Azurite CPU {row.other_cpu_s:.1f} s", row.note)
    else:
        row = Row(
            "async-amp --sink azure c=4",
            "async-amp",
            available=False,
            note=f"not available: {reason}",
        )
    result.rows.append(row)
    refs: list[Row] = []
    for name, uploader in uploaders.items():
        how = "upload_blob" if name == "upload_blob" else "stage_block(MD5) + commit"
        ref = bench.row(f"reference: SDK {how}", "reference", ref_runs[name])
        ref.note = _join(
            f"Azurite CPU {ref.other_cpu_s:.1f} s; {uploader['files_in_flight']} files at once, "
            f"max_concurrency {uploader['max_concurrency']}, {uploader['block_mib']} MiB blocks",
            ref.note,
        )
        refs.append(ref)
    result.rows += refs
    ours = _find(result.rows, "async-amp --sink azure c=4")
    best = max(refs, key=lambda r: r.mb_per_s or 0)
    goal = ">= 80% of Azurite's own upload throughput (the faster reference)"
    if ours is not None and ours.available and ours.mb_per_s and best.mb_per_s:
        for ref in refs:
            share = ours.mb_per_s / (ref.mb_per_s or 1)
            ours.note = _join(ours.note, f"{100 * share:.0f}% of {ref.variant}")
        share = ours.mb_per_s / best.mb_per_s
        result.headline.append(
            f"--sink azure: {ours.mb_per_s:.0f} MB/s = {100 * share:.0f}% of the fastest plain "
            f"SDK upload of the same files into Azurite ({best.mb_per_s:.0f} MB/s, "
            f"{best.variant.removeprefix('reference: ')})"
        )
        result.targets.append(_target("azure", goal, f"{100 * share:.0f}%", share >= 0.8))
    else:
        result.targets.append(_target("azure", goal, "not available", None))
    return result


# ----------------------------------------------------------------------------- output


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    from importlib import metadata  # noqa: PLC0415

    versions = {}
    for name in ("async-amp", "aiohttp", "isal", "stream-unzip", "azure-storage-blob", "anyio"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "azurite": azurite_mod.version(),
        "git": git,
    }


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


COLUMNS = (
    ("variant", 42, "<"),
    ("wall s", 8, ">"),
    ("CPU s", 7, ">"),
    ("srv CPU", 8, ">"),
    ("RSS MiB", 8, ">"),
    ("NDJSON MB", 10, ">"),
    ("MB/s", 7, ">"),
    ("events/s", 10, ">"),
    ("reqs", 5, ">"),
    ("others", 7, ">"),
    ("ideal s", 8, ">"),
    ("vs base", 8, ">"),
)


def row_cells(row: Row) -> list[str]:
    if not row.available:
        return [row.variant, "n/a", *[""] * (len(COLUMNS) - 2)]
    return [
        row.variant + ("" if row.valid in (True, None) else " INVALID"),
        _f(row.wall_s, ".2f"),
        _f(row.cpu_s, ".2f"),
        _f(row.server_cpu_s, ".2f"),
        _f(row.peak_rss / MIB if row.peak_rss else None, ".0f"),
        _f(row.bytes_written / MB if row.bytes_written is not None else None, ",.0f"),
        _f(row.mb_per_s, ",.0f"),
        _f(row.events_per_s, ",.0f"),
        _f(row.requests, "d"),
        _f(row.foreign_cpu_s, ".1f"),
        _f(row.ideal_s, ".2f"),
        "-" if row.speedup is None else f"{row.speedup:.2f}x",
    ]


def mark_noisy(case: CaseResult) -> None:
    """Say so on rows during which other jobs on the machine took a good share of the CPU."""
    for row in case.rows:
        if row.foreign_cpu_s and row.wall_s and row.foreign_cpu_s / row.wall_s > NOISY_CORES:
            cores = row.foreign_cpu_s / row.wall_s
            row.note = _join(row.note, f"noisy: other jobs used {cores:.1f} cores meanwhile")


def render_case(case: CaseResult) -> str:
    lines = [f"== {case.name}: {case.title}"]
    if case.error:
        lines.append(f"   error: {case.error}")
    lines.append(
        f"   data generation {case.generation_s:.1f} s, server ZIP warm-up {case.warm_s:.1f} s "
        "(not counted)"
    )
    header = "  ".join(f"{name:{align}{width}}" for name, width, align in COLUMNS)
    lines += [header, "-" * len(header)]
    for row in case.rows:
        cells = row_cells(row)
        lines.append("  ".join(f"{c:{a}{w}}" for c, (_, w, a) in zip(cells, COLUMNS, strict=True)))
    notes = [(r.variant, r.note, r.problem) for r in case.rows if r.note or r.problem]
    for variant, note, problem in notes:
        lines.append(f"   {variant}: {_join(note, ('PROBLEM: ' + problem) if problem else '')}")
    for line in case.headline:
        lines.append(f"   => {line}")
    for t in case.targets:
        lines.append(f"   target {t['target']}: {t['goal']}: {t['measured']} -> {t['verdict']}")
    return "\n".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark async-amp against a naive export script on a simulated API.",
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run (< 2 min)")
    parser.add_argument(
        "--case", action="append", choices=CASES, help="run only this case (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="results file (default benchmarks/results/...)")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one throughput run with py-spy"
    )
    parser.add_argument(
        "--rev",
        metavar="REV",
        help="benchmark async_amp as committed at this git revision (e.g. HEAD), not the "
        "working tree: a tree others are editing can change under a long run",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="JSON",
        help="print the tables of an earlier results file as Markdown and exit (for docs)",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    source = "working tree"
    if args.rev:
        sha, path = snapshot(args.rev)
        use_source(path)
        source = f"git archive of {args.rev} ({sha[:12]})"
    params = QUICK if args.quick else FULL
    out = args.json or RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    bench = Bench(params, quick=args.quick)
    selected = args.case or list(CASES)
    info = machine()
    info["source"] = source
    info["async_amp_imported_from"] = subprocess.run(
        [PY, "-c", "import async_amp; print(async_amp.__file__)"],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=tempfile.gettempdir(),
        check=False,
    ).stdout.strip()
    print(
        f"async-amp benchmarks ({'quick' if args.quick else 'full'}) on {info['nproc']} CPUs "
        f"({info['cpu_model']}), Python {info['python']}, {info['git']}; async_amp from "
        f"{source}",
        flush=True,
    )
    print("simulator, extractor and baseline share these cores; see 'srv CPU'.\n", flush=True)
    started = time.monotonic()
    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "cases": [],
    }
    runners: dict[str, Callable[[], CaseResult]] = {
        "throughput": lambda: case_throughput(bench, profile=args.profile),
        "busy": lambda: case_busy(bench),
        "quiet": lambda: case_quiet(bench),
        "memory": lambda: case_memory(bench),
        "azure": lambda: case_azure(bench),
    }
    failed = False
    for name in CASES:
        if name not in selected:
            continue
        began = time.monotonic()
        try:
            case = runners[name]()
        except Exception as exc:  # one broken case must not hide the others' numbers
            failed = True
            traceback.print_exc()
            case = CaseResult(name, name, {}, error=f"{type(exc).__name__}: {exc}")
        case.seconds = time.monotonic() - began
        mark_noisy(case)
        if args.quick:  # scaled-down data: the targets are about the full-size cases
            for target in case.targets:
                target["met"], target["verdict"] = None, "not judged (--quick)"
        report["cases"].append(case.to_json())
        report["duration_s"] = round(time.monotonic() - started, 1)
        write_json(out, report)
        print(render_case(case) + f"\n   ({case.seconds:.0f} s)\n", flush=True)
        profile = case.params.get("profile")
        if profile:
            print(render_profile(profile), flush=True)
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    print(f"total {time.monotonic() - started:.0f} s; results in {out}")
    return 1 if failed else 0


def markdown(report: dict[str, Any]) -> str:
    """The tables of a results file as Markdown (docs/benchmarks.md is written from these)."""
    head = "| variant | wall s | CPU s | sim CPU s | peak RSS MiB | NDJSON MB | MB/s | events/s "
    head += "| requests | others' CPU s | ideal s | vs baseline |"
    out: list[str] = []
    for case in report["cases"]:
        out += [f"### {case['name']}: {case['title']}", "", head, "|---" * 12 + "|"]
        for r in case["rows"]:
            if not r["available"]:
                out.append(f"| {r['variant']} | not available |" + " |" * 10)
                continue
            cells = [
                r["variant"] + ("" if r["valid"] in (True, None) else " **INVALID**"),
                _f(r["wall_s"], ".2f"),
                _f(r["cpu_s"], ".2f"),
                _f(r["server_cpu_s"], ".2f"),
                _f(r["peak_rss"] / MIB if r["peak_rss"] else None, ".0f"),
                _f(r["bytes_written"] / MB if r["bytes_written"] is not None else None, ",.0f"),
                _f(r["mb_per_s"], ",.0f"),
                _f(r["events_per_s"], ",.0f"),
                _f(r["requests"], "d"),
                _f(r["foreign_cpu_s"], ".1f"),
                _f(r["ideal_s"], ".2f"),
                "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        out += [f"- {r['variant']}: {r['note']}" for r in case["rows"] if r["note"]]
        out += [f"- **{line}**" for line in case["headline"]]
        out += [
            f"- target {t['target']}: {t['goal']}: {t['measured']} -> **{t['verdict']}**"
            for t in case["targets"]
        ]
        out.append("")
    return "\n".join(out)


def snapshot(rev: str) -> tuple[str, Path]:
    """``git archive REV async_amp`` into ``bench-data/src/<sha>/`` (once per revision)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.strip()
    dest = DATA_DIR / "src" / sha
    if not (dest / "async_amp" / "__init__.py").exists():
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, "async_amp"],
            capture_output=True,
            cwd=ROOT,
            check=True,
        ).stdout
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    return sha, dest


def render_profile(profile: dict[str, Any]) -> str:
    if "error" in profile:
        return f"profile: {profile['error']}\n"
    lines = [
        f"profile (py-spy, all threads, {profile['samples']} samples, "
        f"{profile['waiting_pct']:.0f}% of them waiting): own time, % of working samples"
    ]
    lines += [f"  {e['pct']:5.1f}%  {e['function']}" for e in profile["self"]]
    lines.append("inclusive time of async_amp functions, % of working samples")
    lines += [f"  {e['pct']:5.1f}%  {e['function']}" for e in profile["inclusive"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
