"""The model tables: sessions, users, pages and days in the project's time zone, built from
the extracted events and written beside them (see ``docs/models.md``).

``build_models`` brings a range of local days up to date (``build.py``): each upload hour is
read once into slim rows (``slim.py``), each day built from its hours' rows in DuckDB
(``tables.py``) and written to the store (``store.py``) as declared in ``schema.py``.
"""

from __future__ import annotations

from .build import DayBuilt, ModelRun, build_models, day_span
from .schema import TABLES
from .store import ModelStore

__all__ = ["TABLES", "DayBuilt", "ModelRun", "ModelStore", "build_models", "day_span"]
