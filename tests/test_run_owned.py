"""What a run converts and commits with is its own: two runs in one process, one after the
other or at once in two threads, share no DuckDB engine, no remembered key and no Delta
writer, and every engine a run opened is closed when the run ends."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

import async_amp
from async_amp.output.columnar.convert import Engines
from async_amp.output.columnar.spool import Conversions
from async_amp.output.delta.table import Writers
from async_amp.simulator.background import BackgroundSimulator

from .delta_helpers import expected_rows_per_hour, read_table, rows_per_hour, table_dir
from .helpers import DAY1, KEY, SECRET, small_dataset

FIRST = DAY1
LAST = DAY1.replace(hour=2)


class Watch:
    """Every ``Conversions`` and ``Writers`` made, and the connections each engine pool used."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.conversions: list[Conversions] = []
        self.writers: list[Writers] = []
        self.used: dict[int, set[duckdb.DuckDBPyConnection]] = {}
        self._lock = threading.Lock()
        made_conversions = Conversions.__init__
        made_writers = Writers.__init__
        engine = Engines.engine

        def conversions(this: Conversions, engines: int | None = None) -> None:
            made_conversions(this, engines)
            with self._lock:
                self.conversions.append(this)

        def writers(this: Writers) -> None:
            made_writers(this)
            with self._lock:
                self.writers.append(this)

        @contextlib.contextmanager
        def used(this: Engines) -> Iterator[duckdb.DuckDBPyConnection]:
            with engine(this) as con:
                with self._lock:
                    self.used.setdefault(id(this), set()).add(con)
                yield con

        monkeypatch.setattr(Conversions, "__init__", conversions)
        monkeypatch.setattr(Writers, "__init__", writers)
        monkeypatch.setattr(Engines, "engine", used)

    def connections(self, conversions: Conversions) -> set[duckdb.DuckDBPyConnection]:
        return self.used.get(id(conversions.engines), set())


def _closed(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        con.execute("SELECT 1")
    except duckdb.ConnectionException:
        return True
    return False


def _config(base_url: str, out: Path, output_format: str) -> async_amp.Config:
    environ = {
        "ASYNC_AMP_AMPLITUDE_BASE_URL": base_url,
        "ASYNC_AMP_OUTPUT_DIR": str(out),
        "ASYNC_AMP_OUTPUT_FSYNC": "false",
        "ASYNC_AMP_OUTPUT_FORMAT": output_format,
        "ASYNC_AMP_EXTRACT_BACKOFF_BASE_S": "0.01",
        "ASYNC_AMP_EXTRACT_BACKOFF_MAX_S": "0.05",
    }
    return async_amp.load_config(None, api_key=KEY, secret_key=SECRET, environ=environ)


def _extract(config: async_amp.Config) -> async_amp.ExtractResult:
    return async_amp.extract_sync(config, start=FIRST, end=LAST)


def _assert_own_and_closed(watch: Watch, runs: int) -> None:
    assert len(watch.conversions) == runs
    assert len({id(c.seen) for c in watch.conversions}) == runs
    pools = [watch.connections(c) for c in watch.conversions]
    assert all(pools)  # each run converted on its own engines ...
    assert set(watch.used) == {id(c.engines) for c in watch.conversions}  # ... and no others
    every = [con for pool in pools for con in pool]
    assert len(every) == len(set(every))  # no connection served two runs
    assert all(_closed(con) for con in every)  # and none outlives its run


def test_two_runs_one_after_the_other_share_nothing_and_close_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = Watch(monkeypatch)
    dataset = small_dataset()
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        for n in range(2):
            result = _extract(_config(sim.base_url, tmp_path / f"out{n}", "parquet"))
            assert result.exit_code == 0
            _assert_own_and_closed(watch, n + 1)
    want = sum(dataset.event_count(h, p) for h in _hours() for p in dataset.pages(h))
    for n in range(2):
        files = sorted((tmp_path / f"out{n}").rglob("*.parquet"))
        assert files
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet({[str(f) for f in files]})")
        assert rows.fetchall() == [(want,)]


def test_two_delta_runs_at_once_in_two_threads_share_nothing_and_close_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = Watch(monkeypatch)
    dataset = small_dataset()
    results: list[async_amp.ExtractResult] = []
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        configs = [_config(sim.base_url, tmp_path / f"out{n}", "delta") for n in range(2)]
        threads = [
            threading.Thread(target=lambda c=c: results.append(_extract(c))) for c in configs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [r.exit_code for r in results] == [0, 0]
    _assert_own_and_closed(watch, 2)
    assert len(watch.writers) == 2
    assert all(len(w) == 0 for w in watch.writers)  # their snapshots let go with the run
    want = expected_rows_per_hour(dataset, FIRST, LAST)
    for n in range(2):
        assert rows_per_hour(read_table(str(table_dir(tmp_path / f"out{n}")))) == want


def _hours() -> list[datetime]:
    return [FIRST.replace(hour=h) for h in range(LAST.hour + 1)]
