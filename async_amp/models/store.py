"""Where the model tables live, and what has been built: beside the events, in the same store
(a local folder, an Azure container, an S3 or GCS bucket), written through it as the events
are.

``_models/<project>/`` under the output's root holds one folder per table and the build's own
state. It is outside the project's event folder (or Delta table), so no reader of the events
(``<project>/*/*/*.parquet``, the events' Delta log) ever sees a model file:

- Parquet (events as NDJSON, gzip or Parquet): ``<table>/day=YYYY-MM-DD/part-0.parquet``, one
  object per local day, put whole (a local file is written to a temporary name and renamed
  over the old one; an object store's put replaces the object at once): readers see the old
  day or the new one, never half of either; ``users/users.parquet`` likewise.
- Delta (events as Delta): one Delta table per model table at ``<table>/``, partitioned by
  ``day``; each day replaced by one overwrite commit of its partition (``predicate = "day =
  '...'"``), ``users`` by one overwrite of the table.
- ``_build/slim/<hour>.parquet``: each upload hour's slim rows (``slim.py``), and
  ``_build/state.json``: per upload hour its manifest's signature and the days it touches, per
  day the fingerprint of what it was built from and its status (put after each day).

On a remote store the slim rows a build needs are fetched into its temporary folder (those it
has just made are already there).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StorageError
from ..output.stores.base import Store
from ..output.stores.local import LocalSink
from ..readback.bounded import map_bounded
from .schema import Table, arrow_schema

__all__ = ["MODELS_FOLDER", "ModelState", "ModelStore", "fingerprint"]

MODELS_FOLDER = "_models"
_STATE = "_build/state.json"
_SLIM = "_build/slim"
_VERSION = 1
_LISTING = 1_000_000  # a table's day objects: a few thousand at most
_READERS = 16  # day objects read at once (a year's report reads 365 per table)


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(slots=True)
class ModelState:
    """What ``_state.json`` says: the settings built with, hours seen, days built."""

    settings: str = ""
    hours: dict[str, dict[str, Any]] = field(default_factory=dict)  # hour -> {sig, days}
    days: dict[str, dict[str, Any]] = field(default_factory=dict)  # day -> {fp, status}
    merges: str = ""  # the fingerprint of the merged ids ``users`` was folded with

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "settings": self.settings,
            "hours": dict(sorted(self.hours.items())),
            "days": dict(sorted(self.days.items())),
            "merges": self.merges,
        }


@dataclass(slots=True)
class ModelStore:
    """The ``_models/<project>`` folder of ``store``; ``locate`` (Delta only): where a path
    under the output's root lives as a Delta table (``delta.maintain.locator``)."""

    store: Store
    project: str
    locate: Callable[[str], Any] | None = None
    _days: dict[str, set[str]] = field(default_factory=dict)  # table -> days listed

    @property
    def delta(self) -> bool:
        return self.locate is not None

    @property
    def root(self) -> str:
        return f"{MODELS_FOLDER}/{self.project}"

    def describe(self) -> str:
        return f"{self.store.describe().rstrip('/')}/{self.root}"

    def _local(self, path: str) -> Path | None:
        """The file of ``path`` (under the models' root) when the store is a local folder."""
        if isinstance(self.store, LocalSink):
            return self.store.root / self.root / path
        return None

    # ------------------------------------------------------------------ state

    async def load_state(self) -> ModelState:
        data = await self.store.read_object(f"{self.root}/{_STATE}")
        if data is None:
            return ModelState()
        try:
            raw = json.loads(data)
        except ValueError:
            return ModelState()  # unreadable: everything is rebuilt
        if not isinstance(raw, dict) or raw.get("version") != _VERSION:
            return ModelState()
        return ModelState(
            raw.get("settings", ""),
            raw.get("hours", {}),
            raw.get("days", {}),
            raw.get("merges", ""),
        )

    async def save_state(self, state: ModelState) -> None:
        data = (json.dumps(state.to_json(), indent=1) + "\n").encode()
        await self.store.put_object(f"{self.root}/{_STATE}", data)

    # ------------------------------------------------------------------ slim rows

    async def put_slim(self, key: str, made: Path) -> None:
        """Store the slim rows ``made`` (a local file, kept) as upload hour ``key``'s."""
        data = await anyio.Path(made).read_bytes()
        await self.store.put_object(f"{self.root}/{_SLIM}/{key}.parquet", data)

    async def drop_slim(self, key: str) -> None:
        await self.store.delete_object(f"{self.root}/{_SLIM}/{key}.parquet")

    async def drop_all_slim(self) -> None:
        """Forget every hour's slim rows (the settings changed: each hour is read again)."""
        prefix = f"{self.root}/{_SLIM}"
        for name in await self.store.list_under(prefix, limit=_LISTING):
            await self.store.delete_object(f"{prefix}/{name}")

    async def slim_files(self, keys: list[str], cache: Path) -> list[Path]:
        """Local files of the slim rows of ``keys`` (those that have some): this build's copy in
        ``cache``, else in place in a local folder, else fetched into ``cache``."""
        found = []
        for key in keys:
            target = cache / f"{key}.parquet"
            local = self._local(f"{_SLIM}/{key}.parquet")
            if await anyio.Path(target).is_file():
                found.append(target)
            elif local is not None:
                if await anyio.Path(local).is_file():
                    found.append(local)
            elif data := await self.store.read_object(f"{self.root}/{_SLIM}/{key}.parquet"):
                await anyio.Path(target).write_bytes(data)
                found.append(target)
        return found

    # ------------------------------------------------------------------ tables

    async def list_days(self, models: tuple[Table, ...]) -> None:
        """List which days each of ``models`` holds, once (``has_day`` answers from it)."""
        for model in models:
            if self.delta:
                log = f"{self.root}/{model.name}/_delta_log"
                self._days[model.name] = (
                    {"*"} if await self.store.list_under(log, limit=1) else set()
                )
                continue
            names = await self.store.list_under(f"{self.root}/{model.name}", limit=_LISTING)
            if model.by_day:
                self._days[model.name] = {
                    n[4:14] for n in names if n.startswith("day=") and n.endswith("/part-0.parquet")
                }
            else:
                self._days[model.name] = {"*"} if f"{model.name}.parquet" in names else set()

    def has_day(self, model: Table, day: date) -> bool:
        """Whether ``model`` has ``day``'s partition (a whole table, a Delta table: whether it
        exists), as ``list_days`` found it and this build since wrote."""
        found = self._days.get(model.name, set())
        return "*" in found or day.isoformat() in found

    async def write_day(self, model: Table, day: date, rows: pa.Table) -> None:
        """Replace ``day``'s rows of ``model`` by ``rows``, at once."""
        rows = rows.cast(arrow_schema(model))
        if self.delta:
            await self._write_delta(model, rows, f"day = '{day.isoformat()}'")
        else:
            await self.store.put_object(self._day_path(model, day), _parquet_bytes(rows))
        self._days.setdefault(model.name, set()).add("*" if self.delta else day.isoformat())

    async def write_whole(self, model: Table, rows: pa.Table) -> None:
        """Replace all of ``model`` (a table not split by day) by ``rows``, at once."""
        rows = rows.cast(arrow_schema(model))
        if self.delta:
            await self._write_delta(model, rows, None)
        else:
            path = f"{self.root}/{model.name}/{model.name}.parquet"
            await self.store.put_object(path, _parquet_bytes(rows))
        self._days[model.name] = {"*"}

    def _day_path(self, model: Table, day: date) -> str:
        return f"{self.root}/{model.name}/day={day.isoformat()}/part-0.parquet"

    async def read_days(
        self, model: Table, first: date | None = None, last: date | None = None
    ) -> pa.Table:
        """The rows of a by-day ``model`` from ``first`` to ``last`` (default: every day), as
        Arrow; an empty table when none is built."""
        columns = [c.name for c in model.columns]
        if self.delta:
            assert self.locate is not None
            location = self.locate(f"{self.root}/{model.name}")
            found = await anyio.to_thread.run_sync(_read_delta, location, columns, first, last)
            return arrow_schema(model).empty_table() if found is None else found
        prefix = f"{self.root}/{model.name}"
        names = [
            name
            for name in await self.store.list_under(prefix, limit=_LISTING)
            if name.startswith("day=")
            and name.endswith("/part-0.parquet")
            and (first is None or date.fromisoformat(name[4:14]) >= first)
            and (last is None or date.fromisoformat(name[4:14]) <= last)
        ]

        async def read(name: str) -> pa.Table | None:
            data = await self.store.read_object(f"{prefix}/{name}")
            return None if data is None else pq.read_table(io.BytesIO(data), schema=schema)

        schema = arrow_schema(model)
        found = await map_bounded(names, read, _READERS)
        parts = [found[n] for n in names if n in found]  # in day order
        return pa.concat_tables(parts) if parts else schema.empty_table()

    async def _write_delta(self, model: Table, rows: pa.Table, predicate: str | None) -> None:
        assert self.locate is not None
        location = self.locate(f"{self.root}/{model.name}")
        local = self._local(model.name)
        if local is not None:
            await anyio.Path(local).mkdir(parents=True, exist_ok=True)
        partition = ["day"] if model.by_day else None
        await anyio.to_thread.run_sync(_write_delta, location, rows, partition, predicate)


def _parquet_bytes(rows: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(rows, out, compression="zstd")
    return out.getvalue()


def _write_delta(
    location: Any, rows: pa.Table, partition: list[str] | None, predicate: str | None
) -> None:
    from deltalake import write_deltalake  # noqa: PLC0415

    from ..output.delta.table import DELTA_ERRORS, delta_error_text  # noqa: PLC0415

    try:
        write_deltalake(
            location.uri,
            rows,
            mode="overwrite",
            partition_by=partition,
            predicate=predicate,
            storage_options=location.options(),
        )
    except DELTA_ERRORS as exc:
        msg = f"cannot write the model table {location.scrub(location.uri)}: "
        raise StorageError(msg + delta_error_text(exc, location)) from None


def _read_delta(
    location: Any, columns: list[str], first: date | None, last: date | None
) -> pa.Table | None:
    import pyarrow.compute as pc  # noqa: PLC0415

    from ..output.delta.base import open_table  # noqa: PLC0415
    from ..output.delta.table import DELTA_ERRORS, delta_error_text  # noqa: PLC0415

    try:
        table = open_table(location)
        if table is None:
            return None
        dataset = table.to_pyarrow_dataset()
    except DELTA_ERRORS as exc:
        msg = f"cannot read the model table {location.scrub(location.uri)}: "
        raise StorageError(msg + delta_error_text(exc, location)) from None
    wanted = None
    if first is not None:
        wanted = pc.field("day") >= pa.scalar(first, pa.date32())
    if last is not None:
        upper = pc.field("day") <= pa.scalar(last, pa.date32())
        wanted = upper if wanted is None else wanted & upper
    return dataset.to_table(columns=columns, filter=wanted)
