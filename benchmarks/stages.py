"""What each per-byte step of an extraction costs on this machine, one thread, nothing else running.

    .venv/bin/python -m benchmarks.stages

Takes one ~36 MB partition of the throughput day (from the ``bench-data`` cache, generated if
missing), cuts it the way the extractor sees it (gzip fed 64 KiB at a time, so ~450 KB of
NDJSON per piece) and times each step over those pieces, best of five: gunzip (ISA-L), sha256,
md5 (what the Azure sink adds per block), counting newlines, writing to a file (page cache), and
raw inflate of a deflated ZIP member (zlib, as stream-unzip does it). The seconds per GB of
NDJSON add up to a floor for the CPU an extraction needs, to set against the profile.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

from isal import isal_zlib

from .common import DATA_DIR, DataSpec

PIECE = 64 * 1024


def main() -> int:
    dataset = DataSpec(events_per_hour=60_000, pages_per_hour=3, variation=0.0).dataset()
    gz = dataset.gz(datetime(2025, 6, 3, 5, tzinfo=UTC), 0)
    decoder = isal_zlib.decompressobj(wbits=31)
    pieces = [decoder.decompress(gz[i : i + PIECE]) for i in range(0, len(gz), PIECE)]
    pieces = [p for p in pieces if p]
    size = sum(map(len, pieces))
    raw = zlib.compressobj(1, zlib.DEFLATED, -15)
    deflated = raw.compress(gz) + raw.flush()
    scratch = DATA_DIR / "stages.tmp"
    DATA_DIR.mkdir(exist_ok=True)

    def gunzip() -> None:
        d = isal_zlib.decompressobj(wbits=31)
        for i in range(0, len(gz), PIECE):
            d.decompress(gz[i : i + PIECE])

    def digest(name: str) -> Callable[[], None]:
        def run() -> None:
            h = hashlib.new(name)
            for p in pieces:
                h.update(p)

        return run

    def count() -> None:
        for p in pieces:
            p.count(b"\n")

    def write() -> None:
        with scratch.open("wb") as f:
            for p in pieces:
                f.write(p)
        scratch.unlink()

    def inflate() -> None:
        d = zlib.decompressobj(-15)
        for i in range(0, len(deflated), PIECE):
            d.decompress(deflated[i : i + PIECE])

    steps: list[tuple[str, Callable[[], None]]] = [
        ("gunzip (isal, 64 KiB in)", gunzip),
        ("sha256", digest("sha256")),
        ("md5 (Azure sink blocks)", digest("md5")),
        ("bytes.count(b'\\n')", count),
        ("file write (page cache)", write),
        ("inflate ZIP member (zlib)", inflate),
    ]
    print(f"{size / 1e6:.1f} MB of NDJSON in {len(pieces)} pieces, CPU {os.cpu_count()}")
    print(f"{'step':28} {'GB/s':>6} {'s per GB':>9}")
    for name, fn in steps:
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - began)
        print(f"{name:28} {size / 1e9 / best:6.2f} {best / size * 1e9:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
