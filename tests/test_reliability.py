"""Reliability: a green run means every available hour is in storage, whole, exactly once.

- Soak: a 14-day backfill with a fault on a random 20 % of first attempts, at concurrency 8.
- Crash and resume: SIGKILL mid-member, between members, just before the central directory
  (all members staged, no manifest yet), repeatedly during downloads, and the states a kill
  inside a commit leaves; every rerun finishes only what is missing and ends identical.
- Two runs at once on the same range and output: no corrupt or duplicated file, both complete.

Storage goes through the ``store`` fixture (a sink factory plus a reader of what is visible and
what is staged), so an Azure variant is one more ``params`` entry and one more Store class.
Each test records its figures (faults injected, hours recovered, kills survived) with
``record()``: printed (``pytest -s``) and appended as JSON lines to the file named by
``RELIABILITY_FIGURES`` when set; docs/reliability.md quotes the last run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

from async_amp.hours import hour_range, parse_member_name
from async_amp.output.manifest import MANIFEST_NAME, FileEntry, Manifest, hour_folder
from async_amp.output.stores.base import Sink
from async_amp.output.stores.local import STAGING_DIR, LocalSink
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import Fault, FaultPlan, Latency, alternating_style, run_simulator
from async_amp.simulator.zipbuild import ZipMember, build_zip
from async_amp.source import export_api as client

from .e2e import spawn as spawn_cli
from .helpers import DAY1, KEY, PATIENT_S, SECRET, make_config, run, small_dataset
from .test_soak import SOAK_READ_TIMEOUT_S, SOAK_STALL_S

PROJECT = "website"
_UUID = re.compile(rb'"uuid":"([0-9a-f-]{36})"')
_HOUR_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")


# --------------------------------------------------------------------------- figures


def record(test: str, **figures: Any) -> None:
    """Keep a test's measured figures: printed, and appended to $RELIABILITY_FIGURES."""
    line = json.dumps({"test": test, **figures}, sort_keys=True, default=str)
    print(f"RELIABILITY {line}")
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(line + "\n")


# --------------------------------------------------------------------------- storage under test


class Store(Protocol):
    """One kind of storage, seen the way the tests need it.

    ``sink()`` builds the sink a run writes through; ``env()`` selects the same storage for a
    CLI subprocess; ``visible()`` is what a reader of the output sees (partition files and
    manifests); ``staged()`` is what runs hold in their staging area (invisible to readers).
    """

    kind: str

    def sink(self, run_id: str) -> Sink: ...

    def env(self) -> dict[str, str]: ...

    def visible(self) -> dict[datetime, dict[str, bytes]]: ...

    def staged(self) -> dict[str, int]: ...

    def leftovers(self) -> list[str]: ...


@dataclass
class LocalStore:
    root: Path
    kind: str = "local"

    def sink(self, run_id: str) -> Sink:
        return LocalSink(self.root, run_id=run_id, fsync=False)

    def env(self) -> dict[str, str]:
        return {
            "ASYNC_AMP_OUTPUT_SINK": "local",
            "ASYNC_AMP_OUTPUT_DIR": str(self.root),
            "ASYNC_AMP_OUTPUT_FSYNC": "false",
        }

    def visible(self) -> dict[datetime, dict[str, bytes]]:
        out: dict[datetime, dict[str, bytes]] = {}
        base = self.root / PROJECT
        if not base.is_dir():
            return out
        for folder in sorted(base.glob("date=*/hour=*")):
            m = _HOUR_DIR.search(folder.as_posix())
            assert m, f"unexpected folder {folder}"
            hour = datetime.fromisoformat(f"{m[1]}T{m[2]}:00+00:00")
            files = {}
            for path in folder.iterdir():
                with contextlib.suppress(FileNotFoundError):  # replaced while we looked
                    files[path.name] = path.read_bytes()
            out[hour] = files
        return out

    def staged(self) -> dict[str, int]:
        area = self.root / STAGING_DIR
        if not area.is_dir():
            return {}
        sizes = {}
        # os.walk, not rglob: the run removes staging folders while we look, and rglob raises
        # when a folder it is about to list is gone (os.walk skips it)
        for folder, _, names in os.walk(area):
            for name in names:
                path = Path(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if name != "owner.json":
                        sizes[path.relative_to(area).as_posix()] = path.stat().st_size
        return sizes

    def leftovers(self) -> list[str]:
        """Anything at all in the staging area (owner files included)."""
        area = self.root / STAGING_DIR
        return sorted(p.relative_to(self.root).as_posix() for p in area.rglob("*")) + (
            [STAGING_DIR] if area.exists() else []
        )


@pytest.fixture(params=["local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The storage under test. An Azure variant: add "azure" here (with the Azurite fixtures)
    and return an AzureStore whose sink() builds an AzureSink on the test's container, env()
    sets ASYNC_AMP_OUTPUT_SINK=azure plus the connection string and container, visible()
    lists committed blobs and staged() reports uncommitted blocks."""
    assert request.param == "local"
    return LocalStore(tmp_path / "out")


def completed(store: Store) -> set[datetime]:
    """Hours with a manifest: the ones a reader may treat as done."""
    return {h for h, files in store.visible().items() if MANIFEST_NAME in files}


def staged_by_hour(store: Store, hour: datetime) -> dict[str, int]:
    """Staged files of one hour, by file name (staging folders are named YYYYMMDDTHH-...)."""
    prefix = f"{hour:%Y%m%dT%H}-"
    return {
        path.rsplit("/", 1)[1]: size
        for path, size in store.staged().items()
        if path.split("/")[-2].startswith(prefix) and not path.endswith(MANIFEST_NAME)
    }


# --------------------------------------------------------------------------- checks


def out_name(dataset: Dataset, hour: datetime, page: int) -> str:
    return dataset.member_name(hour, page).split("/", 1)[1].removesuffix(".gz")


def check_hour(files: Mapping[str, bytes], dataset: Dataset, hour: datetime) -> list[bytes]:
    """One visible hour is whole: a manifest, exactly its files, each byte-identical."""
    assert MANIFEST_NAME in files, f"{hour}: no manifest"
    manifest = json.loads(files[MANIFEST_NAME])
    pages = dataset.pages(hour)
    assert manifest["status"] == ("complete" if pages else "empty"), hour
    assert manifest["hour"] == f"{hour:%Y-%m-%dT%H}:00:00Z"
    want = {out_name(dataset, hour, p): dataset.ndjson(hour, p) for p in pages}
    data = {n: b for n, b in files.items() if n != MANIFEST_NAME}
    assert set(data) == set(want), f"{hour}: stray or missing files {set(data) ^ set(want)}"
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(want), f"{hour}: manifest lists {sorted(listed)}"
    for name, body in want.items():
        assert data[name] == body, f"{hour} {name} differs"
        assert listed[name]["sha256"] == hashlib.sha256(body).hexdigest()
        assert listed[name]["bytes"] == len(body)
        assert listed[name]["events"] == body.count(b"\n")
    return list(want.values())


def assert_complete(store: Store, dataset: Dataset, first: datetime, last: datetime) -> Counter:
    """Every hour of the range is whole, nothing else is visible, and no event is stored twice."""
    visible = store.visible()
    hours = list(hour_range(first, last))
    missing, extra = set(hours) - set(visible), set(visible) - set(hours)
    assert not missing and not extra, f"missing {sorted(missing)}, extra {sorted(extra)}"
    uuids: Counter[bytes] = Counter()
    figures: Counter[str] = Counter()
    for hour in hours:
        bodies = check_hour(visible[hour], dataset, hour)
        figures["files"] += len(bodies)
        figures["empty_hours"] += not bodies
        for body in bodies:
            found = _UUID.findall(body)
            assert len(found) == body.count(b"\n")
            uuids.update(found)
    twice = [u for u, n in uuids.items() if n > 1]
    assert not twice, f"{len(twice)} events stored twice, e.g. {twice[:3]}"
    figures["events"] = len(uuids)
    return figures


def assert_whole_where_visible(
    store: Store, dataset: Dataset, *, mid_commit: set[datetime] | None = None
) -> set[datetime]:
    """After a kill: every hour with a manifest is whole, and nothing partial is visible.

    An hour without a manifest shows no data, unless the kill came inside its commit (between
    the renames of its files and the manifest's): then it may show some of its files, each
    whole. Those hours are added to ``mid_commit`` (None: not allowed at all).
    """
    done = set()
    for hour, files in store.visible().items():
        if MANIFEST_NAME in files:
            check_hour(files, dataset, hour)
            done.add(hour)
        elif files:
            assert mid_commit is not None, f"{hour}: files without a manifest: {sorted(files)}"
            want = {
                out_name(dataset, hour, p): dataset.ndjson(hour, p) for p in dataset.pages(hour)
            }
            for name, body in files.items():
                assert body == want.get(name), f"{hour} {name}: a partial or foreign file"
            mid_commit.add(hour)
    return done


# --------------------------------------------------------------------------- soak


SOAK_DAYS = 14
SOAK_KINDS = tuple(f for f in Fault if f is not Fault.HTTP_400)


@pytest.mark.anyio
async def test_soak_14_day_backfill_with_random_faults_ends_identical_and_once(
    store: Store,
) -> None:
    """336 hours, a fault on a random (seeded) 20 % of first attempts, concurrency 8.

    Every fault kind is in the draw except HTTP_400 ("over 4 GB"), which by design is not
    retried for a single hour (it cannot get smaller) and is covered by test_extract.py.
    STALL is in: the stalled body must be given up after read_timeout_s and re-asked.
    MISSING_PARTITION is detected because expected_pages_per_hour is set.
    """
    dataset = small_dataset(events_per_hour=30, quiet_fraction=0.03, seed=14)
    first = DAY1
    last = DAY1 + timedelta(days=SOAK_DAYS) - timedelta(hours=1)
    faults = FaultPlan.random(0.2, seed=2026, kinds=SOAK_KINDS)
    dataset.gz(first, 0)  # builds the generator's model once, before the short timeouts apply
    started = time.monotonic()
    async with run_simulator(
        dataset,
        api_key=KEY,
        secret_key=SECRET,
        faults=faults,
        retry_after_s=1,
        stall_s=SOAK_STALL_S,
    ) as sim:
        config = make_config(
            sim.base_url,
            store_root(store),
            concurrency=8,
            expected_pages_per_hour=3,
            read_timeout_s=SOAK_READ_TIMEOUT_S,
            max_attempts=5,
        )
        summary = await run(config, first, last, sink=store.sink("soak"))
        sim_requests = sim.requests
        injected = Counter(r.fault.value for r in sim_requests if r.fault is not None)
        requests = sim.request_count()
        peak = sim.max_in_flight_seen
    seconds = time.monotonic() - started
    assert summary.exit_code == 0, summary.failed
    assert peak <= 8
    figures = assert_complete(store, dataset, first, last)
    hours = SOAK_DAYS * 24
    recovered = [h for h, r in summary.results.items() if r.attempts > 1]
    faulted_hours = {r.fault_hour or r.start for r in sim_requests if r.fault is not None}
    # Every faulted hour was recovered by a retry (none slipped through on a bad first answer),
    # except RESET_BEFORE_HEADERS, which aiohttp itself re-sends once before we see it.
    resets = {r.start for r in sim_requests if r.fault is Fault.RESET_BEFORE_HEADERS}
    assert faulted_hours - resets <= set(recovered)
    assert sum(injected.values()) >= 0.15 * hours
    assert len(injected) >= 12, injected  # nearly every kind drawn at least once
    assert not store.visible().keys() - set(hour_range(first, last))
    assert store.leftovers() == []
    unplanned = set(recovered) - faulted_hours  # e.g. a first answer slower than the timeout
    record(
        "soak",
        hours=hours,
        concurrency=8,
        faults_injected=sum(injected.values()),
        fault_kinds=dict(sorted(injected.items())),
        hours_recovered=len(recovered),
        hours_retried_without_a_planned_fault=len(unplanned),
        requests=requests,
        retries=summary.retries,
        throttled=summary.throttled,
        files=figures["files"],
        empty_hours=figures["empty_hours"],
        events=figures["events"],
        duplicates=0,
        seconds=round(seconds, 1),
    )


def store_root(store: Store) -> Path:
    """The local output folder (configs need one even when the sink is built by the store)."""
    return getattr(store, "root", Path("unused"))


# --------------------------------------------------------------------------- CLI subprocesses


def cli_env(base_url: str, store: Store, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AZURE_", "AMP_"))
    }
    env.update(
        AMP_API_KEY=KEY,
        AMP_SECRET_KEY=SECRET,
        ASYNC_AMP_AMPLITUDE_BASE_URL=base_url,
        ASYNC_AMP_EXTRACT_BACKOFF_BASE_S="0.05",
        ASYNC_AMP_EXTRACT_BACKOFF_MAX_S="0.2",
        # a held hour stays held while the test waits for the rest of the run: never timed out
        ASYNC_AMP_EXTRACT_READ_TIMEOUT_S=str(PATIENT_S),
        ASYNC_AMP_NOW="2026-11-26T12:00:00Z",
        ASYNC_AMP_EXTRACT_WINDOW_HOURS="1",
    )
    env.update(store.env())
    env.update(extra)
    return env


def spawn(
    env: Mapping[str, str], cwd: Path, first: datetime, last: datetime, concurrency: int
) -> subprocess.Popen[str]:
    return spawn_cli(env, cwd, first, last, "--concurrency", str(concurrency), "--quiet")


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 30.0,
    detail: Callable[[], object] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} {detail()}")
        time.sleep(0.01)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err[-3000:]}"
    return out


# --------------------------------------------------------------------------- a gated server


MID_MEMBER, BETWEEN_MEMBERS, BEFORE_DIRECTORY = "mid-member", "between-members", "before-dir"


class GatedExportServer:
    """Serves a dataset like the Export API, holding chosen hours' first answer at a point.

    The point is a byte offset of the ZIP: half-way through member #1's data (MID_MEMBER),
    right after member #0 (BETWEEN_MEMBERS) or right before the central directory, when every
    member has been sent and the client is one step from committing (BEFORE_DIRECTORY).
    The handler sets ``paused[hour]`` there and waits for ``release`` (or a dead client).
    """

    def __init__(self, dataset: Dataset, gates: Mapping[datetime, str]) -> None:
        self.dataset = dataset
        self.gates = dict(gates)
        self.paused = {h: threading.Event() for h in gates}
        self.release = threading.Event()
        self.requests: list[datetime] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _GatedHandler)
        self._server.daemon_threads = True
        self._server.gated = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"

    def __enter__(self) -> GatedExportServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def answer(self, hour: datetime) -> tuple[bytes, int | None, str | None]:
        """The body for a one-hour request, where to pause (if anywhere) and the gate."""
        with self._lock:
            self.requests.append(hour)
            first = self.requests.count(hour) == 1
        ds = self.dataset
        gate = self.gates.get(hour) if first else None
        if gate is not None:
            return (*_gated_body(ds, hour, gate), gate)
        style = alternating_style(hour)
        members = [
            ZipMember(ds.member_name(hour, p), ds.gz(hour, p), style.method, style.data_descriptor)
            for p in ds.pages(hour)
        ]
        return (build_zip(members) if members else b""), None, None


# The client hands the body to the decoder in chunks of READ_SIZE (coalesced), so a pause
# only shows in staging if it falls on a multiple of READ_SIZE: member #0's gzip header gets
# a comment (FCOMMENT, ignored by every gzip reader) that long, and its members are stored so
# that padding shifts the pause point byte for byte. The NDJSON written is unchanged.
COALESCE = getattr(client, "READ_SIZE", 1)


def _gated_body(ds: Dataset, hour: datetime, gate: str) -> tuple[bytes, int]:
    with_dd = gate != MID_MEMBER

    def build(pad: int) -> tuple[bytes, int]:
        members = [
            ZipMember(
                ds.member_name(hour, p),
                _pad_gzip(ds.gz(hour, p), pad if i == 0 else 0),
                "stored",
                with_dd,
            )
            for i, p in enumerate(ds.pages(hour))
        ]
        body = build_zip(members)
        return body, _gate_offset(body, gate, with_dd=with_dd)

    body, offset = build(0)
    if offset % COALESCE:
        body, offset = build(-offset % COALESCE)
    assert offset % COALESCE == 0
    return body, offset


def _pad_gzip(gz: bytes, size: int) -> bytes:
    """The same gzip stream with a ``size``-byte header comment (FCOMMENT) added."""
    if size == 0:
        return gz
    assert gz[:3] == b"\x1f\x8b\x08" and gz[3] == 0, "a plain 10-byte gzip header"
    comment = (b"padding " * (size // 8 + 1))[: size - 1] + b"\x00"
    return gz[:3] + b"\x10" + gz[4:10] + comment + gz[10:]


def _gate_offset(body: bytes, gate: str, *, with_dd: bool) -> int:
    """Where to pause. A member with a data descriptor is only known to be finished once the
    reader has seen the 4-byte signature after it; stream-unzip reads 12 bytes past the
    32-bit descriptor to tell it from a 64-bit one, so the pause comes that much later."""
    past_descriptor = 12 if with_dd else 0
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
        if gate == BEFORE_DIRECTORY:
            return zf.start_dir + past_descriptor
        second = infos[1]
        if gate == BETWEEN_MEMBERS:
            return second.header_offset + past_descriptor
        name_len, extra_len = struct.unpack_from("<HH", body, second.header_offset + 26)
        return second.header_offset + 30 + name_len + extra_len + second.compress_size // 2


class _GatedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def do_GET(self) -> None:
        gated: GatedExportServer = self.server.gated  # type: ignore[attr-defined]
        query = parse_qs(urlsplit(self.path).query)
        start = datetime.strptime(query["start"][0], "%Y%m%dT%H").replace(tzinfo=UTC)
        end = datetime.strptime(query["end"][0], "%Y%m%dT%H").replace(tzinfo=UTC)
        assert start == end, "the pipeline asks one hour per request"
        body, pause_at, gate = gated.answer(start)
        if not body:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if pause_at is not None and gate is not None:
                self.wfile.write(body[:pause_at])
                self.wfile.flush()
                gated.paused[start].set()
                gated.release.wait(60)
                body = body[pause_at:]
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


# --------------------------------------------------------------------------- crash and resume


def test_sigkill_mid_member_between_members_and_before_commit_then_rerun_completes(
    store: Store, tmp_path: Path
) -> None:
    """Three hours are held at three precise points while the rest of the range completes;
    SIGKILL; nothing of the held hours is visible, finished hours are whole; the rerun asks
    only for the held hours, removes the dead run's staging and ends byte-identical."""
    dataset = small_dataset(events_per_hour=90)
    first, last = DAY1, DAY1 + timedelta(hours=11)
    held = {
        DAY1 + timedelta(hours=1): MID_MEMBER,
        DAY1 + timedelta(hours=4): BETWEEN_MEMBERS,
        DAY1 + timedelta(hours=10): BEFORE_DIRECTORY,
    }
    expected_staged = {
        MID_MEMBER: lambda h: {out_name(dataset, h, 0): len(dataset.ndjson(h, 0))},
        BETWEEN_MEMBERS: lambda h: {out_name(dataset, h, 0): len(dataset.ndjson(h, 0))},
        BEFORE_DIRECTORY: lambda h: {
            out_name(dataset, h, p): len(dataset.ndjson(h, p)) for p in dataset.pages(h)
        },
    }
    with GatedExportServer(dataset, held) as server:
        env = cli_env(server.base_url, store)
        proc = spawn(env, tmp_path, first, last, concurrency=4)
        others = set(hour_range(first, last)) - set(held)
        for hour, gate in held.items():
            wait_for(server.paused[hour].is_set, f"{gate} pause of {hour}")
            want = expected_staged[gate](hour)

            def reached(hour: datetime = hour, gate: str = gate, want: dict = want) -> bool:
                staged = staged_by_hour(store, hour)
                if gate == MID_MEMBER:  # page 0 finished, page 1 started (size unknown)
                    return staged.keys() == {*want, out_name(dataset, hour, 1)} and all(
                        staged[n] == s for n, s in want.items()
                    )
                return staged == want

            wait_for(
                reached,
                f"{gate} state of {hour} in staging",
                detail=lambda hour=hour: staged_by_hour(store, hour),
            )
        wait_for(lambda: len(completed(store)) >= len(others), "the other hours to commit")
        kill(proc)

        done = assert_whole_where_visible(store, dataset)
        assert done == others
        assert store.staged(), "the dead run's staging is still there (not visible)"

        before = len(server.requests)
        rerun = spawn(env, tmp_path, first, last, concurrency=4)
        finish(rerun)
        asked = server.requests[before:]
    assert sorted(asked) == sorted(held), "finished hours must not be requested again"
    figures = assert_complete(store, dataset, first, last)
    assert store.leftovers() == []
    record(
        "kill_at_points",
        kill_points=sorted(held.values()),
        kills=1,
        hours=len(others) + len(held),
        hours_done_before_kill=len(done),
        rerun_requests=len(asked),
        files=figures["files"],
    )


def test_repeated_sigkill_during_downloads_every_rerun_resumes(
    store: Store, tmp_path: Path
) -> None:
    """Kill -9 five times while bodies are streaming (slow bodies, partial staged files), each
    time a few more hours into the range; each rerun skips what was finished before its kill."""
    dataset = small_dataset(events_per_hour=60)
    first, last = DAY1, DAY1 + timedelta(hours=47)
    thresholds = [6, 14, 22, 30, 38]
    latency = Latency(mb_per_s_per_conn=0.08)
    kills = 0
    in_flight_at_kills = []
    mid_commit: set[datetime] = set()
    done_before: set[datetime] = set()
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        env = cli_env(sim.base_url, store)
        for threshold in thresholds:
            sim.reset_log()
            proc = spawn(env, tmp_path, first, last, concurrency=4)

            def streaming(threshold: int = threshold) -> bool:
                return len(completed(store)) >= threshold and streaming_now() >= 2

            def streaming_now() -> int:  # this run's requests whose bodies are still going
                return sum(1 for r in sim.requests if r.status == 200 and not r.complete)

            wait_for(streaming, f"{threshold} hours done and bodies mid-stream")
            in_flight_at_kills.append(streaming_now())
            kill(proc)
            kills += 1
            asked = {r.start for r in sim.requests if r.start is not None}
            assert not asked & done_before, "an hour finished before a kill was asked again"
            done_before = assert_whole_where_visible(store, dataset, mid_commit=mid_commit)
            assert len(done_before) >= threshold
        sim.reset_log()
        finish(spawn(env, tmp_path, first, last, concurrency=4))
        asked = {r.start for r in sim.requests if r.start is not None}
    assert not asked & done_before
    assert len(asked) == 48 - len(done_before)
    figures = assert_complete(store, dataset, first, last)
    assert store.leftovers() == []
    record(
        "kill_during_downloads",
        kills=kills,
        hours=48,
        bodies_streaming_at_each_kill=in_flight_at_kills,
        kills_that_landed_inside_a_commit=len(mid_commit),
        hours_left_for_last_run=len(asked),
        files=figures["files"],
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _dead_run(root: Path, name: str) -> Path:
    """A staging folder as a SIGKILLed run leaves it: owner.json naming a dead process."""
    run_dir = root / STAGING_DIR / name
    run_dir.mkdir(parents=True)
    owner = {"pid": _dead_pid(), "host": socket.gethostname(), "started": time.time() - 60}
    (run_dir / "owner.json").write_text(json.dumps(owner))
    return run_dir


@pytest.mark.anyio
async def test_states_a_kill_inside_a_commit_leaves_are_repaired_by_the_rerun(
    tmp_path: Path,
) -> None:
    """A kill inside ``_commit`` is microseconds wide, so its states are built directly:

    A: data files already renamed into the partition, manifest still in staging (the kill
       came between the renames and the manifest rename).
    B: re-extraction (--force) killed after the old manifest was removed and one new file
       was renamed in: old and new files mixed, no manifest.
    C: a dead run's half-written member and manifest temp file in staging only.
    None of them has a manifest, so the rerun (no --force) fetches every hour, replaces A's and
    B's files, drops B's stale fourth page, removes the dead run's staging, and ends
    byte-identical.
    """
    out = tmp_path / "out"
    dataset = small_dataset()
    first, last = DAY1, DAY1 + timedelta(hours=5)
    a, b, c = DAY1 + timedelta(hours=1), DAY1 + timedelta(hours=2), DAY1 + timedelta(hours=3)
    dead = _dead_run(out, "20261126T000000Z-dead01")
    # A
    folder = out / hour_folder(PROJECT, a)
    folder.mkdir(parents=True)
    for p in dataset.pages(a):
        (folder / out_name(dataset, a, p)).write_bytes(dataset.ndjson(a, p))
    staging_a = dead / f"{a:%Y%m%dT%H}-aaaaaaaa"
    staging_a.mkdir()
    (staging_a / MANIFEST_NAME).write_text('{"hour": "2026-11-01T01:00:00Z", "stat')
    # B: an older extraction had 4 pages; the new one has 3 and got one file in.
    folder = out / hour_folder(PROJECT, b)
    folder.mkdir(parents=True)
    for p in range(4):
        (folder / f"187520_2026-11-01_2#{p}.json").write_bytes(b'{"old": true}\n')
    (folder / out_name(dataset, b, 0)).write_bytes(dataset.ndjson(b, 0))
    # C
    staging_c = dead / f"{c:%Y%m%dT%H}-cccccccc"
    staging_c.mkdir()
    (staging_c / out_name(dataset, c, 0)).write_bytes(dataset.ndjson(c, 0)[:1000])

    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        summary = await run(make_config(sim.base_url, out), first, last)
        asked = sorted(r.start for r in sim.requests if r.start is not None)
    assert summary.exit_code == 0
    assert asked == list(hour_range(first, last))  # nothing had a manifest: all fetched
    assert_complete(LocalStore(out), dataset, first, last)
    assert not dead.exists()
    assert not (out / STAGING_DIR).exists()


# --------------------------------------------------------------------------- concurrent runs


class Watcher:
    """Reads the output over and over while runs write it, checking what a reader can see:
    every data file is whole and byte-identical (files appear only by atomic rename), and every
    manifest parses and lists only files that are there."""

    def __init__(self, store: Store, dataset: Dataset) -> None:
        self.store = store
        self.want: dict[tuple[datetime, str], bytes] = {}
        self.dataset = dataset
        self.scans = 0
        self.files_seen = 0
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _expected(self, hour: datetime, name: str) -> bytes | None:
        key = (hour, name)
        if key not in self.want:
            pages = {out_name(self.dataset, hour, p): p for p in self.dataset.pages(hour)}
            page = pages.get(name)
            self.want[key] = self.dataset.ndjson(hour, page) if page is not None else b""
        return self.want[key] or None

    def _loop(self) -> None:
        while not self._stop.is_set():
            for hour, files in self.store.visible().items():
                for name, body in files.items():
                    if name == MANIFEST_NAME:
                        try:
                            manifest = json.loads(body)
                        except ValueError:
                            self.problems.append(f"{hour}: torn manifest")
                            continue
                        listed = {f["name"] for f in manifest["files"]}
                        if len(listed) != len(manifest["files"]):
                            self.problems.append(f"{hour}: a file listed twice")
                        continue
                    self.files_seen += 1
                    if body != self._expected(hour, name):
                        self.problems.append(f"{hour} {name}: {len(body)} bytes, not whole")
            self.scans += 1
            time.sleep(0.002)  # pacing, so the writers get the CPU too


def test_two_runs_at_once_on_the_same_output_both_complete_nothing_torn(
    store: Store, tmp_path: Path
) -> None:
    dataset = small_dataset(events_per_hour=60)
    first, last = DAY1, DAY1 + timedelta(hours=23)
    # Headers come 0.4 s after each request: both runs plan before either commits anything,
    # so most hours are fetched and committed by both, often at nearly the same moment.
    latency = Latency(fixed_s=0.4, mb_per_s_per_conn=0.5)
    with (
        BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim,
        Watcher(store, dataset) as watcher,
    ):
        env = cli_env(sim.base_url, store)
        runs = [spawn(env, tmp_path, first, last, concurrency=6) for _ in range(2)]
        outputs = [r.communicate(timeout=120) for r in runs]
        requests = sim.request_count()
    codes = [r.returncode for r in runs]
    assert codes == [0, 0], [err[-2000:] for _, err in outputs]
    assert not watcher.problems, watcher.problems[:5]
    figures = assert_complete(store, dataset, first, last)
    assert store.leftovers() == []
    assert watcher.scans > 3
    assert requests > 24, "the runs did not overlap at all"
    record(
        "two_runs_at_once",
        hours=24,
        runs=2,
        requests=requests,
        hours_fetched_and_committed_by_both=requests - 24,
        reader_scans=watcher.scans,
        files_read_while_writing=watcher.files_seen,
        torn_or_partial_seen=len(watcher.problems),
        files=figures["files"],
    )


def test_a_run_started_midway_through_another_skips_what_it_finished(
    store: Store, tmp_path: Path
) -> None:
    dataset = small_dataset(events_per_hour=60)
    first, last = DAY1, DAY1 + timedelta(hours=23)
    latency = Latency(mb_per_s_per_conn=0.1)
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        env = cli_env(sim.base_url, store)
        one = spawn(env, tmp_path, first, last, concurrency=2)
        wait_for(lambda: len(completed(store)) >= 6, "six hours from the first run")
        done_before_two = assert_whole_where_visible(store, dataset, mid_commit=set())
        two = spawn(env, tmp_path, first, last, concurrency=2)
        finish(two)
        finish(one)
        asked_twice = [h for h in done_before_two if sim.request_count(hour=h) != 1]
    assert len(done_before_two) >= 6
    assert not asked_twice, "the second run asked for hours the first had finished"
    assert_complete(store, dataset, first, last)
    assert store.leftovers() == []


@pytest.mark.anyio
async def test_a_starting_runs_staging_is_not_removed_by_another_run(tmp_path: Path) -> None:
    """A run's staging folder exists a moment before its owner.json has content (``mkdir`` then
    ``write_text``, which creates the file empty first). Another run's clean-up that looks at
    that moment reads no pid and removes the live run's folder; the live run then recreates it
    without an owner.json, and any third run deletes its staged files mid-run. This is the
    state that moment leaves; a fresh run must leave it alone."""
    out = tmp_path / "out"
    starting = out / STAGING_DIR / "20261126T120000Z-live01"
    starting.mkdir(parents=True)
    (starting / "owner.json").write_bytes(b"")  # created, not yet written
    sink = LocalSink(out, run_id="20261126T120001Z-other1", fsync=False)
    await sink.prepare()
    try:
        assert starting.exists(), "a live run's staging folder was removed"
    finally:
        await sink.aclose()


async def _stage_hour(sink: LocalSink, dataset: Dataset, hour: datetime) -> tuple[Any, Manifest]:
    """Stage every page of ``hour`` through ``sink`` as a run would; the manifest to commit."""
    staging = sink.stage(PROJECT, hour)
    entries = []
    for page in dataset.pages(hour):
        name = out_name(dataset, hour, page)
        body = dataset.ndjson(hour, page)
        member = staging.open_member(parse_member_name(dataset.member_name(hour, page)), name)
        member.write(body)
        entry = FileEntry(name, len(body), body.count(b"\n"), hashlib.sha256(body).hexdigest())
        member.finish(entry)
        entries.append(entry)
    manifest = Manifest(hour, "complete", tuple(entries), 1, datetime.now(UTC), sink._run_id)
    return staging, manifest


@pytest.mark.anyio
async def test_two_commits_of_the_same_hour_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs on the same range can commit the same hour at the same moment. The local
    commit does ``if marker.exists(): marker.unlink()``: when both see the old manifest before
    either removes it, the second ``unlink`` raises FileNotFoundError, the commit becomes a
    StorageError and that run fails the hour (exit 1) although the output is fine. The
    interleaving is forced: both threads are held after ``exists()``, and the first to unlink
    waits until the other has tried too."""
    out = tmp_path / "out"
    dataset = small_dataset()
    hour = DAY1 + timedelta(hours=3)
    sinks = [LocalSink(out, run_id=f"20261126T12000{n}Z-run{n}", fsync=False) for n in range(3)]
    for sink in sinks:
        await sink.prepare()
    staging, manifest = await _stage_hour(sinks[0], dataset, hour)
    await staging.commit(manifest)  # an earlier, complete extraction
    pending = [await _stage_hour(sink, dataset, hour) for sink in sinks[1:]]

    marker = out / hour_folder(PROJECT, hour) / MANIFEST_NAME
    both_looked = threading.Barrier(2)
    first_unlinked, other_tried = threading.Event(), threading.Event()
    turns = iter(range(2))
    exists, unlink = Path.exists, Path.unlink

    def exists_then_wait(self: Path) -> bool:
        seen = exists(self)
        if self == marker:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_looked.wait(timeout=2)
        return seen

    def unlink_in_turn(self: Path, missing_ok: bool = False) -> None:
        if self != marker:
            return unlink(self, missing_ok=missing_ok)
        if next(turns, 1) == 0:  # first: remove it, then let the other try before going on
            try:
                return unlink(self, missing_ok=missing_ok)
            finally:
                first_unlinked.set()
                other_tried.wait(timeout=2)
        first_unlinked.wait(timeout=2)
        try:
            return unlink(self, missing_ok=missing_ok)
        finally:
            other_tried.set()

    monkeypatch.setattr(Path, "exists", exists_then_wait)
    monkeypatch.setattr(Path, "unlink", unlink_in_turn)
    errors: list[Exception] = []

    async def commit(staging: Any, manifest: Manifest) -> None:
        try:
            await staging.commit(manifest)
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for staging, manifest in pending:
            tg.start_soon(commit, staging, manifest)
    monkeypatch.undo()
    for sink in sinks:
        await sink.aclose()
    assert not errors, f"a concurrent commit failed: {errors[0]!r}"
    check_hour(LocalStore(out).visible()[hour], dataset, hour)


@pytest.mark.anyio
async def test_runs_finishing_while_another_starts_do_not_fail_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finishing run removes its folder, then the shared staging root if it is empty
    (``aclose``). With two runs X and Y finishing while Z starts: X and Y remove their
    folders, X removes the empty root; Z finds no root, creates it and is about to create its
    own folder in it (``mkdir(parents=True)`` is two ``mkdir`` calls); Y's late ``rmdir`` of
    the (empty) root lands in between, and Z stops with "output folder ... is not writable"
    (exit 2). The interleaving is forced by running Y's close right after Z made the root."""
    out = tmp_path / "out"
    root = out / STAGING_DIR
    x, y, z = (LocalSink(out, run_id=f"20261126T12000{n}Z-run{n}", fsync=False) for n in range(3))
    await x.prepare()
    await y.prepare()
    (y.run_dir / "owner.json").unlink()
    y.run_dir.rmdir()  # Y is half-way through aclose: its folder is gone, the rmdir is to come
    await x.aclose()  # X is done: its folder and the (then empty) root are gone
    assert not root.exists()
    mkdir = Path.mkdir
    fired: list[bool] = []

    def mkdir_then_y_finishes(self: Path, *args: Any, **kw: Any) -> None:
        mkdir(self, *args, **kw)
        if self == root and not fired:
            fired.append(True)
            anyio.from_thread.run(y.aclose)

    monkeypatch.setattr(Path, "mkdir", mkdir_then_y_finishes)
    try:
        await z.prepare()
    finally:
        monkeypatch.undo()
        await z.aclose()
    assert fired


@pytest.mark.anyio
async def test_a_200_empty_zip_on_every_attempt_is_not_stored_as_an_empty_hour(
    tmp_path: Path,
) -> None:
    """Amplitude answers 404 when an hour has no data; a 200 with an empty ZIP is never a
    real answer (the pipeline itself says so when it re-asks). Yet two identical empty
    answers are "accepted after two identical short attempts": the hour is committed as
    *empty*, the run is green, and later runs skip it. A proxy or cache that keeps serving
    an empty archive thus loses the hour silently. Such an hour should end failed."""
    out = tmp_path / "out"
    dataset = small_dataset()
    hour = DAY1 + timedelta(hours=6)
    plan = FaultPlan.always({hour: Fault.EMPTY_ZIP})
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        summary = await run(make_config(sim.base_url, out, max_attempts=4), hour, hour)
    assert dataset.pages(hour), "the hour has data"
    assert summary.exit_code == 1, f"{summary.count('empty')} hour stored as empty, exit 0"
    assert not (out / hour_folder(PROJECT, hour) / MANIFEST_NAME).exists()
