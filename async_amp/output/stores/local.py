"""Local folder sink: temporary files outside the partitions, atomic renames, manifest last."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import aiofiles
import anyio

from ...config.values import is_plain_name
from ...errors import ConfigError, StorageError, os_storage_error
from ...hours import MemberName
from ..manifest import MANIFEST_NAME, FileEntry, Manifest, hour_folder
from .base import DATA_SUFFIXES
from .shared import pid_alive

__all__ = ["LocalSink"]

STAGING_DIR = ".async-amp-staging"
STALE_AFTER_S = 24 * 3600
STALE_SETUP_S = 600
READ_CHUNK = 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _LocalMember:
    __slots__ = ("_file", "_fsync", "_staging", "path")

    def __init__(self, path: Path, staging: _LocalStaging, *, fsync: bool) -> None:
        self.path = path
        self._fsync = fsync
        self._staging = staging
        self._file: BinaryIO | None = path.open("wb")

    def write(self, data: bytes) -> None:
        assert self._file is not None
        try:
            self._file.write(data)
        except OSError as exc:
            raise self._staging.error(exc) from exc

    def finish(self, entry: FileEntry) -> None:
        assert self._file is not None
        del entry
        try:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            raise self._staging.error(exc) from exc
        self._file = None

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # a full disk fails the close's flush too
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


class _LocalStaging:
    def __init__(self, sink: LocalSink, project: str, hour: datetime) -> None:
        self._sink = sink
        self._final = sink.root / hour_folder(project, hour)
        self._dir = sink.run_dir / f"{hour:%Y%m%dT%H}-{uuid.uuid4().hex[:8]}"
        self._files: list[str] = []

    def error(self, exc: OSError, doing: str = "writing") -> StorageError:
        """The sink-boundary translation: names the hour's folder, not the staging path."""
        return os_storage_error(exc, f"{doing} {self._final}", root_exists=self._sink.root.is_dir())

    def open_member(self, member: MemberName, file_name: str) -> _LocalMember:
        del member
        try:
            self._make_dir()
            self._files.append(file_name)
            return _LocalMember(self._dir / file_name, self, fsync=self._sink.fsync)
        except OSError as exc:
            raise self.error(exc) from exc

    async def commit(self, manifest: Manifest) -> None:
        try:
            await anyio.to_thread.run_sync(self._commit, manifest)
        except OSError as exc:
            raise self.error(exc, "committing") from exc

    def _make_dir(self) -> None:
        self._below_root(self._dir)

    def _below_root(self, path: Path) -> None:
        """``mkdir -p`` that never recreates a removed output folder: that would turn a lost
        output into a green run that silently lacks every hour before it."""
        current = self._sink.root
        if not current.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(current))
        for part in path.relative_to(current).parts:
            current = current / part
            current.mkdir(exist_ok=True)

    def _commit(self, manifest: Manifest) -> None:
        final = self._final
        self._make_dir()
        if not final.exists() and self._commit_whole(manifest):
            return
        self._below_root(final)
        marker = final / MANIFEST_NAME
        if marker.exists():  # re-extraction: the hour stops looking done before it changes
            marker.unlink(missing_ok=True)  # another run may be committing the same hour
            self._sync(final)
        keep = {f.name for f in manifest.files}
        for name in keep:
            (self._dir / name).replace(final / name)
        for old in final.iterdir():
            if old.name not in keep and old.name.endswith(DATA_SUFFIXES):
                old.unlink(missing_ok=True)
        self._sync(final)
        tmp = self._write_manifest(manifest)
        tmp.replace(marker)
        self._sync(final)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _commit_whole(self, manifest: Manifest) -> bool:
        """A first extraction: the staged folder, manifest included, is renamed into place in
        one step, so not even a kill mid-commit can leave files without their manifest.
        False when the folder appeared meanwhile (another run): the caller goes file by file.
        """
        self._write_manifest(manifest)
        self._below_root(self._final.parent)
        try:
            self._dir.rename(self._final)  # replaces at most an empty folder, atomically
        except OSError:
            (self._dir / MANIFEST_NAME).unlink(missing_ok=True)
            return False
        self._sync(self._final.parent)
        return True

    def _write_manifest(self, manifest: Manifest) -> Path:
        tmp = self._dir / MANIFEST_NAME
        with tmp.open("wb") as out:
            out.write(manifest.dumps())
            out.flush()
            if self._sink.fsync:
                os.fsync(out.fileno())
        return tmp

    def _sync(self, folder: Path) -> None:
        if self._sink.fsync:
            _fsync_dir(folder)

    async def discard(self) -> None:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(self._dir, ignore_errors=True))


class LocalSink:
    """Writes ``<root>/<project>/date=YYYY-MM-DD/hour=HH/`` on the local file system.

    Staging lives in ``<root>/.async-amp-staging/<run>/`` (same file system, so moving a file
    into place is an atomic rename); a run directory records its owner's pid and host, so a
    later run removes leftovers of dead runs but never those of a run still going.
    """

    def __init__(self, root: Path, *, run_id: str, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self.run_dir = root / STAGING_DIR / run_id
        self._run_id = run_id

    def describe(self) -> str:
        return str(self.root.resolve())

    async def prepare(self) -> None:
        await anyio.to_thread.run_sync(self._prepare)

    def _prepare(self) -> None:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for attempt in range(5):
            try:
                self._claim_run_dir(json.dumps(owner))
                break
            except FileNotFoundError:
                if attempt == 4:  # another run keeps removing the (empty) staging root
                    raise
            except OSError as exc:
                msg = (
                    f"output folder {self.root} is not writable ({exc.strerror or exc}): "
                    "pick another with --output or [output] dir"
                )
                raise ConfigError(msg) from None
        self._clean_leftovers()

    def _claim_run_dir(self, owner: str) -> None:
        """Create the run's staging folder with its owner file already inside.

        The folder is built under a dot-name and renamed into place, so another run's clean-up
        never sees it without an owner (it would take it for a dead run's leftovers).
        """
        staging = self.root / STAGING_DIR
        staging.mkdir(parents=True, exist_ok=True)
        building = staging / f".{self.run_dir.name}.{os.getpid()}"
        building.mkdir(exist_ok=True)
        (building / "owner.json").write_text(owner)
        building.rename(self.run_dir)

    def _clean_leftovers(self) -> None:
        host = socket.gethostname()
        now = time.time()
        for run in (self.root / STAGING_DIR).iterdir():
            if run == self.run_dir:
                continue
            try:
                if run.name.startswith("."):  # a run being set up: only stale ones are ours
                    dead = old = now - run.stat().st_mtime > STALE_SETUP_S
                else:
                    owner = json.loads((run / "owner.json").read_text())
                    dead = owner["host"] == host and not pid_alive(int(owner["pid"]))
                    old = now - float(owner["started"]) > STALE_AFTER_S
            except FileNotFoundError:
                continue  # gone already (its run finished)
            except (OSError, ValueError, KeyError, TypeError):
                # no readable owner: a run being set up, or a crash long ago; go by its age
                try:
                    dead = old = now - run.stat().st_mtime > STALE_SETUP_S
                except OSError:
                    continue
            if dead or old:
                shutil.rmtree(run, ignore_errors=True)

    async def completed_hours(self, project: str, hours: Iterable[datetime]) -> set[datetime]:
        def scan() -> set[datetime]:
            self._no_file_in_the_way(self.root / project)
            return {
                h for h in hours if (self.root / hour_folder(project, h) / MANIFEST_NAME).is_file()
            }

        return await anyio.to_thread.run_sync(scan)

    def _no_file_in_the_way(self, folder: Path) -> None:
        """A file where the project's folder (or one above it) must be stops the run before
        its first request: every hour would fail to commit, after downloading."""
        current = self.root
        for part in folder.relative_to(self.root).parts:
            current = current / part
            if not current.exists():
                return
            if not current.is_dir():
                msg = (
                    f"{current.absolute()} is a file, where the project's folder must be: "
                    "move it away (or pick another --output) and run again"
                )
                raise ConfigError(msg)

    async def read_manifest(self, project: str, hour: datetime) -> Manifest | None:
        path = self.root / hour_folder(project, hour) / MANIFEST_NAME
        try:
            data = await anyio.Path(path).read_bytes()
        except FileNotFoundError:
            return None
        return Manifest.loads(data)

    def file_path(self, project: str, hour: datetime, name: str) -> Path:
        return self.root / hour_folder(project, hour) / name

    async def list_files(self, project: str, hour: datetime) -> list[str]:
        folder = self.root / hour_folder(project, hour)

        def scan() -> list[str]:
            try:
                with os.scandir(folder) as entries:
                    return sorted(
                        e.name for e in entries if e.is_file() and e.name != MANIFEST_NAME
                    )
            except (FileNotFoundError, NotADirectoryError):
                return []
            except OSError as exc:
                msg = f"cannot list {folder}: {exc.strerror or exc}"
                raise StorageError(msg) from exc

        return await anyio.to_thread.run_sync(scan)

    async def iter_file(self, project: str, hour: datetime, name: str) -> AsyncIterator[bytes]:
        if not is_plain_name(name):
            msg = f"refusing to read {name!r}: not a plain file name"
            raise StorageError(msg)
        path = self.file_path(project, hour, name)
        try:
            async with aiofiles.open(path, "rb") as file:
                while chunk := await file.read(READ_CHUNK):
                    yield chunk
        except OSError as exc:
            msg = f"cannot read {path}: {exc.strerror or exc}"
            raise StorageError(msg) from exc

    def stage(self, project: str, hour: datetime) -> _LocalStaging:
        return _LocalStaging(self, project, hour)

    # --- single objects (the Store protocol) ---------------------------------------------------

    @property
    def spool_dir(self) -> Path:
        return self.run_dir  # cleaned with the run's other leftovers

    @property
    def elsewhere(self) -> str:
        return "--output DIR (or [output] dir)"

    def _object(self, path: str) -> Path:
        if not all(is_plain_name(part) for part in path.split("/")):
            msg = f"refusing the path {path!r}: not plain names joined by /"
            raise StorageError(msg)
        return self.root / path

    async def read_object(self, path: str) -> bytes | None:
        file = self._object(path)
        try:
            return await anyio.Path(file).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            msg = f"cannot read {file}: {exc.strerror or exc}"
            raise StorageError(msg) from exc

    async def put_object(self, path: str, data: bytes) -> None:
        file = self._object(path)

        def put() -> None:
            self._no_file_in_the_way(file.parent)
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                with tmp.open("wb") as out:
                    out.write(data)
                    out.flush()
                    if self.fsync:
                        os.fsync(out.fileno())
                tmp.replace(file)
            finally:
                tmp.unlink(missing_ok=True)
            if self.fsync:
                _fsync_dir(file.parent)

        try:
            await anyio.to_thread.run_sync(put)
        except OSError as exc:
            msg = f"cannot write {file}: {exc.strerror or exc}"
            raise StorageError(msg) from exc

    async def delete_object(self, path: str) -> None:
        file = self._object(path)
        try:
            await anyio.to_thread.run_sync(lambda: file.unlink(missing_ok=True))
        except OSError as exc:
            msg = f"cannot delete {file}: {exc.strerror or exc}"
            raise StorageError(msg) from exc

    async def list_under(self, prefix: str, *, limit: int) -> list[str]:
        top = self._object(prefix)

        def walk() -> list[str]:
            found: list[str] = []
            for folder, dirs, files in os.walk(top):
                dirs.sort()
                base = Path(folder).relative_to(top).as_posix()
                for name in sorted(files):
                    found.append(name if base == "." else f"{base}/{name}")
                    if len(found) >= limit:
                        return found
            return found

        try:
            return await anyio.to_thread.run_sync(walk)
        except OSError as exc:
            msg = f"cannot list {top}: {exc.strerror or exc}"
            raise StorageError(msg) from exc

    async def aclose(self) -> None:
        def remove() -> None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.root / STAGING_DIR).rmdir()

        await anyio.to_thread.run_sync(remove)


if TYPE_CHECKING:
    from .base import Store

    _conforms: type[Store] = LocalSink  # mypy proves LocalSink implements the Store protocol
