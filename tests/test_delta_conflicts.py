"""A Delta commit conflict through the Python API: logged to the ``async_amp`` logger, never
printed (the library prints nothing, whatever structlog's global configuration is)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import DeltaError
from deltalake.transaction import Transaction

import async_amp
from async_amp.output.delta.table import PARTITION_BY, hour_app_id
from async_amp.simulator.background import BackgroundSimulator

from .helpers import DAY1, KEY, SECRET, small_dataset

HOURS = 8
ROUNDS = 5  # runs of the same hours, until one met a conflict


def _config(out: Path, base_url: str) -> async_amp.Config:
    return async_amp.load_config(
        None,
        api_key=KEY,
        secret_key=SECRET,
        environ={
            "ASYNC_AMP_AMPLITUDE_BASE_URL": base_url,
            "ASYNC_AMP_OUTPUT_DIR": str(out),
            "ASYNC_AMP_OUTPUT_FORMAT": "delta",
            "ASYNC_AMP_OUTPUT_FSYNC": "false",
            "ASYNC_AMP_EXTRACT_CONCURRENCY": "4",
        },
    )


def _rival(uri: str, hours: list[datetime], stop: threading.Event) -> None:
    """Another writer of the table (as a ``--shard`` worker in another process is): it commits
    the application transaction of every hour, back to back, until ``stop``. Its commits add
    and remove no file, so the table's rows stay those of the run; each one conflicts with a
    commit of those hours made on an older snapshot."""
    while not stop.is_set():
        try:
            table = DeltaTable(uri)
            table.create_write_transaction(
                [],
                "append",
                table.schema(),
                partition_by=list(PARTITION_BY),
                commit_properties=CommitProperties(
                    app_transactions=[
                        Transaction(hour_app_id(h), time.time_ns() // 1000) for h in hours
                    ]
                ),
            )
        except (DeltaError, OSError):  # no table yet, or our own commit lost a race
            time.sleep(0.005)


class _FirstConflict(logging.Handler):
    """Sets ``stop`` at the first ``delta.commit_conflict`` record: the rival has made its
    point, and the run's next attempts commit undisturbed."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def emit(self, record: logging.LogRecord) -> None:
        if _is_conflict(record):
            self.stop.set()


def _is_conflict(record: logging.LogRecord) -> bool:
    return record.__dict__.get("event") == "delta.commit_conflict"


def test_delta_commit_conflicts_reach_the_logger_and_print_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "data"
    hours = [DAY1 + timedelta(hours=n) for n in range(HOURS)]
    conflicts: list[logging.LogRecord] = []
    logger = logging.getLogger("async_amp")
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        config = _config(out, sim.base_url)
        with caplog.at_level(logging.INFO, logger="async_amp"):
            for _ in range(ROUNDS):
                stop = threading.Event()
                handler = _FirstConflict(stop)
                logger.addHandler(handler)
                rival = threading.Thread(
                    target=_rival, args=(str(out / "website"), hours, stop), daemon=True
                )
                rival.start()
                try:
                    result = async_amp.extract_sync(
                        config, start=hours[0], end=hours[-1], force=True
                    )
                finally:
                    stop.set()
                    rival.join()
                    logger.removeHandler(handler)
                assert result.exit_code == 0
                conflicts = [r for r in caplog.records if _is_conflict(r)]
                if conflicts:
                    break
    assert conflicts, f"no commit conflict in {ROUNDS} runs"
    assert {r.name for r in conflicts} == {"async_amp"}
    assert {r.__dict__["hour"] for r in conflicts} <= {f"{h:%Y-%m-%dT%H}" for h in hours}
    assert capfd.readouterr() == ("", "")  # nothing on either stream, from Python or Rust
    # the run still wrote every hour once: the rival's commits carry no rows
    dataset = small_dataset()
    rows = DeltaTable(str(out / "website")).to_pyarrow_table(columns=["uuid"]).num_rows
    assert rows == sum(dataset.event_count(h, p) for h in hours for p in dataset.pages(h))
