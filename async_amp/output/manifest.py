"""The per-hour manifest: written last, and only when the hour is whole."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from ..hours import iso_hour

__all__ = [
    "LEGACY_DELTA_RECORD",
    "MANIFEST_NAME",
    "QUARANTINE_NAME",
    "DeadLetter",
    "DeltaFacts",
    "ExportedObject",
    "FileEntry",
    "Manifest",
    "SourceEntry",
    "TableFacts",
    "hour_folder",
]

MANIFEST_NAME = "_manifest.json"
LEGACY_DELTA_RECORD = "_delta_commit.json"
"""The side record a Delta hour kept beside its manifest before ``DeltaFacts`` (still read)."""
QUARANTINE_NAME = "_quarantine.ndjson"
"""An hour's dead letters, beside its data (``_``: table readers and globs skip it)."""


def hour_folder(project: str, hour: datetime) -> str:
    """``<project>/date=YYYY-MM-DD/hour=HH``: Hive-style partitions that query engines discover."""
    return f"{project}/date={hour:%Y-%m-%d}/hour={hour:%H}"


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    bytes: int
    events: int
    sha256: str
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bytes": self.bytes,
            "events": self.events,
            "sha256": self.sha256,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ExportedObject:
    """One file of Amplitude's cloud export an hour was read from, as the store listed it."""

    name: str
    size: int
    etag: str  # the ETag (S3), generation (GCS) or mtime-and-size (a local folder)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "etag": self.etag}


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """One archive member a converted hour was made from, as Amplitude sent it."""

    name: str
    lines: int
    bytes: int  # decompressed
    sha256: str  # of the decompressed bytes

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "lines": self.lines, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One line kept in the hour's quarantine file instead of becoming a row."""

    source: str  # the member, e.g. "187520/187520_2026-11-01_10#0.json.gz"
    line: int  # its line number in the member, from 1
    bytes: int  # without the newline
    sha256: str  # of those bytes
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "line": self.line,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "why": self.why,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DeadLetter:
        return cls(
            source=str(raw["source"]),
            line=int(raw["line"]),
            bytes=int(raw["bytes"]),
            sha256=str(raw["sha256"]),
            why=str(raw.get("why", "")),
        )


@dataclass(frozen=True, slots=True)
class TableFacts:
    """What a converted (Parquet, Delta) hour adds to its manifest."""

    format: str
    sources: tuple[SourceEntry, ...]
    duplicate_uuids: int = 0  # rows whose uuid an earlier row of the hour already had
    dropped_duplicates: int = 0  # of those, rows left out (``dedupe = true``)
    extra_rows: int = 0  # rows with a non-null ``_extra``
    dead_letters: tuple[DeadLetter, ...] = ()  # lines kept in the quarantine file instead

    def to_json(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "format": self.format,
            "sources": [s.to_json() for s in self.sources],
            "source_lines": sum(s.lines for s in self.sources),
            "duplicate_uuids": self.duplicate_uuids,
            "dropped_duplicates": self.dropped_duplicates,
            "extra_rows": self.extra_rows,
        }
        if self.dead_letters:
            facts["quarantined_lines"] = len(self.dead_letters)
            facts["dead_letters"] = [d.to_json() for d in self.dead_letters]
        return facts

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TableFacts | None:
        if "sources" not in raw:
            return None
        return cls(
            format=str(raw.get("format", "")),
            sources=tuple(
                SourceEntry(
                    name=s["name"], lines=int(s["lines"]), bytes=int(s["bytes"]), sha256=s["sha256"]
                )
                for s in raw["sources"]
            ),
            duplicate_uuids=int(raw.get("duplicate_uuids", 0)),
            dropped_duplicates=int(raw.get("dropped_duplicates", 0)),
            extra_rows=int(raw.get("extra_rows", 0)),
            dead_letters=tuple(DeadLetter.from_json(d) for d in raw.get("dead_letters", ())),
        )


def _count(raw: dict[str, Any], key: str) -> int:
    value = raw[key]
    if type(value) is not int or value < 0:
        msg = f"{key} must be a whole number, not {value!r}"
        raise ValueError(msg)
    return value


@dataclass(frozen=True, slots=True)
class DeltaFacts:
    """What an hour committed into a Delta table (the manifest's ``delta`` section): the table
    version whose commit holds the hour's rows, and the data files that commit added for them.
    """

    table_version: int
    rows: int  # the hour's rows in that version
    files: int  # data files the commit added holding them
    bytes: int  # their size
    uuid_sha256: str = ""  # over the hour's sorted uuids ("": a table without uuids)

    def to_json(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "table_version": self.table_version,
            "rows": self.rows,
            "files": self.files,
            "bytes": self.bytes,
        }
        if self.uuid_sha256:
            facts["uuid_sha256"] = self.uuid_sha256
        return facts

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DeltaFacts:
        """Validated: counts are whole numbers, the digest a sha256 (``ValueError`` if not)."""
        digest = raw.get("uuid_sha256", "")
        if not isinstance(digest, str) or (
            digest and (len(digest) != 64 or digest.strip("0123456789abcdef"))
        ):
            msg = f"uuid_sha256 must be a sha256 in hex, not {digest!r}"
            raise ValueError(msg)
        return cls(
            table_version=_count(raw, "table_version"),
            rows=_count(raw, "rows"),
            files=_count(raw, "files"),
            bytes=_count(raw, "bytes"),
            uuid_sha256=digest,
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    hour: datetime
    status: Literal["complete", "empty"]
    files: tuple[FileEntry, ...]
    attempts: int
    extracted_at: datetime
    run_id: str = ""
    warnings: tuple[str, ...] = ()
    table: TableFacts | None = None  # set when the hour was converted (Parquet, Delta)
    exported: tuple[ExportedObject, ...] = ()  # the cloud-export files it was read from
    project_id: str = ""  # Amplitude's project id, from the members' names ("": not known)
    received_bytes: int = 0  # the hour's members as Amplitude sent them (.json.gz bytes)
    ndjson_bytes: int = 0  # the same, decompressed: the NDJSON the hour is made of
    delta: DeltaFacts | None = None  # set when the hour was committed into a Delta table

    @property
    def events(self) -> int:
        """The hour's events: its files' (a Delta hour's rows in the table, and quarantine)."""
        return sum(f.events for f in self.files) + (self.delta.rows if self.delta else 0)

    @property
    def quarantined(self) -> int:
        """Lines of the hour kept in its quarantine file instead of becoming rows."""
        return sum(f.events for f in self.files if f.name == QUARANTINE_NAME)

    @property
    def size(self) -> int:
        """The bytes stored: what the hour's files hold (a Delta hour's: its table files)."""
        return sum(f.bytes for f in self.files) + (self.delta.bytes if self.delta else 0)

    @property
    def file_count(self) -> int:
        """The files stored: the hour's own (a Delta hour's: the table files it added)."""
        return len(self.files) + (self.delta.files if self.delta else 0)

    @property
    def side_record(self) -> FileEntry | None:
        """The Delta hour's side record (``_delta_commit.json``) a manifest written before
        ``DeltaFacts`` lists instead of a ``delta`` section; ``None`` for any other."""
        if self.delta is not None:
            return None
        return next((f for f in self.files if f.name == LEGACY_DELTA_RECORD), None)

    def with_side_record(self, body: bytes) -> Manifest:
        """This manifest as if written today: its side record's facts (``body``) typed in
        ``delta`` and ``table``, the record's entry gone. ``ValueError`` when ``body`` is not
        the record the manifest lists or not a record."""
        entry = self.side_record
        if entry is None or hashlib.sha256(body).hexdigest() != entry.sha256:
            msg = f"{LEGACY_DELTA_RECORD}: its sha256 differs from the manifest"
            raise ValueError(msg)
        try:
            raw = json.loads(body)
            table = TableFacts.from_json(raw)
            return replace(
                self,
                files=tuple(f for f in self.files if f is not entry),
                delta=DeltaFacts.from_json(raw),
                table=None if table is None else replace(table, format="delta"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"{LEGACY_DELTA_RECORD} is not a valid record: {exc}"
            raise ValueError(msg) from None

    def to_json(self) -> dict[str, Any]:
        return {
            "hour": iso_hour(self.hour),
            "status": self.status,
            "files": [f.to_json() for f in self.files],
            "events": self.events,
            "bytes": self.size,
            "received_bytes": self.received_bytes,
            "ndjson_bytes": self.ndjson_bytes,
            "attempts": self.attempts,
            "extracted_at": self.extracted_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "run_id": self.run_id,
            "warnings": list(self.warnings),
            **({"project_id": self.project_id} if self.project_id else {}),
            **(self.table.to_json() if self.table is not None else {}),
            **({"exported": [o.to_json() for o in self.exported]} if self.exported else {}),
            **({"delta": self.delta.to_json()} if self.delta is not None else {}),
        }

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes) -> Manifest:
        """Parse a manifest; raise ``ValueError`` when it is not one."""
        try:
            raw = json.loads(data)
            return cls(
                hour=datetime.fromisoformat(raw["hour"].replace("Z", "+00:00")),
                status=raw["status"],
                files=tuple(
                    FileEntry(
                        name=f["name"],
                        bytes=int(f["bytes"]),
                        events=int(f["events"]),
                        sha256=f["sha256"],
                        source=f.get("source", ""),
                    )
                    for f in raw["files"]
                ),
                attempts=int(raw["attempts"]),
                extracted_at=datetime.fromisoformat(raw["extracted_at"].replace("Z", "+00:00")),
                run_id=raw.get("run_id", ""),
                warnings=tuple(raw.get("warnings", ())),
                table=TableFacts.from_json(raw),
                exported=tuple(
                    ExportedObject(str(o["name"]), int(o["size"]), str(o["etag"]))
                    for o in raw.get("exported", ())
                ),
                project_id=str(raw.get("project_id", "")),
                received_bytes=int(raw.get("received_bytes", 0)),
                ndjson_bytes=int(raw.get("ndjson_bytes", 0)),
                delta=DeltaFacts.from_json(raw["delta"]) if "delta" in raw else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"not a valid manifest: {exc}"
            raise ValueError(msg) from None
