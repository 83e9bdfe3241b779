"""The Dagster example, run for real: two daily partitions materialized at the same time by two
runs (each in its own process, with the job's multiprocess executor, so each step runs in a
process of its own) against the simulated Export API, into one output root. Both must succeed
with every hour whole, asked once, and nothing left half-written.

Run by ``make test-examples`` (Dagster lives in its own venv, ``.venv-examples``). The two runs
are two processes, not two threads: Dagster configures ``logging`` per run, which two threads
of one process cannot do at once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import async_amp
from async_amp.output.stores.local import STAGING_DIR
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.wire import Latency
from tests.helpers import DAY1, KEY, SECRET, assert_output_matches, last_hour_of, small_dataset

EXAMPLE = Path(__file__).resolve().parent.parent / "dagster"
DAYS = ("2026-11-01", "2026-11-02")
RUN_ONE = """
import sys
import dagster as dg
sys.path.insert(0, sys.argv[1])
from amplitude_assets import daily_job
key = dg.MultiPartitionKey({"day": sys.argv[2], "project": "website"})
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(
        dg.reconstructable(daily_job), instance=instance, tags={"dagster/partition": str(key)}
    )
    sys.exit(0 if result.success else 1)
"""

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def test_two_partitions_at_once_in_separate_processes_into_one_root(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(  # the library's log events in the runs' logs
        "telemetry:\n  enabled: false\n"
        "python_logs:\n  python_log_level: INFO\n  managed_python_loggers: [async_amp]\n",
        encoding="utf-8",
    )
    with dg.DagsterInstance.from_config(str(home)):
        pass  # create its SQLite storage once, before two processes open it at once
    dataset = small_dataset(quiet_hours=frozenset({DAY1.replace(hour=7)}))
    latency = Latency(fixed_s=0.05)  # requests overlap, so the concurrency bound is exercised
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        config = tmp_path / "prod.toml"  # named by ASYNC_AMP_CONFIG, as the example's docs say
        config.write_text(
            f'[amplitude]\nbase_url = "{sim.base_url}"\n[extract]\nconcurrency = 8\n'
            f'[output]\ndir = "{root}"\nfsync = false\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "AZURE_"))}
        env.update(
            DAGSTER_HOME=str(home),
            AMP_API_KEY=KEY,
            AMP_SECRET_KEY=SECRET,
            ASYNC_AMP_CONFIG=str(config),
            PYTHONPATH=os.pathsep.join([str(EXAMPLE), str(Path.cwd()), env.get("PYTHONPATH", "")]),
        )
        runs = [
            subprocess.Popen(  # both at once
                [sys.executable, "-c", RUN_ONE, str(EXAMPLE), day],
                cwd=tmp_path,  # no ./config.toml: only the file ASYNC_AMP_CONFIG names
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for day in DAYS
        ]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
        requests, most_at_once = sim.request_count(), sim.max_in_flight_seen
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
        assert len(records) == 2
        assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
        partitions = {r.dagster_run.tags["dagster/partition"] for r in records}
        assert partitions == {f"{day}|website" for day in DAYS}
        step_pids = {
            e.dagster_event.pid
            for r in records
            for e in instance.all_logs(r.dagster_run.run_id)
            if e.dagster_event is not None
            and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
        }
        assert len(step_pids) == 2  # each partition's step in a process of its own
        done = [
            e.user_message
            for r in records
            for e in instance.all_logs(r.dagster_run.run_id)
            if e.user_message.startswith("hour.done ")
        ]
        assert len(done) == 48  # with their fields, not only the event's name
        assert all(re.search(r"hour=2026-11-0[12]T\d\d:00:00Z status=\w+", m) for m in done)
        assert not step_pids & {run.pid for run in runs}  # not the launching processes
        events = instance.fetch_materializations(dg.AssetKey("amplitude_events"), limit=10)
        metadata = [e.asset_materialization.metadata for e in events.records]  # type: ignore[union-attr]
        assert sorted(m["complete_hours"].value + m["empty_hours"].value for m in metadata) == [
            24,
            24,
        ]

    # every hour of both days: byte-identical files, one manifest each, no stray or torn file
    assert_output_matches(root, dataset, DAY1, last_hour_of(DAY1, days=2))
    assert requests == 48  # each hour asked once: neither partition did the other's work
    assert most_at_once <= 4  # [extract] concurrency = 8, capped at 5 // 2 per run
    leftovers = [p for p in (root / STAGING_DIR).rglob("*") if p.is_file()]
    assert not leftovers, leftovers
    report = async_amp.verify_sync(async_amp.load_config(config), start=DAYS[0], end=DAYS[1])
    assert report.ok and report.projects[0].checked == 48


def test_a_bad_config_fails_the_partition_at_once_without_retries(tmp_path: Path) -> None:
    """A ConfigError is permanent: dagster.Failure(allow_retries=False), not the RetryPolicy's
    retries (each would wait minutes)."""
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    config = tmp_path / "broken.toml"
    config.write_text("[extract]\nmax_attempts = 0\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "AZURE_"))}
    env.update(
        DAGSTER_HOME=str(home),
        ASYNC_AMP_CONFIG=str(config),
        PYTHONPATH=os.pathsep.join([str(EXAMPLE), str(Path.cwd()), env.get("PYTHONPATH", "")]),
    )
    run = subprocess.run(
        [sys.executable, "-c", RUN_ONE, str(EXAMPLE), DAYS[0]],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        kinds = [
            e.dagster_event.event_type
            for e in instance.all_logs(record.dagster_run.run_id)
            if e.dagster_event is not None
        ]
        failures = [
            str(e.dagster_event.event_specific_data)
            for e in instance.all_logs(record.dagster_run.run_id)
            if e.dagster_event is not None
            and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
        ]
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    assert kinds.count(dg.DagsterEventType.STEP_START) == 1
    assert len(failures) == 1 and "ConfigError" in failures[0] and "max_attempts" in failures[0]
