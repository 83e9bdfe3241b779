"""Delta output through the CLI, as processes: writers at once, and a run killed mid-way.

- two ``--shard`` workers started at the same moment into one table: both exit 0, the table
  holds exactly the union;
- two overlapping runs of the same range (same hours committed by both, often at nearly the
  same moment): both exit 0, every uuid once;
- SIGKILL during a run: the latest snapshot holds only whole hours, and the next run
  completes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from async_amp.config import AzureConfig
from async_amp.output.delta.layout import CHECKPOINT_INTERVAL
from async_amp.output.delta.location import azure_options
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import Latency

from .azurite import Azurite
from .delta_helpers import expected_rows_per_hour, expected_uuids, rows_per_hour
from .e2e import spawn
from .helpers import DAY1, KEY, SECRET, small_dataset


def env_for(base_url: str, out: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AZURE_", "AMP_"))
    }
    env.update(
        AMP_API_KEY=KEY,
        AMP_SECRET_KEY=SECRET,
        ASYNC_AMP_AMPLITUDE_BASE_URL=base_url,
        ASYNC_AMP_AMPLITUDE_PROJECT="website",
        ASYNC_AMP_EXTRACT_BACKOFF_BASE_S="0.05",
        ASYNC_AMP_EXTRACT_BACKOFF_MAX_S="0.2",
        ASYNC_AMP_NOW="2026-11-26T12:00:00Z",
        ASYNC_AMP_OUTPUT_DIR=str(out),
        ASYNC_AMP_OUTPUT_FORMAT="delta",
        ASYNC_AMP_OUTPUT_FSYNC="false",
    )
    return env


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``async-amp ARGS`` to completion (status, verify, compact)."""
    return python(env, cwd, "-m", "async_amp", *args)


def python(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` to completion, its output captured."""
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_table_is(uri: str, dataset, first: datetime, last: datetime) -> None:  # type: ignore[no-untyped-def]
    rows = DeltaTable(uri).to_pyarrow_table()
    assert rows_per_hour(rows) == expected_rows_per_hour(dataset, first, last)
    assert Counter(rows["uuid"].to_pylist()) == expected_uuids(dataset, first, last)


def two_shard_workers(  # type: ignore[no-untyped-def]
    dataset, tmp_path: Path, first: datetime, last: datetime, latency: Latency | None = None
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``--shard 1/2`` and ``2/2`` started at the same moment into one table; both exit 0.
    Returns the environment and each worker's (stdout, stderr)."""
    options = {} if latency is None else {"latency": latency}
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, **options) as sim:
        env = env_for(sim.base_url, tmp_path / "out")
        workers = [
            spawn(env, tmp_path, first, last, "--shard", f"{k}/2", "--concurrency", "4")
            for k in (1, 2)
        ]
        outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    return env, outputs


def test_two_shard_workers_started_at_once_both_exit_0_and_the_table_is_the_union(
    tmp_path: Path,
) -> None:
    dataset = small_dataset()
    first, last = DAY1, DAY1 + timedelta(hours=11)
    env, _ = two_shard_workers(dataset, tmp_path, first, last, Latency(fixed_s=0.05))
    uri = str(tmp_path / "out" / "website")
    assert_table_is(uri, dataset, first, last)
    commits = [h for h in DeltaTable(uri).history() if h["operation"] == "WRITE"]
    assert len(commits) == 12  # one per hour, none lost to a conflict
    # the nightly job: compact the day (a file per archive member -> one file), rows unchanged
    before = DeltaTable(uri).to_pyarrow_table().sort_by("uuid")
    files_before = len(DeltaTable(uri).file_uris())
    assert files_before > 12
    done = cli(env, tmp_path, "compact", "--start", "2026-11-01", "--end", "2026-11-01", "--json")
    assert done.returncode == 0, done.stderr
    [day] = json.loads(done.stdout)["days"]
    assert day["day"] == "2026-11-01" and day["rows"] == before.num_rows
    assert (day["files_removed"], day["files_added"]) == (files_before, 1)
    assert len(DeltaTable(uri).file_uris()) == 1
    assert DeltaTable(uri).to_pyarrow_table().sort_by("uuid").equals(before)


SOAK_DAYS = int(os.environ.get("ASYNC_AMP_TEST_SOAK_DAYS", "3"))
"""3 days in the suite (72 commits, three checkpoint intervals); 7 took 111 s of a loaded CI
run: ``ASYNC_AMP_TEST_SOAK_DAYS=14`` runs a fortnight."""


@pytest.mark.slow
def test_days_by_two_shard_workers_at_once_the_table_is_exactly_the_union(
    tmp_path: Path,
) -> None:
    """The soak for many writers: SOAK_DAYS x 24 hourly commits into one table by two
    processes at the same time (``--shard 1/2`` and ``2/2``: alternate hours, so their
    commits interleave all along, across delta-rs checkpoints). Both exit 0; the table holds every hour once
    and every uuid once, each hour committed once, by one of the two runs."""
    dataset = Dataset(events_per_hour=8, pages_per_hour=1, variation=0.5)
    first, last = DAY1, DAY1 + timedelta(days=SOAK_DAYS) - timedelta(hours=1)
    _, outputs = two_shard_workers(dataset, tmp_path, first, last)
    uri = str(tmp_path / "out" / "website")
    assert_table_is(uri, dataset, first, last)
    table = DeltaTable(uri)
    writes = [h for h in table.history() if h["operation"] == "WRITE"]
    assert len(writes) == SOAK_DAYS * 24 and {h["async_amp.run_id"] for h in writes} == {
        json.loads(line)["run_id"]
        for _, err in outputs
        for line in err.splitlines()
        if '"run.summary"' in line
    }
    checkpoints = sorted((tmp_path / "out" / "website" / "_delta_log").glob("*.checkpoint.parquet"))
    # one at each multiple of CHECKPOINT_INTERVAL (by the worker whose commit it was: never
    # both), each plain-encoded, with no dictionary
    versions = [int(p.name.split(".")[0]) for p in checkpoints]
    assert versions == list(range(CHECKPOINT_INTERVAL, SOAK_DAYS * 24 + 1, CHECKPOINT_INTERVAL))
    for path in checkpoints:
        meta = pq.ParquetFile(path).metadata
        encodings = {
            e
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
            for e in meta.row_group(g).column(c).encodings
        }
        assert encodings <= {"PLAIN", "RLE"}, (path.name, encodings)


def test_two_overlapping_runs_of_the_same_hours_both_exit_0_and_every_uuid_is_there_once(
    tmp_path: Path,
) -> None:
    dataset = small_dataset()
    first, last = DAY1, DAY1 + timedelta(hours=11)
    # both runs plan before either commits, so each hour is committed by both, often at once
    latency = Latency(fixed_s=0.3)
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        env = env_for(sim.base_url, tmp_path / "out")
        runs = [spawn(env, tmp_path, first, last, "--concurrency", "6") for _ in range(2)]
        outputs = [r.communicate(timeout=300) for r in runs]
        requests = sim.request_count()
    assert [r.returncode for r in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert requests > 12, "the runs did not overlap"
    uri = str(tmp_path / "out" / "website")
    assert_table_is(uri, dataset, first, last)
    table = DeltaTable(uri)
    for version in range(table.version() + 1):  # no snapshot ever held an hour twice
        uuids = Counter(DeltaTable(uri, version=version).to_pyarrow_table()["uuid"].to_pylist())
        assert max(uuids.values(), default=1) == 1, version


def test_sigkill_mid_run_leaves_only_whole_hours_and_the_next_run_completes_it(
    tmp_path: Path,
) -> None:
    dataset = small_dataset(events_per_hour=200)
    first, last = DAY1, DAY1 + timedelta(hours=15)
    out = tmp_path / "out"
    meta = out / "website" / "_async_amp"
    latency = Latency(fixed_s=0.1, mb_per_s_per_conn=1.0)
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        env = env_for(sim.base_url, out)
        proc = spawn(env, tmp_path, first, last, "--concurrency", "3")
        deadline = time.monotonic() + 120
        while len(list(meta.glob("*/*/_manifest.json"))) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the run ended before the kill"
            )
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        uri = str(out / "website")
        rows = DeltaTable(uri).to_pyarrow_table()
        whole = expected_rows_per_hour(dataset, first, last)
        held = rows_per_hour(rows)
        assert held and len(held) < len(whole)
        assert all(whole[key] == count for key, count in held.items()), held
        served = expected_uuids(dataset, first, last)
        assert all(served[u] == 1 for u in rows["uuid"].to_pylist())
        claimed = {
            (datetime.strptime(p.parent.parent.name[5:], "%Y-%m-%d").date(), int(p.parent.name[5:]))
            for p in meta.glob("*/*/_manifest.json")
        }
        assert claimed <= set(held)  # a manifest only for an hour the table holds
        rerun = spawn(env, tmp_path, first, last, "--concurrency", "3")
        _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert_table_is(uri, dataset, first, last)
    span = ["--start", f"{first:%Y-%m-%dT%H}", "--end", f"{last:%Y-%m-%dT%H}"]
    verify = cli(env, tmp_path, "verify", *span)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OK" in verify.stdout
    status = cli(env, tmp_path, "status", "--json", *span)
    totals = json.loads(status.stdout)["totals"]
    assert totals["complete"] == 16 and totals["missing"] == 0
    assert totals["events"] == sum(expected_rows_per_hour(dataset, first, last).values())
    # files the killed run put into the table but never committed are in no snapshot;
    # once past the retention, vacuum deletes them (files some commit named stay until the
    # retention has passed since their removal: a reader of an older snapshot needs them)
    hours_ago = time.time() - 2 * 3600
    for path in (out / "website").rglob("*.parquet"):
        os.utime(path, (hours_ago, hours_ago))
    span_days = ["--start", "2026-11-01", "--end", "2026-11-01"]
    done = cli(env, tmp_path, "compact", *span_days, "--retention-hours", "1")
    assert done.returncode == 0, done.stderr
    named = {
        str(out / "website" / json.loads(line)[kind]["path"])
        for commit in (out / "website" / "_delta_log").glob("*.json")
        for line in commit.read_text().splitlines()
        for kind in ("add", "remove")
        if f'"{kind}"' in line[:10]
    }
    on_disk = {str(p) for p in (out / "website").rglob("*.parquet")}
    assert set(DeltaTable(uri).file_uris()) <= on_disk <= named
    assert_table_is(uri, dataset, first, last)


@pytest.mark.azure
def test_two_shard_workers_into_azurite_then_one_killed_run_and_its_rerun(
    tmp_path: Path, azurite: Azurite, azure_container: str
) -> None:
    """The same through Azure: two shard workers at once, then a run killed mid-way over the
    next hours and its rerun; the table is exactly the simulator's hours, once each."""
    dataset = small_dataset()
    first, last = DAY1, DAY1 + timedelta(hours=7)
    later_first, later_last = DAY1 + timedelta(hours=8), DAY1 + timedelta(hours=15)
    environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    latency = Latency(fixed_s=0.1, mb_per_s_per_conn=1.0)
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        env = env_for(sim.base_url, tmp_path / "out")
        env.update(
            environ, ASYNC_AMP_OUTPUT_SINK="azure", ASYNC_AMP_AZURE_CONTAINER=azure_container
        )
        workers = [spawn(env, tmp_path, first, last, "--shard", f"{k}/2") for k in (1, 2)]
        outputs = [w.communicate(timeout=300) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
        options, _, _ = azure_options(AzureConfig(), environ)
        uri = f"az://{azure_container}/amplitude/website"
        before = DeltaTable(uri, storage_options=options).version()
        proc = spawn(env, tmp_path, later_first, later_last, "--concurrency", "2")
        deadline = time.monotonic() + 120
        while DeltaTable(uri, storage_options=options).version() < before + 2:
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the run ended before the kill"
            )
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        held = rows_per_hour(DeltaTable(uri, storage_options=options).to_pyarrow_table())
        whole = expected_rows_per_hour(dataset, first, later_last)
        assert all(whole[key] == count for key, count in held.items()), held
        rerun = spawn(env, tmp_path, later_first, later_last)
        _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    rows = DeltaTable(uri, storage_options=options).to_pyarrow_table()
    assert rows_per_hour(rows) == whole
    assert Counter(rows["uuid"].to_pylist()) == expected_uuids(dataset, first, later_last)


def test_two_shard_workers_and_a_recheck_on_a_compacted_day_at_once_stay_exact(
    tmp_path: Path,
) -> None:
    """A compacted day; then at once: two shard workers add the day's next hours (commits that
    only add), and ``--recheck`` finds an hour changed and replaces it (a commit that rewrites
    the compacted file without it). The table is then exactly what the simulator serves."""
    day = datetime(2026, 11, 26, tzinfo=UTC)  # env_for's ASYNC_AMP_NOW is 2026-11-26T12
    done_by_then, newest = day + timedelta(hours=5), day + timedelta(hours=9)
    changed = day + timedelta(hours=3)
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        env = env_for(sim.base_url, tmp_path / "out")
        first = spawn(env, tmp_path, day, done_by_then, "--concurrency", "3")
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-2000:]
        compacted = cli(env, tmp_path, "compact", "--start", "2026-11-26", "--end", "2026-11-26")
        assert compacted.returncode == 0, compacted.stderr
        uri = str(tmp_path / "out" / "website")
        assert len(DeltaTable(uri).file_uris()) == 1
        sim.change_hour(changed)
        runs = [
            *(spawn(env, tmp_path, day, newest, "--shard", f"{k}/2") for k in (1, 2)),
            spawn(env, tmp_path, day, done_by_then, "--recheck", "48h"),
        ]
        outputs = [r.communicate(timeout=600) for r in runs]
        assert [r.returncode for r in runs] == [0, 0, 0], [e[-2000:] for _, e in outputs]
        assert '"hour.changed"' in outputs[2][1]
        dataset = sim.dataset
    assert_table_is(uri, dataset, day, newest)
    verify = cli(
        env, tmp_path, "verify", "--start", f"{day:%Y-%m-%dT%H}", "--end", f"{newest:%Y-%m-%dT%H}"
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
