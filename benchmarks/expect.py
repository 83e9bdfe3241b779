"""``python -m benchmarks.expect JSON``: the totals a run over some hours must match, as the
simulator of the ``async_amp`` this process imports generates them, with every partition put
in the cache on the way (two processes).

``measure.generate`` runs it as a child with the revision under test first on ``PYTHONPATH``
(``common.child_env``), as it runs the simulator: a ``--reference`` run is checked against
what that revision's simulator serves, not this tree's (their generators can differ).
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .common import DataSpec, dumps, parse_hour


def _warm_part(spec: dict[str, Any], hour: str, page: int) -> tuple[int, int]:
    """Generate one partition into the cache; returns (gz bytes, NDJSON bytes)."""
    data = DataSpec.from_json(spec).dataset().gz(parse_hour(hour), page)
    return len(data), int.from_bytes(data[-4:], "little")  # gzip ISIZE: size mod 2**32


def expected(spec: dict[str, Any], hours: list[str]) -> dict[str, Any]:
    ds = DataSpec.from_json(spec).dataset()
    parts = [(h, p) for h in hours for p in ds.pages(parse_hour(h))]
    began = time.monotonic()
    with ProcessPoolExecutor(max_workers=2) as pool:
        sizes = list(
            pool.map(
                _warm_part,
                [spec] * len(parts),
                [h for h, _ in parts],
                [p for _, p in parts],
            )
        )
    return {
        "events": sum(ds.hour_event_count(parse_hour(h)) for h in hours),
        "ndjson_bytes": sum(n for _, n in sizes),
        "gz_bytes": sum(g for g, _ in sizes),
        "generation_s": time.monotonic() - began,
    }


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(dumps(expected(request["spec"], request["hours"])))
