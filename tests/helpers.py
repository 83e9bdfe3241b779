"""Shared test helpers: run an extraction against a simulator, compare output with the source."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from async_amp.config import AmplitudeConfig, Config, ExtractConfig, OutputConfig
from async_amp.extraction.pipeline import Extractor
from async_amp.extraction.results import RunSummary
from async_amp.hours import hour_range
from async_amp.output.manifest import hour_folder
from async_amp.output.stores.base import Sink
from async_amp.output.stores.local import LocalSink
from async_amp.simulator.dataset import Dataset
from async_amp.source.export_api import AiohttpExportSource

KEY, SECRET = "test-api-key-7f3a", "test-secret-9c1e"
DAY1 = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)

# The in-process simulator shares the test's event loop with the sink and its SDK: on a loaded
# machine (load average 14 on 2 cores was seen) its answers took over a 2 s connect/read
# timeout, and healthy hours were retried. So every test config waits this long; a test about
# a stall, a trickle or a slow answer sets its own short timeout, explicitly.
PATIENT_S = 30.0


def isolate_cli(
    tmp_path: Path, monkeypatch: Any, *, key: str = KEY, secret: str = SECRET, **env: str
) -> Path:
    """Run the CLI in ``tmp_path`` with only these settings: no stray ASYNC_AMP_/AMP_/AZURE_
    variables from the machine, the given keys, and ``env`` (``ASYNC_AMP_...`` values)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("ASYNC_AMP_", "AMP_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AMP_API_KEY", key)
    monkeypatch.setenv("AMP_SECRET_KEY", secret)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def small_dataset(**kw: Any) -> Dataset:
    kw.setdefault("events_per_hour", 60)
    kw.setdefault("pages_per_hour", 3)
    return Dataset(**kw)


def make_config(base_url: str, out: Path, **extract_kw: Any) -> Config:
    extract_kw.setdefault("concurrency", 8)
    extract_kw.setdefault("backoff_base_s", 0.01)
    extract_kw.setdefault("backoff_max_s", 0.05)
    extract_kw.setdefault("read_timeout_s", PATIENT_S)
    extract_kw.setdefault("connect_timeout_s", PATIENT_S)
    keep_gzip = extract_kw.pop("keep_gzip", False)
    return Config(
        amplitude=AmplitudeConfig(project="website", base_url=base_url),
        extract=ExtractConfig(**extract_kw),
        output=OutputConfig(dir=out, keep_gzip=keep_gzip, fsync=False, log_dir=out / "logs"),
    )


async def run(
    config: Config,
    first: datetime,
    last: datetime,
    *,
    sink: Sink | None = None,
    force: bool = False,
    now: datetime = NOW,
    key: str = KEY,
    secret: str = SECRET,
) -> RunSummary:
    """One project's plan and run over ``sink`` (prepared and closed here), a seeded jitter and
    the test's keys: the tally itself (``async_amp.extract`` returns its frozen copy)."""
    sink = sink or LocalSink(config.output.dir, run_id="test-run", fsync=False)
    source = AiohttpExportSource(
        config.amplitude.url,
        key,
        secret,
        read_timeout_s=config.extract.read_timeout_s,
        connect_timeout_s=config.extract.connect_timeout_s,
        min_rate_kib_s=config.extract.min_rate_kib_s,
    )
    try:
        await sink.prepare()
        async with source:
            extractor = Extractor(
                config, source, sink, run_id="test-run", now=now, rng=random.Random(1)
            )
            return await extractor.run(await extractor.plan(first, last, force=force))
    finally:
        await sink.aclose()


def assert_output_matches(
    root: Path, dataset: Dataset, first: datetime, last: datetime, *, keep_gzip: bool = False
) -> int:
    """Every hour has a manifest, every partition is byte-identical; returns the file count."""
    files = 0
    for hour in hour_range(first, last):
        folder = root / hour_folder("website", hour)
        manifest = json.loads((folder / "_manifest.json").read_bytes())
        pages = dataset.pages(hour)
        assert manifest["status"] == ("complete" if pages else "empty"), hour
        assert manifest["hour"] == f"{hour:%Y-%m-%dT%H}:00:00Z"
        expected_names = set()
        for page in pages:
            source = dataset.member_name(hour, page)
            base = source.split("/", 1)[1]
            name = base if keep_gzip else base.removesuffix(".gz")
            expected_names.add(name)
            data = (folder / name).read_bytes()
            want = dataset.gz(hour, page) if keep_gzip else dataset.ndjson(hour, page)
            assert data == want, f"{hour} page {page} differs"
            entry = next(f for f in manifest["files"] if f["name"] == name)
            assert entry["bytes"] == len(data)
            assert entry["events"] == dataset.event_count(hour, page)
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
            files += 1
        on_disk = {p.name for p in folder.iterdir() if p.name != "_manifest.json"}
        assert on_disk == expected_names, (
            f"{hour}: stray or missing files {on_disk ^ expected_names}"
        )
        assert manifest["events"] == sum(dataset.event_count(hour, p) for p in pages)
    return files


def last_hour_of(day: datetime, days: int = 1) -> datetime:
    return day + timedelta(days=days) - timedelta(hours=1)


def cli_extract(
    base_url: str,
    out: Path,
    *args: str,
    logs: Path | None = None,
    wrapper: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``async-amp extract --output out ARGS`` as a subprocess, with the test keys, fast
    backoff, ``now`` pinned to NOW and nothing from the machine's environment. ``wrapper``
    goes before the interpreter (e.g. ``setpriv ...``)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "AMP_API_KEY": KEY,
        "AMP_SECRET_KEY": SECRET,
        "ASYNC_AMP_AMPLITUDE_BASE_URL": base_url,
        "ASYNC_AMP_OUTPUT_FSYNC": "false",
        "ASYNC_AMP_EXTRACT_BACKOFF_BASE_S": "0.01",
        "ASYNC_AMP_EXTRACT_BACKOFF_MAX_S": "0.05",
        "ASYNC_AMP_NOW": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if logs is not None:
        env["ASYNC_AMP_OUTPUT_LOG_DIR"] = str(logs)
    env.update(extra_env or {})
    command = [*wrapper, sys.executable, "-m", "async_amp", "extract", "--output", str(out), *args]
    return subprocess.run(
        command, env=env, cwd=out.parent, capture_output=True, text=True, timeout=120, check=False
    )
