"""The Delta commit's ``uuid_sha256``, computed from the hour's duplicate filter, is the digest
``verify`` computes from the table's files (``table.uuid_digest``), for any uuid values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from async_amp.output.delta import sink as delta_sink
from async_amp.output.delta.digest import DigestingFilter
from async_amp.output.delta.table import uuid_digest
from async_amp.output.delta.verify import verify_table
from async_amp.simulator.server import run_simulator
from async_amp.simulator.site_changes import ChangingDataset

from .delta_helpers import local_delta_sink
from .helpers import DAY1, KEY, SECRET, make_config, run

CANONICAL = [f"{i % 50:08x}-0000-4000-8000-{i:012x}" for i in range(200)]
ODD = [
    None,
    "",
    "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D",  # upper case: not canonical
    "0a1b2c3d4e5f4a6b8c7d9e0f1a2b3c4d",  # no hyphens
    "short",
    "ünïcødé-uuid-😀",
    "a\nb",  # a newline inside the value
    "x" * 80,
    "00000000-0000-4000-8000-00000000000",  # 35 characters
    "\x00leading-nul",
    "mid\x00nul",
    CANONICAL[3],  # a canonical duplicate among odd values
]


def _batches(values: list[str | None], size: int) -> list[pa.RecordBatch]:
    return [
        pa.RecordBatch.from_pydict({"uuid": pa.array(values[i : i + size], pa.utf8())})
        for i in range(0, len(values), size)
    ]


@pytest.mark.parametrize("drop", [False, True], ids=["count", "dedupe"])
@pytest.mark.parametrize(
    "values",
    [CANONICAL + CANONICAL[:40], CANONICAL[:90] + ODD + CANONICAL[90:] + ODD, ODD, [None] * 5, []],
    ids=["canonical-with-duplicates", "mixed", "odd-only", "nulls-only", "none"],
)
def test_the_filters_digest_is_uuid_digest_of_the_rows_it_passed_on(
    values: list[str | None], drop: bool
) -> None:
    for size in (7, 64, 1000):  # batches of one width and of mixed widths
        check = DigestingFilter(drop=drop)
        kept = [check(b).column("uuid") for b in _batches(values, size)]
        rows = sum(len(k) for k in kept)
        # dedupe keeps every null and the first copy of each value
        assert rows == (len(values) if not drop else values.count(None) + len(set(values) - {None}))
        assert check.uuid_sha256(rows) == uuid_digest(kept), size


def test_a_value_ending_in_nul_is_left_to_the_files() -> None:
    """numpy keeps bytes NUL-padded: a value ending in NUL cannot be told from one without."""
    check = DigestingFilter(drop=False)
    for batch in _batches([*CANONICAL, "tail-nul\x00"], 64):
        check(batch)
    assert check.uuid_sha256(len(CANONICAL) + 1) is None
    assert DigestingFilter(drop=True).uuid_sha256(0) == uuid_digest([])


def test_more_uuids_than_rows_is_left_to_the_files() -> None:
    check = DigestingFilter(drop=False)
    check(_batches(CANONICAL, 200)[0])
    assert check.uuid_sha256(len(CANONICAL) - 1) is None


_UUID = re.compile(rb'"uuid":"[0-9a-f-]{36}"')
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# what every 13th line's uuid becomes, by hour (hour 05 holds the one that ends in NUL)
_SHAPES = [
    rb'"uuid":"0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"',
    rb'"uuid":null',
    rb'"uuid":""',
    rb'"uuid":12345',
    rb'"uuid":"\u00fcn\u00efc\u00f8d\u00e9 \ud83d\ude00"',
    rb'"uuid":"line\nbreak"',
    rb'"no_uuid":"here"',
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OddUuids(ChangingDataset):
    """Duplicates (``duplicate_every``) and odd records (``odd_every``), and in every 13th line
    a uuid of another shape: upper case, null, empty, a number, unicode, a newline, absent."""

    nul_hour: datetime | None = None

    def iter_ndjson(self, hour: datetime, page: int, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        number = 0
        for chunk in ChangingDataset.iter_ndjson(self, hour, page, chunk_bytes):
            lines = chunk.split(b"\n")[:-1]
            for i, line in enumerate(lines):
                number += 1
                if number % 13 == 0:
                    shape = _SHAPES[(number // 13) % len(_SHAPES)]
                    if hour == self.nul_hour and number == 13:
                        shape = rb'"uuid":"ends in nul\u0000"'
                    lines[i] = _UUID.sub(lambda _, shape=shape: shape, line, count=1)
            yield b"\n".join(lines) + b"\n"

    def cache_key(self) -> str:
        return ChangingDataset.cache_key(self) + f"odd-uuids-{self.nul_hour}"


@pytest.mark.anyio
@pytest.mark.parametrize("dedupe", [False, True], ids=["count", "dedupe"])
async def test_the_commits_digest_is_the_one_verify_computes_from_the_files(
    tmp_path: Path, dedupe: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_back: list[int] = []  # commits that read the uuids back from their files

    def from_files(uuids: Iterable[pa.Array | pa.ChunkedArray]) -> str:
        read_back.append(1)
        return uuid_digest(uuids)

    monkeypatch.setattr(delta_sink, "uuid_digest", from_files)
    first, last = DAY1 + timedelta(hours=4), DAY1 + timedelta(hours=6)
    nul_hour = DAY1 + timedelta(hours=5)
    dataset = OddUuids(
        events_per_hour=400, pages_per_hour=3, duplicate_every=10, odd_every=7, nul_hour=nul_hour
    )
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        base = make_config(sim.base_url, tmp_path)
        config = replace(base, output=replace(base.output, format="delta", dedupe=dedupe))
        summary = await run(config, first, last, sink=local_delta_sink(config))
    assert summary.exit_code == 0, summary.failed
    table = tmp_path / "website"
    for hour in (first, nul_hour, last):
        meta = table / "_async_amp" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        record = json.loads((meta / "_manifest.json").read_bytes())
        files = [
            f
            for f in sorted((table / f"date={hour:%Y-%m-%d}").glob("*.parquet"))
            if pq.read_table(f, columns=["hour"])["hour"][0].as_py() == hour.hour
        ]
        assert len(files) == 3, files  # one per archive member, in the day's folder
        uuids = [pq.read_table(f, columns=["uuid"])["uuid"] for f in files]
        assert record["delta"]["files"] == len(files)
        assert record["delta"]["uuid_sha256"] == uuid_digest(uuids), hour
        values = [v for u in uuids for v in u.to_pylist()]
        odd = {v for v in values if v is None or not _CANONICAL.fullmatch(v)}
        assert {None, "", "ünïcødé 😀", "line\nbreak", ODD[2]} <= odd, odd  # 12345: null
        assert record["duplicate_uuids"] > 0 and (record["dropped_duplicates"] > 0) == dedupe
        assert (hour == nul_hour) == any(v and v.endswith("\x00") for v in odd)
    # only the hour holding a value that ends in NUL (counting mode) read its files back
    assert len(read_back) == (0 if dedupe else 1)
    report = await verify_table(local_delta_sink(config), "website", first, last)
    assert report.ok, report.problems
