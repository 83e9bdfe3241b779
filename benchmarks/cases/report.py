"""The ``report`` benchmark case: ``async-amp report`` over stored data, 1 day and 30 days.

The busy dataset (the ``busy`` case's: 5,200 events an hour, ~1 MB gzip'd, seed 1) is written
straight into a local lake as ``.json.gz`` files with manifests (what ``extract`` stores with
``keep_gzip = true``; no simulator needed), then ``python -m async_amp report`` is measured
over one day and over the whole range, and so is the reference: the one DuckDB query a person
would write over the same files (``read_json_auto`` over every file, counts and distinct
counts). The ratio of the two report runs' peak RSS shows that memory follows a day, not the
range. Lakes are cached under ``bench-data/report-lake/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from async_amp.output.manifest import FileEntry, Manifest, hour_folder

from ..common import DATA_DIR, DataSpec, child_env, fmt_hour, measure
from ..measure import PY, Bench
from ..results import MB, MIB, CaseResult, Row, target

NAME = "report"
ORDER = 60
PROJECT = "website"
FIRST = datetime(2026, 10, 1, tzinfo=UTC)
TIMEOUT_S = 3600.0


@dataclass(frozen=True, slots=True)
class Params:
    """What ``--quick`` scales down."""

    events: int
    days: int


FULL = Params(events=5_200, days=30)
QUICK = Params(events=600, days=3)

REFERENCE_SQL = """
SELECT count(*) AS events, count(DISTINCT device_id) AS visitors,
       count(DISTINCT user_id) AS users, count(*) - count(DISTINCT uuid) AS duplicates,
       count(*) FILTER (WHERE event_type IN ('Page Viewed', 'Blog Post Viewed')) AS page_views
FROM read_json_auto('{glob}', hive_partitioning = true, union_by_name = true)
"""


def _write_hour(args: tuple[dict[str, Any], str, str]) -> int:
    """One hour's partitions as stored ``.json.gz`` files and its manifest; returns events."""
    spec, root, hour_text = args
    dataset = DataSpec.from_json(spec).dataset()
    hour = datetime.fromisoformat(hour_text)
    folder = Path(root) / hour_folder(PROJECT, hour)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for page in dataset.pages(hour):
        data = dataset.gz(hour, page)
        name = dataset.member_name(hour, page).split("/", 1)[1]
        (folder / name).write_bytes(data)
        events = dataset.event_count(hour, page)
        files.append(FileEntry(name, len(data), events, hashlib.sha256(data).hexdigest()))
    status = "complete" if files else "empty"
    manifest = Manifest(hour, status, tuple(files), 1, datetime.now(UTC), "bench")
    (folder / "_manifest.json").write_bytes(manifest.dumps())
    return sum(f.events for f in files)


def build_lake(spec: DataSpec, days: int) -> tuple[Path, int, int]:
    """The lake of ``days`` days from FIRST (cached): its root, events and stored bytes."""
    root = DATA_DIR / "report-lake" / f"{spec.events_per_hour}-s{spec.seed}-{days}d"
    stamp = root / "complete.json"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        jobs = [
            (spec.to_json(), str(root), (FIRST + timedelta(hours=h)).isoformat())
            for h in range(days * 24)
        ]
        with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            events = sum(pool.map(_write_hour, jobs, chunksize=8))
        stored = sum(f.stat().st_size for f in root.rglob("*.json.gz"))
        stamp.write_text(json.dumps({"events": events, "bytes": stored}))
    facts = json.loads(stamp.read_text())
    return root, int(facts["events"]), int(facts["bytes"])


def _row(variant: str, tool: str, m: Any, events: int, stored: int, note: str) -> Row:
    return Row(
        variant=variant,
        tool=tool,
        wall_s=m.wall_s,
        cpu_s=m.cpu_s,
        user_s=m.user_s,
        sys_s=m.sys_s,
        peak_rss=m.peak_rss,
        events=events,
        exit_code=m.exit_code,
        valid=m.exit_code == 0,
        problem="" if m.exit_code == 0 else m.stderr.strip()[-300:],
        note=note,
        extra={"stored_bytes": stored},
    )


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.3, seed=1)
    result = CaseResult(
        NAME,
        f"Report: async-amp report over {p.days} days of stored .json.gz "
        f"({p.events:,} events an hour) and over one of them",
        {"data": spec.to_json(), "days": p.days, "first": fmt_hour(FIRST)},
    )
    began = time.monotonic()
    lakes = {days: build_lake(spec, days) for days in (1, p.days)}
    result.generation_s = time.monotonic() - began
    work = bench.workdir(NAME, "run")
    rows: dict[str, Row] = {}
    for days in (1, p.days):
        root, events, stored = lakes[days]
        last = FIRST + timedelta(days=days) - timedelta(hours=1)
        cmd = [PY, "-m", "async_amp", "report", "--start", fmt_hour(FIRST), "--end"]
        # the older spellings (--data DIR --output FILE.html): every revision takes them, so a
        # --reference from before --html runs the same command (newer ones warn on stderr)
        cmd += [fmt_hour(last), "--data", str(root), "--output", str(work / f"r{days}.html")]
        env = child_env(ASYNC_AMP_NOW=(last + timedelta(hours=4)).isoformat())
        m = measure(cmd, env=env, cwd=work, timeout_s=TIMEOUT_S)
        size = (work / f"r{days}.html").stat().st_size if m.exit_code == 0 else 0
        label = f"async-amp report, {days} day{'s' if days > 1 else ''}"
        rows[label] = _row(label, "async-amp", m, events, stored, f"page {size / MB:.2f} MB")
    root, events, stored = lakes[p.days]
    glob = str(root / PROJECT / "*" / "*" / "[0-9]*.json.gz")
    code = f"import duckdb; print(duckdb.sql({REFERENCE_SQL.format(glob=glob)!r}).fetchall())"
    m = measure([PY, "-c", code], env=child_env(), cwd=work, timeout_s=TIMEOUT_S)
    label = f"one DuckDB query, {p.days} days"
    rows[label] = _row(label, "reference", m, events, stored, "counts only, no page")
    result.rows = list(rows.values())
    one, many, ref = result.rows
    if one.peak_rss and many.peak_rss and ref.wall_s and many.wall_s:
        ratio = many.peak_rss / one.peak_rss
        result.headline.append(
            f"{p.days} days ({many.events:,} events, {stored / MB:,.0f} MB gzip'd): "
            f"{many.wall_s:,.0f} s wall, {many.cpu_s:,.0f} s CPU, peak RSS "
            f"{many.peak_rss / MIB:,.0f} MiB; one day: {one.peak_rss / MIB:,.0f} MiB "
            f"({ratio:.2f}x); the one DuckDB query: {ref.wall_s:,.0f} s, "
            f"{(ref.peak_rss or 0) / MIB:,.0f} MiB"
        )
        result.targets.append(
            target(
                "report: memory follows a day",
                f"{p.days} days' peak RSS <= 1.25x one day's",
                f"{ratio:.2f}x",
                ratio <= 1.25,
            )
        )
    return result
