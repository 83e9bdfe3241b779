"""Where the model tables live, and what has been built: beside the events, in the same store.

``<dir>/_models/<project>/`` holds one folder per table and the build's own state. It is
outside the project's event folder (or Delta table), so no reader of the events (``<dir>/
<project>/*/*/*.parquet``, the events' Delta log) ever sees a model file:

- Parquet (events as NDJSON, gzip or Parquet): ``<table>/day=YYYY-MM-DD/part-0.parquet``, one
  file per local day, written to a temporary name and renamed over the old one (readers see
  the old day or the new one, never half of either); ``users/users.parquet`` likewise.
- Delta (events as Delta): one Delta table per model table at ``<table>/``, partitioned by
  ``day``; each day replaced by one overwrite commit of its partition (``predicate = "day =
  '...'"``), ``users`` by one overwrite of the table.
- ``_build/slim/<hour>.parquet``: each upload hour's slim rows (``slim.py``), and
  ``_build/state.json``:
  per upload hour its manifest's signature and the days it touches, per day the fingerprint
  of what it was built from and its status (written atomically after each day).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import Table, arrow_schema

__all__ = ["ModelState", "ModelStore", "fingerprint"]

_STATE = "_build/state.json"
_VERSION = 1


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(slots=True)
class ModelState:
    """What ``_state.json`` says: the settings built with, hours seen, days built."""

    settings: str = ""
    hours: dict[str, dict[str, Any]] = field(default_factory=dict)  # hour -> {sig, days}
    days: dict[str, dict[str, Any]] = field(default_factory=dict)  # day -> {fp, status}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "settings": self.settings,
            "hours": dict(sorted(self.hours.items())),
            "days": dict(sorted(self.days.items())),
        }


@dataclass(slots=True)
class ModelStore:
    """The ``_models/<project>`` folder; ``delta``: write Delta tables, not Parquet files."""

    root: Path
    delta: bool = False

    @property
    def slim_dir(self) -> Path:
        return self.root / "_build" / "slim"

    def slim_path(self, hour_key: str) -> Path:
        return self.slim_dir / f"{hour_key}.parquet"

    def table_dir(self, name: str) -> Path:
        return self.root / name

    # ------------------------------------------------------------------ state

    def load_state(self) -> ModelState:
        path = self.root / _STATE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return ModelState()
        except (OSError, ValueError):
            return ModelState()  # unreadable: everything is rebuilt
        if raw.get("version") != _VERSION:
            return ModelState()
        return ModelState(raw.get("settings", ""), raw.get("hours", {}), raw.get("days", {}))

    def save_state(self, state: ModelState) -> None:
        (self.root / _STATE).parent.mkdir(parents=True, exist_ok=True)
        _replace(self.root / _STATE, (json.dumps(state.to_json(), indent=1) + "\n").encode())

    # ------------------------------------------------------------------ tables

    def has_day(self, model: Table, day: date) -> bool:
        """Whether ``model`` has ``day``'s partition (a whole table: whether it exists)."""
        if not model.by_day and not self.delta:
            return (self.table_dir(model.name) / f"{model.name}.parquet").is_file()
        if self.delta:
            return (self.table_dir(model.name) / "_delta_log").is_dir()
        return self._day_file(model, day).is_file()

    def _day_file(self, model: Table, day: date) -> Path:
        return self.table_dir(model.name) / f"day={day.isoformat()}" / "part-0.parquet"

    def write_day(self, model: Table, day: date, rows: pa.Table) -> None:
        """Replace ``day``'s rows of ``model`` by ``rows``, at once."""
        rows = rows.cast(arrow_schema(model))
        if self.delta:
            self._write_delta(model, rows, f"day = '{day.isoformat()}'")
        else:
            _write_parquet(self._day_file(model, day), rows)

    def write_whole(self, model: Table, rows: pa.Table) -> None:
        """Replace all of ``model`` (a table not split by day) by ``rows``, at once."""
        rows = rows.cast(arrow_schema(model))
        if self.delta:
            self._write_delta(model, rows, None)
        else:
            _write_parquet(self.table_dir(model.name) / f"{model.name}.parquet", rows)

    def read_all(self, model: Table) -> pa.Table:
        """Every row of a by-day table (``users_daily``: small), as Arrow."""
        where = self.table_dir(model.name)
        if self.delta:
            from deltalake import DeltaTable  # noqa: PLC0415

            if not (where / "_delta_log").is_dir():
                return arrow_schema(model).empty_table()
            return DeltaTable(str(where)).to_pyarrow_table().select([c.name for c in model.columns])
        files = sorted(where.glob("day=*/part-0.parquet"))
        if not files:
            return arrow_schema(model).empty_table()
        return pa.concat_tables(pq.read_table(f, schema=arrow_schema(model)) for f in files)

    def _write_delta(self, model: Table, rows: pa.Table, predicate: str | None) -> None:
        from deltalake import write_deltalake  # noqa: PLC0415

        where = self.table_dir(model.name)
        where.mkdir(parents=True, exist_ok=True)
        write_deltalake(
            str(where),
            rows,
            mode="overwrite",
            partition_by=["day"] if model.by_day else None,
            predicate=predicate,
        )


def _write_parquet(target: Path, rows: pa.Table) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(rows, tmp, compression="zstd")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _replace(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
