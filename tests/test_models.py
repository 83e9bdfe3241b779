"""The model tables against an independent reference (``tests/models_reference.py``: plain
Python over the simulator's raw lines), in America/New_York over the end of daylight saving
time (2026-11-01 has 25 hours), with late events, duplicated uuids, sessions over midnight
and odd records; then one hour changed at the source and extracted again: only its days are
built again, and they give the reference's new answer."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pyarrow.parquet as pq
import pytest

from async_amp.config import Config, Credentials, ModelsConfig
from async_amp.hours import hour_range
from async_amp.models import TABLES, day_span
from async_amp.models.api import model, reconcile
from async_amp.models.build import ModelRun
from async_amp.models.reconcile import Reconciliation
from async_amp.output.stores import make_sink
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.segmentation import Segmentation
from async_amp.simulator.server import run_simulator
from async_amp.simulator.site_changes import ChangingDataset

from .helpers import KEY, SECRET, make_config, run
from .models_reference import Ev, read_events, reference

ZONE = ZoneInfo("America/New_York")
FIRST = datetime(2026, 10, 30, tzinfo=UTC)
DAYS = [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
LATENESS = 72
LAST = day_span(DAYS[-1], ZONE)[1] - timedelta(hours=1) + timedelta(hours=LATENESS)
NOW = LAST + timedelta(hours=6)
CHANGED = datetime(2026, 11, 2, 4, tzinfo=UTC)  # 23:00 EST on Nov 1
DATASET = ChangingDataset(events_per_hour=30, pages_per_hour=2, duplicate_every=15, odd_every=29)


def _config(base_url: str, out: Path) -> Config:
    config = make_config(base_url, out, window_hours=24)
    return replace(
        config,
        output=replace(config.output, format="parquet"),
        models=ModelsConfig(time_zone=ZONE.key, lateness_hours=LATENESS),
    )


async def _extract(
    dataset: Dataset, out: Path, first: datetime, last: datetime, *, force: bool = False
) -> None:
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = _config(sim.base_url, out)
        summary = await run(
            config,
            first,
            last,
            sink=make_sink(config, run_id="test-run", environ={}),
            now=NOW,
            force=force,
        )
    assert summary.exit_code == 0


def _lines(datasets: dict[datetime, Dataset]) -> list[bytes]:
    lines: list[bytes] = []
    for hour in hour_range(FIRST, LAST):
        ds = datasets.get(hour, DATASET)
        for page in ds.pages(hour):
            lines += ds.ndjson(hour, page).splitlines()
    return lines


def _build(out: Path) -> ModelRun:
    config = _config("http://127.0.0.1:9", out)
    (runs,) = anyio.run(lambda: model(config, start=DAYS[0], end=DAYS[-1], now=NOW))
    return runs


def _product(out: Path) -> dict[str, list[dict[str, Any]]]:
    root = out / "_models" / "website"
    found = {}
    for model_table in TABLES:
        if model_table.by_day:
            files = sorted((root / model_table.name).glob("day=*/part-0.parquet"))
        else:
            files = [root / model_table.name / f"{model_table.name}.parquet"]
        found[model_table.name] = [row for f in files for row in pq.read_table(f).to_pylist()]
    return found


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def _assert_same(
    product: dict[str, list[dict[str, Any]]], expected: dict[str, list[dict[str, Any]]]
) -> None:
    for name, rows in expected.items():
        got = _rounded(product[name])
        want = _rounded(rows)
        assert len(got) == len(want), f"{name}: {len(got)} rows, reference {len(want)}"
        for g, w in zip(got, want, strict=True):
            assert g == w, f"{name} differs:\n{g}\n{w}"


def _touched(events: list[Ev]) -> set[date]:
    return {e.day for e in events} | {e.sday for e in events if e.sday is not None}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "data"
    anyio.run(_extract, DATASET, out, FIRST, LAST)
    return out


def test_model_tables_match_the_reference_across_a_dst_change(lake: Path) -> None:
    settings = _config("http://127.0.0.1:9", lake).report
    events = read_events(_lines({}), settings, ZONE)
    in_range = [e for e in events if e.day in DAYS]
    # the data has what the test is about
    assert day_span(DAYS[1], ZONE)[1] - day_span(DAYS[1], ZONE)[0] == timedelta(hours=25)
    raw = _lines({})
    assert len(raw) > len(events)  # duplicated uuids
    by_session: dict[tuple[str | None, int | None], set[date]] = {}
    for e in in_range:
        if e.sday is not None:
            by_session.setdefault((e.amp, e.session_id), set()).add(e.day)
    assert any(len(days) > 1 for days in by_session.values()), "no session over midnight"

    built = _build(lake)
    assert built.built == tuple(DAYS)
    assert {d.status for d in built.days} == {"final"}
    expected = reference(events, DAYS, dict.fromkeys(DAYS, "final"))
    assert sum(r["events"] for r in expected["daily"]) == len(in_range)
    _assert_same(_product(lake), expected)

    # nothing changed: nothing is built again
    assert _build(lake).built == ()


def test_the_docs_queries_run_on_the_model_tables(lake: Path) -> None:
    """Every DuckDB query of docs/models.md (``tools/models_doc.py`` prints their outputs on
    the demo's data), on this lake's tables: it gives rows, with the columns the document
    shows under it."""
    import duckdb

    from tools.models_doc import BLOCK, DOC

    _build(lake)  # a no-op when an earlier test made it
    blocks = list(BLOCK.finditer(DOC.read_text(encoding="utf-8")))
    assert len(blocks) >= 4
    with duckdb.connect() as con, pytest.MonkeyPatch.context() as mp:
        mp.chdir(lake.parent)  # the document's paths are relative: data/_models/...
        for block in blocks:
            assert "```text\n" in block[0], f"{block['name']}: no output under it"
            header = block[0].split("```text\n", 1)[1].splitlines()[1]
            shown = [c.strip() for c in header.strip().strip("\u2502").split("\u2502")]
            relation = con.sql(block["sql"])
            assert relation.columns == shown, block["name"]
            assert relation.fetchall(), f"{block['name']}: no rows"


def test_a_rebuild_from_nothing_gives_identical_files(lake: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(lake, copy)
    _build(copy)
    root = copy / "_models" / "website"
    before = {
        p.relative_to(root): p.read_bytes()
        for p in root.rglob("*.parquet")
        if "_build" not in p.parts
    }
    shutil.rmtree(root / "_build")
    assert _build(copy).built == tuple(DAYS)
    after = {
        p.relative_to(root): p.read_bytes()
        for p in root.rglob("*.parquet")
        if "_build" not in p.parts
    }
    assert before == after


def test_a_changed_hour_rebuilds_only_its_days(lake: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(lake, copy)
    _build(copy)
    changed = replace(DATASET, hour_sizes={CHANGED: 7})
    settings = _config("http://127.0.0.1:9", copy).report

    def hour_events(ds: Dataset) -> list[Ev]:
        lines = [
            line for page in ds.pages(CHANGED) for line in ds.ndjson(CHANGED, page).splitlines()
        ]
        return read_events(lines, settings, ZONE)

    anyio.run(lambda: _extract(changed, copy, CHANGED, CHANGED, force=True))
    rebuilt = _build(copy)
    touched = (_touched(hour_events(DATASET)) | _touched(hour_events(changed))) & set(DAYS)
    assert set(rebuilt.built) == touched
    assert touched != set(DAYS)  # the test shows something: some day is left alone
    assert rebuilt.hours_read == (CHANGED,)
    events = read_events(_lines({CHANGED: changed}), settings, ZONE)
    _assert_same(_product(copy), reference(events, DAYS, dict.fromkeys(DAYS, "final")))


def _reconcile(
    out: Path, segmentation: Segmentation, days: tuple[date, date]
) -> tuple[Reconciliation, int, int]:
    async def go() -> tuple[Reconciliation, int, int]:
        async with run_simulator(
            DATASET, api_key=KEY, secret_key=SECRET, segmentation=segmentation
        ) as sim:
            config = replace(_config(sim.base_url, out), credentials=Credentials(KEY, SECRET))
            result = await reconcile(
                config, start=days[0], end=days[1], event_types=(TYPE,), now=NOW
            )
            return result, sim.segmentation.requests, sim.segmentation.max_in_flight_seen

    return anyio.run(go)


TYPE = "Page Viewed"


def test_reconcile_agrees_on_final_days_and_says_why_others_differ(
    lake: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(lake, copy)
    later = date(2026, 11, 6)  # starts after the last extracted hour
    config = _config("http://127.0.0.1:9", copy)
    anyio.run(lambda: model(config, start=DAYS[0], end=later, now=NOW))
    first = DAYS[0] - timedelta(days=1)
    result, requests, in_flight = _reconcile(copy, Segmentation(time_zone=ZONE.key), (first, later))
    assert result.exit_code == 0, result.failures
    assert requests == 4 and 1 < in_flight <= 2
    rows = {(r.day, r.event_type, r.metric): r for r in result.rows}
    assert len(rows) == 8 * 2 * 2
    for day in DAYS:
        for key in (("_all", "events"), ("_all", "users"), (TYPE, "events"), (TYPE, "users")):
            row = rows[(day, *key)]
            assert row.status == "final" and row.difference == 0 and row.lake, row
    assert rows[(first, "_all", "events")].status == "not built"
    assert rows[(first, "_all", "events")].lake is None
    for day in (date(2026, 11, 3), date(2026, 11, 4), date(2026, 11, 5)):
        row = rows[(day, "_all", "events")]
        assert row.status == "provisional" and row.difference is not None and row.difference <= 0
    outside = rows[(later, "_all", "events")]
    assert outside.status == "provisional" and outside.lake == 0 and outside.amplitude > 0
    assert outside.reason == "outside the extracted range"
    # the figures are the reference's
    settings = config.report
    events = [e for e in read_events(_lines({}), settings, ZONE) if e.day == DAYS[1]]
    assert rows[(DAYS[1], "_all", "events")].amplitude == len(events)
    assert rows[(DAYS[1], TYPE, "users")].lake == len(
        {e.amp for e in events if e.event_type == TYPE}
    )

    told = Segmentation(
        time_zone=ZONE.key, disagree=lambda d, m, e: 3 if d == DAYS[1] and m == "totals" else 0
    )
    result, _, _ = _reconcile(copy, told, (DAYS[0], DAYS[-1]))
    assert result.exit_code == 1
    assert {(r.day, r.event_type, r.metric) for r in result.failures} == {
        (DAYS[1], "_all", "events"),
        (DAYS[1], TYPE, "events"),
    }
    assert all(r.difference == -3 for r in result.failures)
    # within the tolerance, the same difference passes
    loose = replace(result, tolerance=0.5)
    assert loose.exit_code == 0


def test_delta_events_give_delta_model_tables_with_the_same_rows(
    lake: Path, tmp_path: Path
) -> None:
    """Events extracted as Delta: the model tables are Delta tables, each day one commit, with
    the rows the Parquet build gave (the reference's)."""
    from deltalake import DeltaTable

    out = tmp_path / "data"
    day = DAYS[1]
    first, _ = day_span(day, ZONE)
    last = day_span(day, ZONE)[1] + timedelta(hours=LATENESS - 1)

    async def extract() -> None:
        async with run_simulator(DATASET, api_key=KEY, secret_key=SECRET) as sim:
            config = _config(sim.base_url, out)
            config = replace(config, output=replace(config.output, format="delta"))
            sink = make_sink(config, run_id="test-run", environ={})
            summary = await run(config, first - timedelta(hours=1), last, sink=sink, now=NOW)
        assert summary.exit_code == 0

    anyio.run(extract)
    config = _config("http://127.0.0.1:9", out)
    config = replace(config, output=replace(config.output, format="delta"))
    (built,) = anyio.run(lambda: model(config, start=day, end=day, now=NOW))
    assert built.built == (day,) and built.days[0].status == "final"
    root = out / "_models" / "website"
    _build(lake)  # the Parquet build (a no-op when an earlier test made it)
    parquet = _product(lake)
    for name in ("daily", "daily_events", "sessions", "pages_daily"):
        table = DeltaTable(str(root / name))
        rows = sorted(table.to_pyarrow_table().to_pylist(), key=repr)
        want = sorted((r for r in parquet[name] if r["day"] == day), key=repr)
        assert _rounded(rows) == _rounded(want), name
    versions = DeltaTable(str(root / "daily")).version()
    anyio.run(lambda: model(config, start=day, end=day, now=NOW))
    assert DeltaTable(str(root / "daily")).version() == versions  # nothing changed: no commit


def test_extract_builds_the_days_it_touched_when_models_are_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from async_amp.cli import main
    from async_amp.simulator.background import BackgroundSimulator

    from .helpers import isolate_cli

    isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_NOW="2026-11-26T12:00:00Z")
    dataset = Dataset(events_per_hour=20, pages_per_hour=1)
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        (tmp_path / "config.toml").write_text(
            f'[amplitude]\nbase_url = "{sim.base_url}"\n\n[output]\ndir = "data"\n'
            'fsync = false\nformat = "parquet"\n\n[models]\nenabled = true\n'
            "lateness_hours = 0\n",
            encoding="utf-8",
        )
        code = main(["extract", "--start", "2026-11-01", "--end", "2026-11-01", "--quiet"])
    out, _ = capsys.readouterr()
    assert code == 0
    # the hours touch Oct 31 (late events) and Nov 1, and Nov 2 (sessions' ids): all built
    assert "models website: " in out
    daily = tmp_path / "data" / "_models" / "website" / "daily"
    (row,) = pq.read_table(daily / "day=2026-11-01" / "part-0.parquet").to_pylist()
    assert row["status"] == "final" and row["events"] > 0


def _fold(rows: list[dict[str, Any]], person: dict[str, str]) -> list[dict[str, Any]]:
    """``users`` from ``users_daily`` rows in plain Python: one row per person; of one day's
    rows of a person, the one seen first gives the first source, the last the latest values."""
    low = datetime.min.replace(tzinfo=UTC)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(person.get(row["amplitude_id"], row["amplitude_id"]), []).append(row)
    out = []
    for who in sorted(groups):
        mine = groups[who]
        late = sorted(
            mine,
            key=lambda r: (
                r["day"],
                r["last_seen"] is not None,
                r["last_seen"] or low,
                r["amplitude_id"],
            ),
        )
        early = sorted(
            mine,
            key=lambda r: (
                r["day"],
                r["first_seen"] is None,
                r["first_seen"] or low,
                r["amplitude_id"],
            ),
        )

        def last(key: str, late: list[dict[str, Any]] = late) -> Any:
            found = [r[key] for r in late if r[key] is not None]
            return found[-1] if found else None

        seen = [r["first_seen"] for r in mine if r["first_seen"] is not None]
        ends = [r["last_seen"] for r in mine if r["last_seen"] is not None]
        created = [r["user_creation_time"] for r in mine if r["user_creation_time"] is not None]
        sources = [r["first_source"] for r in early if r["first_source"] is not None]
        out.append({
            "amplitude_id": who, "user_id": last("user_id"),
            "first_seen": min(seen) if seen else None, "last_seen": max(ends) if ends else None,
            "days": len({r["day"] for r in mine if r["events"] > 0}),
            "sessions": sum(r["sessions"] for r in mine), "events": sum(r["events"] for r in mine),
            "page_views": sum(r["page_views"] for r in mine),
            "first_source": sources[0] if sources else None, "country": last("country"),
            "city": last("city"), "company": last("company"),
            "user_creation_time": max(created) if created else None,
        })  # fmt: skip
    return out


def test_users_count_a_merged_amplitude_id_as_the_id_it_ends_up_as(
    lake: Path, tmp_path: Path
) -> None:
    """Amplitude's merged ids land (the ``merged_ids`` table): the next build folds ``users``
    again, one row per person (a chain c -> a -> b ends at b), and builds no day."""
    import gzip
    import json

    from async_amp.merged import merged_name, merged_table
    from async_amp.merged.feed import _parse
    from async_amp.output.manifest import Manifest
    from async_amp.output.stores.local import LocalSink

    copy = tmp_path / "data"
    shutil.copytree(lake, copy)
    _build(copy)
    settings = _config("http://127.0.0.1:9", copy).report
    expected = reference(
        read_events(_lines({}), settings, ZONE), DAYS, dict.fromkeys(DAYS, "final")
    )
    daily = expected["users_daily"]
    assert _rounded(_fold(daily, {})) == _rounded(expected["users"])  # the fold is the reference's
    # two ids active on the same day, and a third merged into one of them
    by_day: dict[date, list[str]] = {}
    for row in daily:
        if row["amplitude_id"].isdigit() and row["events"]:
            by_day.setdefault(row["day"], []).append(row["amplitude_id"])
    a, b = sorted(by_day[DAYS[1]])[:2]
    c = next(x for x in sorted(by_day[DAYS[2]]) if x not in (a, b))
    hour = datetime(2026, 11, 3, 5, tzinfo=UTC)
    ms = int(hour.timestamp() * 1000)
    lines = b"".join(
        json.dumps({
            "scope": 36958, "merge_time": ms + n, "merge_server_time": ms + n + 1,
            "amplitude_id": int(old), "merged_amplitude_id": int(new),
        }).encode() + b"\n"
        for n, (old, new) in enumerate([(a, b), (c, a)])
    )  # fmt: skip

    async def put() -> None:
        store = LocalSink(copy, run_id="test-merges", fsync=False)
        await store.prepare()
        try:
            feed = _parse(hour, merged_name(36958, hour), gzip.compress(lines))
            base = Manifest(hour=hour, status="complete", files=(), attempts=1, extracted_at=NOW)
            await merged_table("parquet", store, store, "website").commit(hour, [feed], base)
        finally:
            await store.aclose()

    anyio.run(put)
    rebuilt = _build(copy)
    assert rebuilt.built == ()
    users = _product(copy)["users"]
    assert {a, c}.isdisjoint(u["amplitude_id"] for u in users)
    assert _rounded(users) == _rounded(_fold(daily, {a: b, c: b}))
    assert len(users) == len(expected["users"]) - 2
