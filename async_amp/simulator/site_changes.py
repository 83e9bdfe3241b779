"""A simulated project whose site changes over time: what a lake's monitoring has to notice.

``ChangingDataset`` is a ``Dataset`` whose bytes differ from the plain one in three ways, each
off unless asked for: from ``property_from`` on, a third of the events carry a new event
property (a new A/B test); from ``field_from`` on, a tenth carry a new top-level field the
Export API schema does not document (it lands in ``_extra`` in Parquet output); and every
``duplicate_every``-th event of a partition repeats the one before it, uuid and all (Amplitude
exports a retried upload twice). Event counts per partition are unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from .dataset import Dataset, utc_hour

__all__ = ["ChangingDataset"]

_PROPS = b'"event_properties":{'


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangingDataset(Dataset):
    property_from: datetime | None = None
    property_name: str = "experiment_variant"
    field_from: datetime | None = None
    field_name: str = "app_build"
    duplicate_every: int = 0

    def iter_ndjson(self, hour: datetime, page: int, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        hour = utc_hour(hour)
        chunks = Dataset.iter_ndjson(self, hour, page, chunk_bytes)
        prop = self.property_from is not None and hour >= utc_hour(self.property_from)
        extra = self.field_from is not None and hour >= utc_hour(self.field_from)
        if not (prop or extra or self.duplicate_every):
            yield from chunks
            return
        new_prop = b'"%s":"%s",' % (self.property_name.encode(), b"B")
        new_field = b'{"%s":"2026.%d",' % (self.field_name.encode(), hour.day)
        number, previous = 0, b""
        for chunk in chunks:
            out = []
            for raw in chunk.split(b"\n")[:-1]:
                number += 1
                line = raw
                if self.duplicate_every and number % self.duplicate_every == 0 and previous:
                    out.append(previous)
                    continue
                if prop and number % 3 == 0:
                    line = line.replace(_PROPS, _PROPS + new_prop, 1)
                if extra and number % 10 == 0:
                    line = new_field + line[1:]
                out.append(line)
                previous = line
            yield b"\n".join(out) + b"\n"

    def cache_key(self) -> str:
        changes = (
            self.property_from and utc_hour(self.property_from).isoformat(),
            self.property_name,
            self.field_from and utc_hour(self.field_from).isoformat(),
            self.field_name,
            self.duplicate_every,
        )
        text = Dataset.cache_key(self) + repr(changes)
        return hashlib.sha256(text.encode()).hexdigest()[:20]
