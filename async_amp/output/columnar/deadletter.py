"""Dead letters: the lines of a member that cannot become a row, kept verbatim beside the hour.

A line that is not one JSON object (not JSON, not an object, not UTF-8, a byte order mark, a
raw NUL, a key twice, longer than ``MAX_EVENT_BYTES``) would otherwise fail its hour on every
attempt, forever. When DuckDB refuses a spool, ``sift`` copies the lines that can become rows
to a fresh spool (converted as usual) and every other line, byte for byte, to the hour's
quarantine file (``QUARANTINE_NAME``: one line each, in member and line order), recording
for each its member, line number, size and sha256. Empty lines are no events and are dropped
(the archive does not count them either); a line of spaces alone is a dead letter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

from ...hours import MemberName, iso_hour
from ...logs import log
from ..manifest import QUARANTINE_NAME, DeadLetter, FileEntry
from ..stores.base import HourStaging
from .badlines import line_problem
from .query import MAX_EVENT_BYTES, blank_header

__all__ = ["QUARANTINE_NAME", "Quarantine", "put_quarantine", "sift", "warn_quarantined"]

_PIECE: Final = 1 << 20


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class Quarantine:
    """An hour's dead letters: the verbatim lines in a local file (made in ``folder`` on
    first use), and what each was."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self._folder = folder
        self._dir: Path | None = None
        self.letters: list[DeadLetter] = []

    @property
    def path(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="async-amp-", dir=self._folder))
        return self._dir / QUARANTINE_NAME

    def open(self) -> BinaryIO:
        return self.path.open("ab")

    def remove(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def put_quarantine(
    quarantine: Quarantine, staging: HourStaging, hour: datetime
) -> FileEntry | None:
    """The hour's dead letters staged through ``staging`` as ``QUARANTINE_NAME`` (blocking),
    its manifest entry (its events: the lines it holds); ``None`` when there are none."""
    if not quarantine.letters:
        return None
    out = staging.open_member(MemberName("", hour, 0, QUARANTINE_NAME), QUARANTINE_NAME)
    digest = hashlib.sha256()
    size = 0
    with quarantine.path.open("rb") as src:
        while piece := src.read(_PIECE):
            digest.update(piece)
            size += len(piece)
            out.write(piece)
    entry = FileEntry(
        name=QUARANTINE_NAME,
        bytes=size,
        events=len(quarantine.letters),
        sha256=digest.hexdigest(),
    )
    out.finish(entry)
    return entry


def warn_quarantined(hour: datetime, letters: list[DeadLetter]) -> None:
    """The warning line of an hour committed with dead letters (none when there are none)."""
    if not letters:
        return
    first = ", ".join(f"{d.source} line {d.line}" for d in letters[:3])
    more = f" and {len(letters) - 3} more" if len(letters) > 3 else ""
    log.warning(
        "hour.quarantined",
        hour=iso_hour(hour),
        lines=len(letters),
        detail=(
            f"hour {iso_hour(hour)[:13]}: {len(letters)} line(s) that cannot become rows kept "
            f"verbatim in {QUARANTINE_NAME} ({first}{more}: {letters[0].why}); the hour is "
            "complete without them"
        ),
    )


def sift(path: Path, clean: Path, dead: Writable, source: str) -> tuple[list[DeadLetter], int]:
    """Copy the spool ``path``'s lines (after its header) that can become rows into ``clean``,
    a new spool, and write every other line, with a newline, to ``dead``; returns the dead
    letters and the number of lines kept. Reads at most ``MAX_EVENT_BYTES`` of a line at once."""
    letters: list[DeadLetter] = []
    kept = number = 0
    with path.open("rb") as src, clean.open("wb") as out:
        src.readline()  # the header
        out.write(blank_header())
        while line := src.readline(MAX_EVENT_BYTES + 1):
            number += 1
            if line == b"\n":
                continue  # an empty line is no event
            if not line.endswith(b"\n") and len(line) > MAX_EVENT_BYTES:
                letters.append(_too_long(src, line, dead, source, number))
                continue
            body = line.removesuffix(b"\n")
            why = line_problem(body)
            if why:
                dead.write(body + b"\n")
                letters.append(
                    DeadLetter(source, number, len(body), hashlib.sha256(body).hexdigest(), why)
                )
                continue
            out.write(body + b"\n")
            kept += 1
    return letters, kept


def _too_long(src: Any, start: bytes, dead: Writable, source: str, number: int) -> DeadLetter:
    """The rest of a line too long to convert, streamed to ``dead`` in pieces."""
    digest = hashlib.sha256()
    size = 0
    piece = start
    while piece:
        body = piece.removesuffix(b"\n")
        digest.update(body)
        size += len(body)
        dead.write(body)
        if piece.endswith(b"\n"):
            break
        piece = src.readline(_PIECE)
    dead.write(b"\n")
    why = f"it is longer than {MAX_EVENT_BYTES} bytes (max_event_bytes)"
    return DeadLetter(source, number, size, digest.hexdigest(), why)
