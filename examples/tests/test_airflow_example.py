"""The Airflow example, run for real with Airflow 3 (``.venv-airflow``, see the Makefile): a
temporary ``AIRFLOW_HOME`` whose DAG folder is ``examples/airflow``, ``airflow db migrate``,
``airflow dags reserialize``, then ``airflow dags test`` processes at once against the
simulated Export API, the config named by ``ASYNC_AMP_CONFIG`` as the docs say.

- two runs triggered by hand for two different days, into one output root: the files are those
  the simulator served and those a plain extraction writes, byte for byte, each hour asked once;
- two runs as the scheduler makes them (no params, a logical date): each takes the 24 hours that
  became available in the day before it, up to the availability lag, and nothing else;
- a run with only ``start`` fails with a message, a bad config fails its task at once (no
  retry: a retry would wait minutes, past the timeout).

A ``dags test`` still running at the timeout gets SIGINT (it ignores SIGTERM while it waits to
retry a task); a run passes on its ``state=success`` line, not only its exit code.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import async_amp
from async_amp.hours import hour_range
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.wire import Latency, RequestRecord
from tests.helpers import DAY1, KEY, SECRET, assert_output_matches, last_hour_of, small_dataset

EXAMPLE = Path(__file__).resolve().parent.parent / "airflow"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
TIMEOUT_S = 600
HOUR = timedelta(hours=1)
LAG = 2  # [extract] availability_lag_hours: the default, left unset in the config

sys.path.insert(0, str(EXAMPLE))
import amplitude_dag as example  # noqa: E402 - the DAG folder is not a package

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@dataclass
class Run:
    """One finished ``airflow dags test``: its exit code, output and final run state."""

    code: int
    output: str

    @property
    def state(self) -> str:
        found = re.findall(r"DagRun Finished: dag_id=amplitude_daily, .*? state=(\w+)", self.output)
        return found[-1] if found else "none"


def _environ(home: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "AZURE_", "AIRFLOW"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # SQLite: several dags test processes write at once; wait for the lock up to a minute
        # (sqlite3's default is 5 s, too short on a busy machine)
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}?timeout=60",
        AIRFLOW__USAGE_DATA_COLLECTION__ENABLED="False",
        AMP_API_KEY=KEY,
        AMP_SECRET_KEY=SECRET,
        ASYNC_AMP_CONFIG=str(config),
        PYTHONPATH=os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")]),
    )
    return env


def _dags_test(runs: list[tuple[str, str | None, dict[str, str]]]) -> list[Run]:
    """``airflow dags test amplitude_daily DATE [-c CONF]`` for each run, all at once."""
    procs = [
        subprocess.Popen(
            [AIRFLOW, "dags", "test", "amplitude_daily", when, *(["-c", conf] if conf else [])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for when, conf, env in runs
    ]
    deadline = time.monotonic() + TIMEOUT_S
    finished = []
    for proc in procs:
        try:
            output = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
        except subprocess.TimeoutExpired:
            for late in procs:  # dags test ignores SIGTERM while it waits to retry a task
                late.send_signal(signal.SIGINT)
            output = proc.communicate(timeout=60)[0]
            pytest.fail(f"dags test still running after {TIMEOUT_S} s:\n{output[-4000:]}")
        finished.append(Run(proc.returncode, output))
    return finished


def _hour_files(root: Path) -> list[Path]:
    return sorted(
        p.relative_to(root)
        for p in root.glob("*/date=*/hour=*/*")
        if p.is_file() and p.name != "_manifest.json"
    )


def _config(path: Path, base_url: str, root: Path, extra: str = "") -> Path:
    path.write_text(
        f'[amplitude]\nbase_url = "{base_url}"\n'
        "[extract]\nconcurrency = 8\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n"
        f"{extra}"
        f'[output]\ndir = "{root}"\nfsync = false\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with its database made and the example DAG serialized into it."""
    home = tmp_path_factory.mktemp("airflow")
    env = _environ(home, home / "unused.toml")
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run(
            [AIRFLOW, *command],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home


def _asked(requests: Sequence[RequestRecord]) -> Counter[datetime | None]:
    """How often each hour was asked for (every request is one hour: window_hours = 1)."""
    assert all(r.start == r.end for r in requests), requests
    return Counter(r.start for r in requests)


def test_two_days_by_hand_at_once_into_one_root(home: Path, tmp_path: Path) -> None:
    root, plain = tmp_path / "lake", tmp_path / "plain"
    dataset = small_dataset(quiet_hours=frozenset({DAY1.replace(hour=7)}))
    latency = Latency(fixed_s=0.05)  # requests overlap, so the concurrency bound is exercised
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        config = _config(tmp_path / "prod.toml", sim.base_url, root)
        env = _environ(home, config)
        days = [f'{{"start": "2026-11-0{d}", "end": "2026-11-0{d}"}}' for d in (1, 2)]
        runs = _dags_test([("2026-11-10", days[0], env), ("2026-11-11", days[1], env)])
        asked, most_at_once = _asked(sim.requests), sim.max_in_flight_seen
        sim.reset_log()
        of_the_runs = async_amp.load_config(config)
        async_amp.extract_sync(
            async_amp.load_config(
                None,
                api_key=KEY,
                secret_key=SECRET,
                environ={"ASYNC_AMP_CONFIG": str(config), "ASYNC_AMP_OUTPUT_DIR": str(plain)},
            ),
            start="2026-11-01",
            end="2026-11-02",
        ).raise_for_failures()
    for run in runs:
        assert run.code == 0 and run.state == "success", run.output[-4000:]
        # the task log keeps the library's fields (rendered into the message)
        assert re.search(
            r"hour\.done hour=2026-11-0[12]T\d\d:00:00Z status=\w+ attempt=1", run.output
        )
    assert asked == dict.fromkeys(hour_range(DAY1, last_hour_of(DAY1, days=2)), 1)
    assert most_at_once <= example.AMPLITUDE_LIMIT - 1  # 2 slices x 5 // 2 requests
    assert_output_matches(root, dataset, DAY1, last_hour_of(DAY1, days=2))
    stored = _hour_files(root)  # the data files, not the manifests (their run ids differ)
    assert stored and stored == _hour_files(plain)
    for name in stored:
        assert (root / name).read_bytes() == (plain / name).read_bytes(), name
    report = async_amp.verify_sync(of_the_runs, start="2026-11-01", end="2026-11-02")
    assert report.ok and report.projects[0].checked == 48


def test_scheduled_runs_take_the_hours_that_became_available_and_a_bad_run_fails_at_once(
    home: Path, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    dataset = small_dataset()
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = _config(tmp_path / "prod.toml", sim.base_url, root)
        broken = _config(tmp_path / "broken.toml", sim.base_url, root, "max_attempts = 0\n")
        env, env_broken = _environ(home, config), _environ(home, broken)
        scheduled = _dags_test(  # two at once, as the first test's runs by hand
            [
                ("2026-11-05T00:00:00+00:00", None, env),
                ("2026-11-06T00:00:00+00:00", None, env),
            ]
        )
        failed, refused = _dags_test(
            [
                ("2026-11-20", '{"start": "2026-11-01"}', env),
                ("2026-11-21", '{"start": "2026-11-01", "end": "2026-11-01"}', env_broken),
            ]
        )
        asked = _asked(sim.requests)
    for run in scheduled:
        assert run.code == 0 and run.state == "success", run.output[-4000:]
    # the run due at 11-05 00:00 takes 11-03 22:00 .. 11-04 21:00 (lag 2 h), the next the day
    # after: together 48 hours, each asked once, none twice, no gap between them
    due = datetime(2026, 11, 5, tzinfo=UTC)
    first, last = due - timedelta(days=1, hours=LAG), due + timedelta(days=1, hours=-LAG) - HOUR
    assert asked == dict.fromkeys(hour_range(first, last), 1)
    assert_output_matches(root, dataset, first, last)
    stored = {p.parent.parent.name + "/" + p.parent.name for p in root.rglob("_manifest.json")}
    assert len(stored) == 48 and "date=2026-11-05/hour=22" not in stored
    # a run by hand with only start: a message, no KeyError; a bad config: no retry
    assert failed.code != 0 and failed.state == "failed", failed.output[-4000:]
    assert '"start" and "end"' in failed.output and "got only start" in failed.output
    assert "KeyError" not in failed.output
    assert refused.code != 0 and refused.state == "failed", refused.output[-4000:]
    assert "ConfigError" in refused.output and "max_attempts" in refused.output
    assert "up_for_retry" not in refused.output.lower(), refused.output[-4000:]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, '"start" and "end"'),
        ({"start": None, "end": None}, '"start" and "end"'),
        ({"start": "2026-11-01", "end": None}, "got only start"),
        ({"start": None, "end": "2026-11-01"}, "got only end"),
        ({"start": "2026-11-02", "end": "2026-11-01"}, "swap them"),
        ({"start": "2026-11-31", "end": "2026-12-01"}, "must be dates"),
    ],
)
def test_bad_params_of_a_run_by_hand_are_one_clear_message(
    params: dict[str, str | None], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        example.requested_hours(params)


def test_the_windows_tile_whatever_the_interval_start() -> None:
    """Consecutive scheduled runs: no gap, no overlap, each at most a day's slices."""
    taken: list[datetime] = []
    for day in range(3, 8):
        first, last = example.scheduled_hours(datetime(2026, 11, day, tzinfo=UTC), LAG)
        for piece in example.cut_at_midnights(first, last):
            start = datetime.strptime(piece["start"], "%Y-%m-%dT%H").replace(tzinfo=UTC)
            end = datetime.strptime(piece["end"], "%Y-%m-%dT%H").replace(tzinfo=UTC)
            assert start.date() == end.date()
            taken += hour_range(start, end)
    assert taken == list(hour_range(taken[0], taken[-1]))  # in order, each hour once
    assert taken[0] == datetime(2026, 11, 1, 22, tzinfo=UTC) and len(taken) == 5 * 24
