"""Profiling one run with py-spy (all threads) and summarizing where the time went."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import RESULTS_DIR, ROOT
from .measure import PY, Bench, Expected, Server

__all__ = ["profile_run", "render_profile", "summarize_profile"]


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
    """``decode (/x/async_amp/source/archive.py:75)`` -> ``decode (async_amp/source/archive.py)``.

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
