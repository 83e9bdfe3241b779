"""What the ``azure`` and ``s3`` cases share: the throughput data extracted into a fresh object
store per run (``--sink azure`` / ``--sink s3``), taking turns with plain-client uploads of
the same NDJSON files into a fresh store of their own, judged by ``results.add_targets``.

A case says which store (``Store``: how to start one, how to point ``extract`` at it, how to
run a reference into it) and which references (``uploaders``); everything else is here.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import WORK_DIR, DataSpec, hours
from .measure import DAY, Bench, Expected, Server, generate, materialize_ndjson
from .results import CaseResult, Row, add_targets, find_row, join_notes

__all__ = ["Params", "Store", "run_store_case"]


@dataclass(frozen=True, slots=True)
class Params:
    """What ``--quick`` scales down (the day is the throughput case's)."""

    hours: int
    events: int
    repeats: int


@dataclass(frozen=True, slots=True)
class Store:
    """One kind of object store, as a case needs it."""

    sink: str  # the --sink value and the case's name: "azure", "s3"
    server: str  # whose CPU the notes report: "Azurite", "moto"
    start: Callable[[], AbstractContextManager[Any]]  # a fresh, empty store
    reference: Callable[[Bench, Path, Any, Expected, dict[str, Any]], dict[str, Any]]
    label: Callable[[str], str]  # a reference's row name, from its key in ``uploaders``
    note: Callable[[dict[str, Any]], str]  # how a reference uploads, for its row's note
    judged: str  # what the throughput target is measured against, in words
    missing: Callable[[], str | None] = lambda: None  # why the store cannot start, if so
    probe_env: Callable[[Any], dict[str, str]] | None = None  # check --sink first, with this


def run_store_case(
    bench: Bench, store: Store, title: str, p: Params, uploaders: dict[str, dict[str, Any]]
) -> CaseResult:
    spec = DataSpec(events_per_hour=p.events, pages_per_hour=3, variation=0.0)
    hour_list = hours(DAY, p.hours)
    ours_label = f"async-amp --sink {store.sink} c=4"
    result = CaseResult(
        store.sink,
        f"{title}: the throughput data ({p.hours} h x {p.events:,} events), concurrency 4",
        {"data": spec.to_json(), "hours": p.hours, "uploaders": uploaders},
    )
    missing = store.missing()
    if missing:
        result.error = missing
        note = f"not available: {missing}"
        result.rows.append(Row(ours_label, "async-amp", available=False, note=note))
        return result
    expected = generate(spec, hour_list)
    result.generation_s = expected.generation_s
    src = WORK_DIR / store.sink / "src"
    began = time.monotonic()
    materialize_ndjson(spec, hour_list, src)
    result.params["materialize_s"] = time.monotonic() - began
    server_spec = {"data": spec.to_json(), "zip_cache_bytes": 4 * 1024**3}
    ours_runs: list[dict[str, Any]] = []
    ref_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in uploaders}
    reason = ""
    try:
        with Server(server_spec, WORK_DIR / store.sink) as server:
            _, result.warm_s = server.warm([(h, h) for h in hour_list])
            # a fresh store for every run; the tools take turns
            for _ in range(p.repeats):
                with store.start() as handle:
                    if store.probe_env is not None and not reason:
                        env = store.probe_env(handle)
                        reason = bench.probe(["--sink", store.sink], env_extra=env)
                    if not reason:
                        ours_runs.append(
                            bench.extract(
                                store.sink,
                                "extract",
                                server,
                                first=hour_list[0],
                                last=hour_list[-1],
                                concurrency=4,
                                expected=expected,
                                **{store.sink: handle},
                            )
                        )
                for name, uploader in uploaders.items():
                    with store.start() as handle:
                        ref_runs[name].append(
                            store.reference(bench, src, handle, expected, uploader)
                        )
        result.server_cpu_total_s = server.total_cpu_s
    finally:
        shutil.rmtree(src, ignore_errors=True)
    if ours_runs:
        row = bench.row(ours_label, "async-amp", ours_runs)
        row.note = join_notes(f"{store.server} CPU {row.other_cpu_s:.1f} s", row.note)
    else:
        row = Row(ours_label, "async-amp", available=False, note=f"not available: {reason}")
    result.rows.append(row)
    refs: list[Row] = []
    for name, uploader in uploaders.items():
        ref = bench.row(store.label(name), "reference", ref_runs[name])
        server_cpu = f"{store.server} CPU {ref.other_cpu_s:.1f} s"
        ref.note = join_notes(f"{server_cpu}; {store.note(uploader)}", ref.note)
        refs.append(ref)
    result.rows += refs
    add_targets(result, store.sink, find_row(result.rows, ours_label), refs, store.judged)
    return result
