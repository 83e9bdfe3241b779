"""Measuring: the simulator as a child process, one measured run of async-amp or of the
baseline (wall, CPU, peak RSS, the simulator's and other jobs' CPU), the data a run must
match, and the checks that mark a run INVALID. Every case uses these; see ``cases/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import azurite as azurite_mod
from .common import (
    API_KEY,
    ROOT,
    SECRET_KEY,
    WORK_DIR,
    DataSpec,
    Measured,
    child_env,
    dumps,
    fmt_hour,
    machine_busy_s,
    measure,
    process_cpu_s,
)
from .results import Row
from .s3server import S3_BUCKET, S3ServerProcess, is_data_key, s3_bytes, s3_env

__all__ = [
    "DAY",
    "PY",
    "WEEK",
    "Bench",
    "Expected",
    "Server",
    "check_output",
    "generate",
    "last_line",
    "materialize_ndjson",
]

PY = sys.executable
DAY = datetime(2025, 6, 3, tzinfo=UTC)  # a Tuesday, long past: every hour is exportable
WEEK = datetime(2025, 6, 2, tzinfo=UTC)  # Monday .. Sunday


@dataclass(frozen=True, slots=True)
class Expected:
    events: int
    ndjson_bytes: int
    gz_bytes: int
    generation_s: float


def generate(spec: DataSpec, hour_list: Sequence[datetime]) -> Expected:
    """The totals a run must match, from the simulator of the revision being measured (a
    child, ``benchmarks.expect``); every partition is put in the cache on the way."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    request = dumps({"spec": spec.to_json(), "hours": [fmt_hour(h) for h in hour_list]})
    done = subprocess.run(
        [PY, "-m", "benchmarks.expect", request],
        cwd=WORK_DIR,  # not ROOT: -m puts the cwd first on sys.path
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        msg = f"benchmarks.expect failed: {last_line(done.stderr)}"
        raise RuntimeError(msg)
    return Expected(**json.loads(last_line(done.stdout)))


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


class Bench:
    """Runs and measures the tools for the cases; ``quick`` scales every case down."""

    def __init__(self, *, quick: bool, timeout_s: float, profile: bool = False) -> None:
        self.quick = quick
        self.timeout_s = timeout_s
        self.profile = profile
        self._window_flag: bool | None = None

    # --- one run of each tool -------------------------------------------------------------

    def workdir(self, case: str, label: str) -> Path:
        slug = "".join(c if c.isalnum() else "-" for c in label).strip("-")
        work = WORK_DIR / case / slug
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return work

    @staticmethod
    def config_file(work: Path, *, container: str | None = None) -> Path:
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
        s3: S3ServerProcess | None = None,
        wrap: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One ``async-amp extract`` child, measured and checked (into ``azure`` or ``s3``'s
        ``bench`` bucket when given, else a local folder)."""
        work = self.workdir(case, label)
        container = "bench" if azure else None
        cmd = [
            *wrap,
            PY,
            "-m",
            "async_amp",
            "extract",
            "--config",
            str(self.config_file(work, container=container)),
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
        if s3 is not None:
            cmd += ["--sink", "s3"]
            extra_env.update(s3_env(s3))
        extra_env.update(env or {})
        env = self._extract_env(server, fsync=fsync, extra=extra_env)
        result = self._measured(cmd, env, work, server, azure or s3)
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
        elif s3 is not None:
            result["bytes_written"] = s3_bytes(s3, S3_BUCKET)
        else:
            result["bytes_written"] = _local_bytes(work / "out")
        check_output(result, expected)
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
        work = self.workdir(case, label)
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
        check_output(result, expected)
        _clean(work)
        return result

    def _measured(
        self,
        cmd: list[str],
        env: dict[str, str],
        work: Path,
        server: Server | None,
        azure: azurite_mod.Azurite | S3ServerProcess | None,
    ) -> dict[str, Any]:
        if server is not None:
            server.reset()
        cpu0 = server.cpu_s() if server is not None else 0.0
        other0 = process_cpu_s(azure.pid) if azure and azure.pid else None
        busy0 = machine_busy_s()
        m: Measured = measure(cmd, env=env, cwd=work, timeout_s=self.timeout_s)
        busy = machine_busy_s() - busy0
        server_cpu = server.cpu_s() - cpu0 if server is not None else None
        other = (
            process_cpu_s(azure.pid) - other0
            if azure and azure.pid and other0 is not None
            else None
        )
        # CPU that processes outside this benchmark used meanwhile (other jobs on the machine)
        foreign = busy - m.cpu_s - (server_cpu or 0.0) - (other or 0.0)
        stats = server.stats() if server is not None else {}
        problem = ""
        if m.timed_out:
            problem = f"killed after {self.timeout_s:.0f} s"
        elif m.exit_code != 0:
            problem = f"exit {m.exit_code}: {last_line(m.stderr) or last_line(m.stdout)}"
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
        work = self.workdir("azure", "reference")
        cmd = [PY, "-m", "benchmarks.azure_upload", str(src), "reference"]
        cmd += [f"--method={uploader['method']}"]
        cmd += [f"--files-in-flight={uploader['files_in_flight']}"]
        cmd += [f"--max-concurrency={uploader['max_concurrency']}"]
        cmd += [f"--block-mib={uploader['block_mib']}"]
        env = child_env(AZURE_STORAGE_CONNECTION_STRING=azure.connection_string)
        result = self._measured(cmd, env, work, None, azure)
        result["bytes_written"] = _azure_bytes(azure, "reference")
        result["events"] = expected.events  # not counted by an upload; the same files
        check_output(result, expected)
        shutil.rmtree(work, ignore_errors=True)
        return result

    def upload_reference_s3(
        self, src: Path, s3: S3ServerProcess, expected: Expected, uploader: dict[str, Any]
    ) -> dict[str, Any]:
        """``benchmarks.s3_upload``: a plain client alone uploading the same NDJSON files."""
        work = self.workdir("s3", "reference")
        cmd = [PY, "-m", "benchmarks.s3_upload", str(src), S3_BUCKET]
        cmd += [f"--endpoint-url={s3.endpoint_url}", f"--client={uploader['client']}"]
        cmd += [f"--files-in-flight={uploader['files_in_flight']}"]
        cmd += [f"--part-mib={uploader['part_mib']}"]
        env = child_env(**s3.admin.environ())
        result = self._measured(cmd, env, work, None, s3)
        result["bytes_written"] = s3_bytes(s3, S3_BUCKET)
        result["events"] = expected.events  # not counted by an upload; the same files
        check_output(result, expected)
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
        work = self.workdir("probe", "probe")
        cmd = [PY, "-m", "async_amp", "extract", "--config", str(self.config_file(work))]
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
        return last_line(done.stderr) or f"exit {done.returncode}"


def last_line(text: str) -> str:
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
        p.stat().st_size
        for p in out.rglob("*.json")
        if is_data_key(p.relative_to(out).as_posix()) and p.is_file()
    )


def _azure_bytes(azure: azurite_mod.Azurite, container: str) -> int:
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    with BlobServiceClient.from_connection_string(azure.connection_string) as service:
        blobs = service.get_container_client(container).list_blobs()
        return sum(b.size for b in blobs if is_data_key(b.name))


def check_output(result: dict[str, Any], expected: Expected) -> None:
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
