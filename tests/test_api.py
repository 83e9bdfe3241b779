"""The Python API against the simulated Export API: typed results, user errors as exceptions,
and a process left alone (logging, structlog, signal handlers), in one thread or several."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import anyio
import pytest
import structlog

import async_amp
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import Fault, FaultPlan

from .helpers import DAY1, KEY, SECRET, assert_output_matches, small_dataset

pytestmark = pytest.mark.filterwarnings("error")


def _config(tmp_path: Path, base_url: str, **extract: str) -> async_amp.Config:
    environ = {
        "ASYNC_AMP_AMPLITUDE_BASE_URL": base_url,
        "ASYNC_AMP_OUTPUT_DIR": str(tmp_path / "data"),
        "ASYNC_AMP_OUTPUT_FSYNC": "false",
        "ASYNC_AMP_EXTRACT_BACKOFF_BASE_S": "0.01",
        "ASYNC_AMP_EXTRACT_BACKOFF_MAX_S": "0.05",
        **{f"ASYNC_AMP_EXTRACT_{k.upper()}": v for k, v in extract.items()},
    }
    return async_amp.load_config(
        None,
        api_key=KEY,
        secret_key=SECRET,
        environ=environ,
    )


def _process_state() -> tuple[object, ...]:
    root = logging.getLogger()
    return (
        tuple(root.handlers),
        root.level,
        structlog.get_config(),
        structlog.is_configured(),
        signal.getsignal(signal.SIGINT),
        signal.getsignal(signal.SIGTERM),
        tuple(logging.getLogger("async_amp").handlers),
        logging.getLogger("async_amp").level,
    )


def test_extract_sync_returns_typed_results_and_leaves_the_process_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dataset = small_dataset(quiet_hours=frozenset({DAY1.replace(hour=3)}))
    before = _process_state()
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = _config(tmp_path, sim.base_url)
        seen: list[async_amp.HourResult] = []
        result = async_amp.extract_sync(
            config, start="2026-11-01", end=date(2026, 11, 1), on_hour=seen.append
        )
        again = async_amp.extract_sync(
            config, start=DAY1, end=datetime(2026, 11, 1, 23, 30, tzinfo=UTC)
        )
    assert _process_state() == before
    assert capsys.readouterr() == ("", "")  # nothing printed, on either stream
    assert isinstance(result, async_amp.ExtractResult)
    assert result.exit_code == 0 and not result.failed_hours
    website = result.project("website")
    assert (website.complete, website.empty, website.failed) == (23, 1, 0)
    assert website.events == sum(
        dataset.event_count(h, p) for h in result.projects[0].plan.hours for p in dataset.pages(h)
    )
    assert len(seen) == 24 and {r.project for r in seen} == {"website"}
    result.raise_for_failures()
    assert again.project("website").skipped == 24 and again.project("website").requests == 0
    assert_output_matches(tmp_path / "data", dataset, DAY1, DAY1.replace(hour=23))

    status = async_amp.status_sync(config, start="2026-11-01", end="2026-11-01")
    assert status.projects[0].count("complete") == 23
    assert status.to_json()["totals"]["complete"] == 23
    report = async_amp.verify_sync(config, start="2026-11-01", end="2026-11-01")
    assert report.ok and report.projects[0].checked == 24


def test_failed_hours_are_named_and_raise_incomplete_extraction(tmp_path: Path) -> None:
    broken = DAY1.replace(hour=5)
    faults = FaultPlan.always({broken: Fault.HTTP_500})
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET, faults=faults) as sim:
        config = _config(tmp_path, sim.base_url, max_attempts="2")
        result = async_amp.extract_sync(config, start="2026-11-01T04", end="2026-11-01T06")
        asked = sim.request_count()
        # a stop already set: the run plans, fetches nothing and says it was interrupted
        stop, started = anyio.Event(), []
        stop.set()
        stopped = async_amp.extract_sync(
            config,
            start="2026-11-01T07",
            end="2026-11-01T09",
            stop=stop,
            run_id="r-stop",
            on_start=started.append,
        )
        assert sim.request_count() == asked
    assert [run.run_id for run in started] == ["r-stop"] and stopped.run_id == "r-stop"
    assert stopped.interrupted and stopped.exit_code == 1
    assert stopped.project("website").unfinished == 3
    assert not list((tmp_path / "data").rglob("hour=07"))
    assert result.exit_code == 1
    assert [(f.project, f.hour, f.attempts) for f in result.failed_hours] == [
        ("website", broken, 2)
    ]
    assert "500" in result.failed_hours[0].error
    with pytest.raises(async_amp.IncompleteExtraction, match="website:2026-11-01T05") as caught:
        result.raise_for_failures()
    assert caught.value.failed_hours == result.failed_hours
    assert result.to_json()["totals"]["failed_hours"] == ["website:2026-11-01T05:00:00Z"]


def test_user_errors_raise_from_the_public_tree_never_system_exit(tmp_path: Path) -> None:
    with pytest.raises(async_amp.ConfigError, match="2 problems"):
        async_amp.load_config(
            None,
            environ={"ASYNC_AMP_EXTRACT_CONCURRENCY": "0", "ASYNC_AMP_EXTRACT_NOPE": "1"},
        )
    config = async_amp.load_config(None, environ={"ASYNC_AMP_OUTPUT_DIR": str(tmp_path)})
    with pytest.raises(async_amp.CredentialsError, match="AMP_API_KEY"):
        async_amp.extract_sync(config, start="2026-11-01", end="2026-11-01")
    with pytest.raises(async_amp.ConfigError, match="timezone"):
        async_amp.extract_sync(config, start=datetime(2026, 11, 1), end="2026-11-01", dry_run=True)
    with pytest.raises(async_amp.ConfigError, match="swap"):
        async_amp.extract_sync(config, start="2026-11-02", end="2026-11-01", dry_run=True)
    assert issubclass(async_amp.ConfigError, async_amp.UserError)
    assert issubclass(async_amp.CredentialsError, async_amp.UserError)


def test_the_config_variable_names_the_file_and_a_path_given_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ASYNC_AMP_CONFIG`` is how a scheduler's workers find the file: read, not rejected as
    an unknown ``ASYNC_AMP_*`` variable; an explicit path still wins; a wrong one is named."""
    monkeypatch.chdir(tmp_path)
    named = tmp_path / "etc" / "prod.toml"
    named.parent.mkdir()
    named.write_text('[output]\ndir = "from-variable"\n', encoding="utf-8")
    (tmp_path / "config.toml").write_text('[output]\ndir = "from-cwd"\n', encoding="utf-8")
    monkeypatch.setenv("ASYNC_AMP_CONFIG", str(named))
    config = async_amp.load_config(api_key=KEY, secret_key=SECRET)  # the process environment
    assert config.file == named
    assert config.output.dir.name == "from-variable"
    given = async_amp.load_config("config.toml", api_key=KEY, secret_key=SECRET)
    assert given.output.dir.name == "from-cwd"
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(async_amp.ConfigError, match=r"^ASYNC_AMP_CONFIG=.*nope\.toml: no such"):
        async_amp.load_config(environ={"ASYNC_AMP_CONFIG": missing})
    unset = async_amp.load_config(environ={"ASYNC_AMP_CONFIG": " "})  # blank: not set
    assert unset.output.dir.name == "from-cwd"


def test_runs_in_worker_threads_at_once(tmp_path: Path) -> None:
    """Two extractions in two threads of one process, each into its own folder."""
    dataset = small_dataset()
    results: dict[str, async_amp.ExtractResult] = {}
    errors: list[BaseException] = []
    before = _process_state()
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:

        def work(name: str) -> None:
            try:
                config = _config(tmp_path / name, sim.base_url)
                results[name] = async_amp.extract_sync(
                    config, start="2026-11-01T00", end="2026-11-01T11"
                )
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    assert _process_state() == before
    for name in ("a", "b"):
        assert results[name].exit_code == 0
        assert results[name].project("website").complete == 12
        assert_output_matches(tmp_path / name / "data", dataset, DAY1, DAY1.replace(hour=11))


def test_log_events_reach_the_callers_logging_and_carry_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        config = _config(tmp_path, sim.base_url)
        with caplog.at_level(logging.INFO, logger="async_amp"):
            result = async_amp.extract_sync(config, start="2026-11-01T00", end="2026-11-01T01")
    done = [r for r in caplog.records if r.__dict__["event"] == "hour.done"]
    assert len(done) == 2
    assert {r.__dict__["run_id"] for r in done} == {result.run_id}
    assert {r.__dict__["project"] for r in done} == {"website"}
    # a plain formatter (an engine's task log) shows the fields, not only the event's name
    lines = sorted(logging.Formatter("%(message)s").format(r) for r in done)
    for line, hour in zip(lines, ("2026-11-01T00:00:00Z", "2026-11-01T01:00:00Z"), strict=True):
        assert line.startswith("hour.done "), line
        assert f"hour={hour}" in line and "status=complete" in line, line
        assert f"run_id={result.run_id}" in line, line
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert KEY not in text and SECRET not in text
    # each record names the line of async_amp that logged it, not structlog's
    package = Path(async_amp.__file__).parent
    assert all(Path(r.pathname).is_relative_to(package) for r in caplog.records)
    assert {(r.module, r.funcName) for r in done} == {("flow", "settle")}
    for record in caplog.records:
        line = Path(record.pathname).read_text().splitlines()[record.lineno - 1]
        assert "log." in line, (record.getMessage(), record.pathname, record.lineno, line)
