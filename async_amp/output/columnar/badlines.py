"""Lines that cannot become rows: what is wrong with one line, and the clear error naming the
first such line of a member once DuckDB has refused it (slow paths, only run after a failure).

Kept apart from ``convert.py`` so the converter holds the fast path alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Final

import duckdb

from ...errors import ArchiveError
from ...source.archive import LineCounter
from .query import MAX_EVENT_BYTES


def count_lines(path: Path, *, header: bool = False) -> int:
    """NDJSON lines but empty ones (a last line without a newline counts), read in bounded
    pieces; a spool's header line (``header``) is not one of them."""
    counter = LineCounter()
    with path.open("rb") as file:
        if header:
            file.readline()
        while piece := file.read(1 << 20):
            counter.add(piece)
    return counter.lines()


class BadLineError(ArchiveError):
    """A line of a member cannot become a row (the message names the member and the line)."""


class NeedsMemoryError(ArchiveError):
    """DuckDB ran out of its memory converting a member (long lines): try a ``large`` engine."""


def line_problem(line: bytes) -> str:
    """Why one line cannot become a row, or ``""`` when it can: it must be one JSON object
    in UTF-8 (no byte order mark), with no key twice at its top level, no longer than
    ``MAX_EVENT_BYTES``. A blank line is no event at all (``"it is empty"``)."""
    if not line.strip():
        return "it is empty" if line in (b"", b"\n") else "it is only white space"
    if len(line) > MAX_EVENT_BYTES:
        return f"it is longer than {MAX_EVENT_BYTES} bytes"
    if line.startswith(b"\xef\xbb\xbf"):
        return "it starts with a byte order mark"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 (byte {exc.start + 1})"
    repeats: list[bool] = []  # for each object, innermost first: whether a key repeats

    def pairs_hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        value = dict(pairs)
        repeats.append(len(value) < len(pairs))
        return value

    try:
        value = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        return f"it is not JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return "it is not JSON (nested too deeply)"
    if not isinstance(value, dict):
        return f"it is JSON but not an object (a {type(value).__name__})"
    if repeats[-1]:
        return "it has a key twice"
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return "it holds an unpaired surrogate (\\ud800-\\udfff)"
    return ""


def find_bad_line(
    path: Path, source: str, error: BaseException | None = None, *, header: bool = False
) -> ArchiveError:
    """The first line of ``path`` that is not a JSON object, as a clear error (slow: only
    called once DuckDB has refused the file). A spool's header line is not counted. When
    DuckDB ran out of memory, ``NeedsMemoryError`` (no line is at fault)."""
    if isinstance(error, duckdb.OutOfMemoryException) or "Out of Memory Error" in str(error):
        msg = f"member {source!r} could not be converted: {_first_line(error, header=header)}"
        return NeedsMemoryError(msg)
    with path.open("rb") as file:
        if header:
            file.readline()
        for number, line in enumerate(file, start=1):
            if line != b"\n" and (why := line_problem(line)):  # empty lines are no events
                msg = (
                    f"member {source!r} line {number}: {why}; Amplitude sends one JSON object "
                    "per line, so the archive is corrupt: re-extract the hour"
                )
                return BadLineError(msg)
    msg = f"member {source!r} could not be converted: {_first_line(error, header=header)}"
    return ArchiveError(msg)


_LINE_NUMBER: Final = re.compile(r"\bin line (\d+)\b")


def _first_line(error: BaseException | None, *, header: bool = False) -> str:
    """The first line of DuckDB's message; its line number not counting a spool's header."""
    if not error:
        return "unknown reason"
    text = str(error).strip().splitlines()[0]
    if header:
        text = _LINE_NUMBER.sub(lambda m: f"in line {max(1, int(m.group(1)) - 1)}", text)
    return text
