"""What the plain-client references (``azure_upload.py``, ``s3_upload.py``) share: every file
of a folder uploaded by one coroutine per file, ``files_in_flight`` at once, timed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["MIB", "upload_folder"]

MIB = 1024 * 1024


async def upload_folder(
    src: Path,
    files_in_flight: int,
    upload: Callable[[Path, str], Awaitable[None]],
    *,
    before: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, object]:
    """``upload(path, name)`` for every file under ``src`` (``name``: its path from ``src``),
    ``files_in_flight`` at once; ``before`` runs first, outside the timing. The JSON line the
    benchmark reads: files, bytes, seconds."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    if before is not None:
        await before()
    pending = list(reversed(files))

    async def worker() -> None:
        while pending:
            path = pending.pop()
            await upload(path, path.relative_to(src).as_posix())

    began = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for _ in range(files_in_flight):
            tg.create_task(worker())
    seconds = time.monotonic() - began
    return {"files": len(files), "bytes": size, "seconds": round(seconds, 3)}
