"""A small lake for the report tests: eight days extracted from the simulator, with every state.

Mon 2026-11-02 to Mon 2026-11-09: one quiet hour (empty), one hour never extracted (missing),
one hour whose manifest is damaged afterwards (failed), the last hours newer than the
availability lag (not yet available), one hour far below the same hour a week before, a new
event property from Nov 7 and a new top-level field from Nov 8, and duplicated uuids. The
first run stores NDJSON, the second gzip'd NDJSON, so both formats are read.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from async_amp.config import ReportConfig
from async_amp.hours import available_until
from async_amp.output.manifest import hour_folder
from async_amp.output.stores.local import LocalSink
from async_amp.reports import Report, build_report
from async_amp.simulator.server import run_simulator
from async_amp.simulator.site_changes import ChangingDataset

from .helpers import KEY, SECRET, make_config, run

FIRST = datetime(2026, 11, 2, tzinfo=UTC)
LAST = datetime(2026, 11, 9, 23, tzinfo=UTC)
NOW = datetime(2026, 11, 9, 21, 30, tzinfo=UTC)
LAG = 2
QUIET = datetime(2026, 11, 3, 4, tzinfo=UTC)
MISSING = datetime(2026, 11, 5, 10, tzinfo=UTC)
FAILED = datetime(2026, 11, 6, 8, tzinfo=UTC)
DROP = datetime(2026, 11, 9, 14, tzinfo=UTC)
PROPERTY_FROM = datetime(2026, 11, 7, tzinfo=UTC)
FIELD_FROM = datetime(2026, 11, 8, tzinfo=UTC)
NEWEST = available_until(NOW, LAG)
HOURS = int((LAST - FIRST) / timedelta(hours=1)) + 1
SETTINGS = ReportConfig(time_zone="Europe/Berlin")

DATASET = ChangingDataset(
    events_per_hour=40,
    pages_per_hour=2,
    quiet_hours=frozenset({QUIET}),
    hour_sizes={DROP: 2},
    property_from=PROPERTY_FROM,
    field_from=FIELD_FROM,
    duplicate_every=15,
    # no ill-typed values: the report reads NDJSON without type checks (reports/ingest.py),
    # and test_parquet_output_gives_the_same_report_as_ndjson compares it with Parquet, which
    # moves such values to _extra
    odd_every=0,
)


@dataclass(frozen=True)
class Lake:
    root: Path  # the output folder: <root>/website/date=.../hour=.../
    report: Report

    def build(
        self, settings: ReportConfig = SETTINGS, first: datetime = FIRST, last: datetime = LAST
    ) -> Report:
        return anyio.run(
            lambda: build_report(
                LocalSink(self.root, run_id="report-test", fsync=False),
                "website",
                first,
                last,
                now=NOW,
                lag_hours=LAG,
                settings=settings,
            )
        )

    def glob(self) -> str:
        return str(self.root / "website" / "*" / "*" / "[0-9]*.json*")

    def read_sql(self) -> str:
        """Every stored row a reader of the lake would count (the failed hour excluded)."""
        return (
            f"SELECT * FROM read_json_auto('{self.glob()}', hive_partitioning = true, "
            "union_by_name = true) "
            f"WHERE NOT (date = '{FAILED:%Y-%m-%d}' AND hour = '{FAILED:%H}')"
        )


@functools.cache
def shared_lake() -> Lake:
    """The lake, built once per test session (several modules read it; none writes to it)."""
    root = Path(tempfile.mkdtemp(prefix="async-amp-report-lake-"))
    atexit.register(shutil.rmtree, root, True)
    return build_lake(root)


def build_lake(root: Path) -> Lake:
    out = root / "data"

    async def extract() -> None:
        async with run_simulator(DATASET, api_key=KEY, secret_key=SECRET) as sim:
            plain = make_config(sim.base_url, out, window_hours=24)
            gz = make_config(sim.base_url, out, window_hours=24, keep_gzip=True)
            first = await run(plain, FIRST, MISSING - timedelta(hours=1))
            second = await run(gz, MISSING + timedelta(hours=1), NEWEST)
        assert first.exit_code == second.exit_code == 0

    anyio.run(extract)
    (out / hour_folder("website", FAILED) / "_manifest.json").write_text("{not json")
    lake = Lake(out, None)  # type: ignore[arg-type]
    return Lake(out, lake.build())
