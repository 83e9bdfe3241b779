"""The benchmark runner: async-amp against the script people write, on a simulated Export API.

    .venv/bin/python -m benchmarks.run [--quick] [--case NAME ...] [--json PATH] [--profile]
                                       [--rev REV] [--reference REV] [--markdown JSON]

Every case starts the simulated Export API in a process of its own (``benchmarks.server``),
then runs ``python -m async_amp extract`` and the baseline (``benchmarks/baseline.py``) as child
processes and measures each with ``os.wait4`` (through ``benchmarks/launch.py``): wall time,
CPU (user + sys), peak RSS. The simulator's CPU time during each run is read from ``/proc`` (it
shares the machine's cores), and so is the CPU that unrelated jobs used meanwhile ("others").
Outputs are checked: a run whose bytes or events differ from the dataset is marked INVALID.
The method, the ideal-schedule formula and the committed numbers: docs/benchmarks.md.

The pieces: ``measure.py`` (the simulator process, one measured run, the checks),
``results.py`` (rows and case results), ``ideal.py`` (the ideal schedule), ``profiling.py``
(py-spy), ``report.py`` (tables, JSON, Markdown), and ``cases/``, one module per case:

- ``throughput``: one day, 1.44 M events (~2.6 GB NDJSON), no latency; concurrency 1 and 4.
- ``busy``: one day of ~1 MB-ZIP hours behind a latency model; concurrency 1, 4, 8, 16 against
  the ideal schedule.
- ``quiet``: seven days of ~20 KB-ZIP hours, slow fixed cost per request; hourly, 6-hour,
  24-hour and automatic windows.
- ``memory``: peak RSS for one ~250 MB hour and one ~1 GB hour.
- ``azure``: the throughput day into Azurite (``--sink azure``) against the SDK's own upload.
- ``errors``: seconds from start to exit 2 for each storage user error (Azure and S3).

Adding a case is one new module in ``cases/``: ``NAME = "parquet"``, ``ORDER = 60`` (where it
runs and is listed), its own ``Params`` with ``FULL`` and ``QUICK`` values, and
``run(bench: Bench) -> CaseResult`` (``measure.Bench`` runs and measures the tools; see
``cases/busy.py`` for a short one). ``--case NAME`` then runs it alone.

``--reference REV`` runs every selected case twice in the same script run, first with
``async_amp`` as committed at REV, then with the tree under test, and reports each async-amp
row's wall time, CPU and peak RSS as a ratio of the reference's: before/after figures of a
change measured on the same machine at the same time.

Results: a table on stdout and JSON (default ``benchmarks/results/latest.json``, or
``quick.json`` with ``--quick``). Generated data is cached under ``bench-data/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import pkgutil
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from . import cases as cases_package
from .common import DATA_DIR, RESULTS_DIR, ROOT, WORK_DIR, child_env, use_source
from .measure import PY, Bench
from .profiling import render_profile
from .report import machine, mark_noisy, markdown, render_case, write_json
from .results import CaseResult, Row

TIMEOUT_S = {"full": 900.0, "quick": 180.0}


def case_modules() -> dict[str, ModuleType]:
    """Every module of ``benchmarks/cases`` with a ``run``, by ``NAME``, in ``ORDER``."""
    found = []
    for info in pkgutil.iter_modules(cases_package.__path__):
        module = importlib.import_module(f"{cases_package.__name__}.{info.name}")
        if callable(getattr(module, "run", None)):
            found.append(module)
    found.sort(key=lambda m: (getattr(m, "ORDER", 1000), m.NAME))
    return {m.NAME: m for m in found}


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


def _run_case(module: ModuleType, bench: Bench) -> CaseResult:
    began = time.monotonic()
    try:
        case: CaseResult = module.run(bench)
    except Exception as exc:  # one broken case must not hide the others' numbers
        traceback.print_exc()
        case = CaseResult(module.NAME, module.NAME, {}, error=f"{type(exc).__name__}: {exc}")
    case.seconds = time.monotonic() - began
    mark_noisy(case)
    return case


def _ratio(after: float | int | None, before: float | int | None) -> str:
    return f"{after / before:.2f}x" if after and before else "-"


def compare(case: CaseResult, reference: CaseResult, label: str) -> CaseResult:
    """``case`` with the reference's async-amp rows after its own and the ratios in its
    headline (after / before: below 1.00x is faster, leaner).

    Rows pair by variant name, else by position: a variant named after its data ("101 MB
    hour") is named after the data that revision's simulator generates, which can differ
    from this tree's; the case module (this tree's) runs the same variants in the same order.
    """
    theirs = [r for r in reference.rows if r.tool == "async-amp"]
    ours = [r for r in case.rows if r.tool == "async-amp"]
    by_name = {r.variant: r for r in theirs}
    same_shape = len(theirs) == len(ours)
    before = {
        id(row): by_name.get(row.variant) or (theirs[i] if same_shape else None)
        for i, row in enumerate(ours)
    }
    rows: list[Row] = []
    for row in case.rows:
        rows.append(row)
        ref = before.get(id(row))
        if row.tool != "async-amp" or ref is None:
            continue
        ref.variant, ref.tool = f"{label}: {row.variant}", "reference"
        rows.append(ref)
        case.headline.append(
            f"{row.variant} vs {label}: wall {_ratio(row.wall_s, ref.wall_s)}, CPU "
            f"{_ratio(row.cpu_s, ref.cpu_s)}, peak RSS {_ratio(row.peak_rss, ref.peak_rss)}"
        )
    case.rows = rows
    case.params["reference"] = label
    if reference.error:
        case.error = f"{case.error}; reference: {reference.error}".strip("; ")
    return case


def main(argv: Sequence[str] | None = None) -> int:
    available = case_modules()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark async-amp against a naive export script on a simulated API.",
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run (< 2 min)")
    parser.add_argument(
        "--case", action="append", choices=list(available), help="run only this case (repeatable)"
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
        "--reference",
        metavar="REV",
        help="also run each case with async_amp as committed at REV, in the same run, and "
        "report the ratios (e.g. --reference main~3)",
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
    source, source_path = "working tree", None
    if args.rev:
        sha, source_path = snapshot(args.rev)
        source = f"git archive of {args.rev} ({sha[:12]})"
    reference = None
    if args.reference:
        ref_sha, ref_path = snapshot(args.reference)
        reference = (f"{args.reference} ({ref_sha[:12]})", ref_path)
    mode = "quick" if args.quick else "full"
    out = args.json or RESULTS_DIR / f"{'quick' if args.quick else 'latest'}.json"
    selected = args.case or list(available)
    use_source(source_path)
    info = machine()
    info["source"] = source
    if reference is not None:
        info["reference"] = reference[0]
    info["async_amp_imported_from"] = subprocess.run(
        [PY, "-c", "import async_amp; print(async_amp.__file__)"],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=tempfile.gettempdir(),
        check=False,
    ).stdout.strip()
    print(
        f"async-amp benchmarks ({mode}) on {info['nproc']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}, {info['git']}; async_amp from {source}"
        + (f"; reference {reference[0]}" if reference else ""),
        flush=True,
    )
    print("simulator, extractor and baseline share these cores; see 'srv CPU'.\n", flush=True)
    started = time.monotonic()
    report: dict[str, Any] = {
        "mode": mode,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "cases": [],
    }

    def bench() -> Bench:
        return Bench(quick=args.quick, timeout_s=TIMEOUT_S[mode], profile=args.profile)

    failed = False
    for name, module in available.items():
        if name not in selected:
            continue
        before = None
        if reference is not None:
            use_source(reference[1])
            before = _run_case(module, bench())
            use_source(source_path)
        case = _run_case(module, bench())
        if before is not None and reference is not None:
            case = compare(case, before, f"before {reference[0]}")
        failed = failed or bool(case.error)
        if args.quick:  # scaled-down data: the targets are about the full-size cases
            for goal in case.targets:
                goal["met"], goal["verdict"] = None, "not judged (--quick)"
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


if __name__ == "__main__":
    sys.exit(main())
