"""The baseline: the Amplitude export script most people write first.

One day-sized request at a time (``start=YYYYMMDDT00&end=YYYYMMDDT23``, clipped to the range),
the whole response read into memory, ``zipfile.ZipFile(BytesIO(...))``, each member gunzipped
whole with the stdlib ``gzip``, written to a file, lines counted. Standard library only, so it
measures the approach, not a dependency. A 404 (no data that day) is skipped.

    AMP_API_KEY=... AMP_SECRET_KEY=... python benchmarks/baseline.py \\
        --url http://127.0.0.1:PORT --start 2025-06-03T00 --end 2025-06-03T23 --output out

Prints one JSON line: requests, files, events, bytes written, seconds.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path


def day_windows(first: datetime, last: datetime) -> list[tuple[datetime, datetime]]:
    """One window per calendar day, ``T00``..``T23``, clipped to ``[first, last]``."""
    windows = []
    day = first.replace(hour=0)
    while day <= last:
        windows.append((max(first, day), min(last, day + timedelta(hours=23))))
        day += timedelta(days=1)
    return windows


def main() -> int:
    parser = argparse.ArgumentParser(description="naive Amplitude export (the baseline)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--start", required=True, help="YYYY-MM-DDTHH")
    parser.add_argument("--end", required=True, help="YYYY-MM-DDTHH, inclusive")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()

    first = datetime.strptime(args.start, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    last = datetime.strptime(args.end, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    token = base64.b64encode(
        f"{os.environ['AMP_API_KEY']}:{os.environ['AMP_SECRET_KEY']}".encode()
    ).decode()
    began = time.monotonic()
    requests = files = events = written = 0
    for start, end in day_windows(first, last):
        url = f"{args.url}/api/2/export?start={start:%Y%m%dT%H}&end={end:%Y%m%dT%H}"
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        requests += 1
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                continue
            raise
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            for name in archive.namelist():
                data = gzip.decompress(archive.read(name))
                path = args.output / name.removesuffix(".gz")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                files += 1
                events += data.count(b"\n")
                written += len(data)
    result = {
        "requests": requests,
        "files": files,
        "events": events,
        "bytes_written": written,
        "seconds": round(time.monotonic() - began, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
