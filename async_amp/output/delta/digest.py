"""The hour's ``uuid_sha256`` from the uuids its duplicate filter already holds.

``table.uuid_digest`` defines the digest (sha256 over the sorted uuids, one per line, null as
empty) and ``verify`` recomputes it from the table's files. The Delta commit used to compute it
the same way, reading the hour's uuid column back from the files just written: the strings,
the sort's indices and a sorted copy of the strings, all at once. The hour's
``DuplicateFilter`` already holds every uuid it passed on, canonical ones as 16 bytes each, so
``DigestingFilter`` gives the same digest from those: 16 bytes a row while sorting, and the
text of one slice at a time.

Canonical UUIDs (lowercase hex, hyphenated) sort as their 16 bytes do: each hex digit's
character sorts as its value. Other values (rare) are kept by the filter as bytes, which numpy
pads with NULs: exact unless a value ends in a NUL character, which the filter notes, and then
``uuid_sha256`` returns None for the caller to read the files as before.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..columnar.staging import DuplicateFilter

__all__ = ["DigestingFilter"]

_SLICE = 65_536
_HEX_CHARS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DIGIT_COLUMNS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_HYPHEN_COLUMNS = np.array([8, 13, 18, 23])


class DigestingFilter(DuplicateFilter):
    """The hour's duplicate filter, which also gives the hour's ``uuid_sha256``."""

    def __init__(self, *, drop: bool) -> None:
        super().__init__(drop=drop)
        self._exact = True

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        odd = self.odd_batches
        kept = super().__call__(batch)
        if self.odd_batches != odd and self._exact:  # non-canonical values were kept
            ends = pc.ends_with(batch.column("uuid"), pattern="\x00")
            self._exact = not pc.any(ends).as_py()
        return kept

    def absorb(self, other: DuplicateFilter) -> None:
        super().absorb(other)
        if isinstance(other, DigestingFilter):
            self._exact = self._exact and other._exact

    def uuid_sha256(self, rows: int) -> str | None:
        """``table.uuid_digest`` of the ``rows`` rows this filter passed on (those it holds no
        uuid for were null); None when the values it holds cannot give it exactly."""
        if not self._exact:
            return None
        digest = hashlib.sha256()
        if self.drop:  # the set of the uuids kept: each once, as its UTF-8 bytes
            values = self.kept()
            held = len(values)
            lines: Iterator[bytes] = iter(values)
            canonical: Iterator[bytes] = iter(())
        else:
            packed, other = self.held()
            held = len(packed) + len(other)
            lines = _slices_as_lines(other)
            canonical = _canonical_text(packed)
        nulls = rows - held
        if nulls < 0:  # not the rows it filtered: only the files can tell
            return None
        digest.update(b"\n" * nulls)  # "" sorts first
        first = next(lines, None)
        if first is None:  # the usual case: canonical uuids only, hashed a slice at a time
            for text in canonical:
                digest.update(text)
            return digest.hexdigest()
        for value in heapq.merge(_lines(canonical), _chain(first, lines)):
            digest.update(value + b"\n")
        return digest.hexdigest()


def _canonical_text(packed: np.ndarray) -> Iterator[bytes]:
    """Sorted 16-byte UUIDs as their text, one per line, a slice at a time."""
    for start in range(0, len(packed), _SLICE):
        raw = packed[start : start + _SLICE].view(np.uint8).reshape(-1, 16)
        nibbles = np.empty((len(raw), 32), dtype=np.uint8)
        nibbles[:, 0::2] = raw >> 4
        nibbles[:, 1::2] = raw & 15
        text = np.empty((len(raw), 37), dtype=np.uint8)
        text[:, _DIGIT_COLUMNS] = _HEX_CHARS[nibbles]
        text[:, _HYPHEN_COLUMNS] = ord("-")
        text[:, 36] = ord("\n")
        yield text.tobytes()


def _lines(texts: Iterator[bytes]) -> Iterator[bytes]:
    for text in texts:
        yield from text.splitlines()


def _slices_as_lines(values: np.ndarray) -> Iterator[bytes]:
    for start in range(0, len(values), _SLICE):
        yield from values[start : start + _SLICE].tolist()


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
