"""Real file systems that fail: a small tmpfs that fills up, a folder remounted read-only.

Mounting needs root (CI runs as root). Where the kernel refuses (a container without
CAP_SYS_ADMIN, a non-root developer), the tests that need it are skipped with the reason
``mount`` gave: they are the only way to meet a real ENOSPC or EROFS.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["MountedFs", "mounted_tmpfs"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


class MountedFs:
    """A tmpfs at ``path``: resize it, or remount it (or a folder in it) read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._binds: list[Path] = []

    def resize(self, size: int) -> None:
        done = _run("mount", "-o", f"remount,size={size}", str(self.path))
        assert done.returncode == 0, done.stderr

    def read_only(self, folder: Path, *, on: bool = True) -> None:
        """Make ``folder`` (inside the mount) read-only even for root: a read-only bind mount."""
        if on:
            for args in (
                ("mount", "--bind", str(folder), str(folder)),
                ("mount", "-o", "remount,bind,ro", str(folder)),
            ):
                done = _run(*args)
                assert done.returncode == 0, done.stderr
            self._binds.append(folder)
        else:
            done = _run("umount", str(folder))
            assert done.returncode == 0, done.stderr
            self._binds.remove(folder)

    def free(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def unmount_all(self) -> None:
        for folder in reversed(self._binds):
            _run("umount", "-l", str(folder))
        self._binds.clear()
        _run("umount", "-l", str(self.path))


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: int) -> Iterator[MountedFs]:
    """A tmpfs of ``size`` bytes at ``path`` for the block (skips when mounting is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    fs = MountedFs(path)
    try:
        yield fs
    finally:
        fs.unmount_all()
