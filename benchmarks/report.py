"""Reporting: the machine a run was on, each case's table on stdout, the JSON results file,
and the Markdown tables docs/benchmarks.md is written from."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from . import azurite as azurite_mod
from .common import ROOT
from .results import MB, MIB, CaseResult, Row, join_notes

__all__ = ["machine", "mark_noisy", "markdown", "render_case", "write_json"]

NOISY_CORES = 0.3  # other jobs on the machine used more than this many cores during a run


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
            row.note = join_notes(row.note, f"noisy: other jobs used {cores:.1f} cores meanwhile")


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
        problem_note = ("PROBLEM: " + problem) if problem else ""
        lines.append(f"   {variant}: {join_notes(note, problem_note)}")
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
