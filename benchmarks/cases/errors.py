"""The ``errors`` benchmark case: how long a storage user error takes to reach its one line.

Issues 3 and 12 ask that a bad account key, a missing container or bucket, credentials that
may only read, or an endpoint nobody answers stop ``async-amp extract`` with exit 2 and one
line in under 15 s, with the production retry policy (no test settings). The tests check the
line, the exit code and that no secret leaks; the seconds are measured here, where a slow,
shared machine makes a number instead of a flaky test. Each scenario runs the CLI as a child
against a fresh Azurite or moto server (IAM enforced, so read-only credentials are real);
Amplitude is never reached (a closed loopback port), the sink's check comes first.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tools.azurite import ACCOUNT_KEY
from tools.s3server import S3Key, S3ServerProcess

from ..azurite import available as azurite_missing
from ..azurite import run_azurite
from ..common import API_KEY, SECRET_KEY, child_env, fmt_hour, measure
from ..measure import DAY, PY, Bench
from ..results import CaseResult, Row, target

NAME = "errors"
ORDER = 90

LIMIT_S = 15.0
CLOSED = "http://127.0.0.1:9"  # Amplitude: never asked, the storage check fails first


@dataclass(frozen=True, slots=True)
class Params:
    repeats: int


FULL = Params(repeats=3)
QUICK = Params(repeats=1)

Scenario = Callable[[], dict[str, str]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _azure(connection_string: str, account_url: str, sas: str) -> dict[str, Scenario]:
    def wrong_key() -> dict[str, str]:
        wrong = base64.b64encode(os.urandom(64)).decode()
        return {"AZURE_STORAGE_CONNECTION_STRING": connection_string.replace(ACCOUNT_KEY, wrong)}

    def missing_container() -> dict[str, str]:
        return {
            "AZURE_STORAGE_CONNECTION_STRING": connection_string,
            "ASYNC_AMP_AZURE_CREATE_CONTAINER": "false",
            "ASYNC_AMP_AZURE_CONTAINER": "bench-missing",
        }

    def read_only_sas() -> dict[str, str]:
        return {"AZURE_STORAGE_SAS_TOKEN": sas, "ASYNC_AMP_AZURE_ACCOUNT_URL": account_url}

    def unreachable() -> dict[str, str]:
        url = f"http://127.0.0.1:{_free_port()}/devstoreaccount1"
        return {"AZURE_STORAGE_SAS_TOKEN": sas, "ASYNC_AMP_AZURE_ACCOUNT_URL": url}

    return {
        "wrong account key": wrong_key,
        "missing container": missing_container,
        "read-only SAS": read_only_sas,
        "unreachable account URL": unreachable,
    }


def _s3(server: S3ServerProcess, bucket: str) -> dict[str, Scenario]:
    def settings(key: S3Key, bucket: str = bucket, endpoint: str = "") -> dict[str, str]:
        return {
            "ASYNC_AMP_S3_BUCKET": bucket,
            "ASYNC_AMP_S3_ENDPOINT_URL": endpoint or server.endpoint_url,
            "ASYNC_AMP_S3_ADDRESSING_STYLE": "path",
            **key.environ(),
        }

    return {
        "wrong secret": lambda: settings(S3Key(server.admin.access_key_id, "x" * 40)),
        "missing bucket": lambda: settings(server.admin, bucket=bucket + "-missing"),
        "read-only credentials": lambda: settings(server.read_only),
        "unreachable endpoint": lambda: settings(
            server.admin, endpoint=f"http://127.0.0.1:{_free_port()}"
        ),
    }


@contextlib.contextmanager
def _azurite_scenarios() -> Iterator[dict[str, Scenario]]:
    from azure.storage.blob import (  # noqa: PLC0415
        ContainerClient,
        ContainerSasPermissions,
        generate_container_sas,
    )

    with run_azurite() as azurite:
        ContainerClient.from_connection_string(
            azurite.connection_string, "bench"
        ).create_container()
        sas = generate_container_sas(
            "devstoreaccount1",
            "bench",
            account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions(read=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        yield _azure(azurite.connection_string, azurite.blob_endpoint, sas)


@contextlib.contextmanager
def _s3_scenarios() -> Iterator[dict[str, Scenario]]:
    import botocore.session  # noqa: PLC0415

    with S3ServerProcess(enforce_iam=True) as server:
        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=server.admin.access_key_id,
            aws_secret_access_key=server.admin.secret_access_key,
        )
        client.create_bucket(Bucket="bench")
        yield _s3(server, "bench")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One CLI run of a scenario, as measured."""

    wall_s: float
    cpu_s: float
    peak_rss: int
    exit_code: int
    lines: tuple[str, ...]

    @property
    def as_documented(self) -> bool:
        """Exit 2 and exactly one line on stderr."""
        return self.exit_code == 2 and len(self.lines) == 1


def _one(bench: Bench, sink: str, label: str, scenario: Scenario) -> Attempt:
    work = bench.workdir(NAME, f"{sink}-{label}")
    config = work / "bench.toml"
    config.write_text('[amplitude]\nproject = "bench"\n\n[azure]\ncontainer = "bench"\n')
    cmd = [PY, "-m", "async_amp", "extract", "--config", str(config)]
    cmd += ["--start", fmt_hour(DAY), "--end", fmt_hour(DAY + timedelta(hours=1))]
    cmd += ["--output", str(work / "out"), "--sink", sink, "--log-format", "json", "--quiet"]
    env = child_env(
        AMP_API_KEY=API_KEY,
        AMP_SECRET_KEY=SECRET_KEY,
        ASYNC_AMP_AMPLITUDE_BASE_URL=CLOSED,
        **scenario(),
    )
    done = measure(cmd, env=env, cwd=work, timeout_s=120)
    lines = tuple(line for line in done.stderr.splitlines() if line.strip())
    return Attempt(done.wall_s, done.cpu_s, done.peak_rss, done.exit_code, lines)


def _row(sink: str, label: str, runs: list[Attempt]) -> Row:
    median = sorted(runs, key=lambda a: a.wall_s)[(len(runs) - 1) // 2]
    ok = all(a.as_documented for a in runs)
    return Row(
        f"--sink {sink}: {label}",
        "async-amp",
        note=(median.lines[-1] if median.lines else "")[:160],
        wall_s=median.wall_s,
        cpu_s=median.cpu_s,
        peak_rss=median.peak_rss,
        exit_code=median.exit_code,
        valid=ok,
        problem="" if ok else "not exit 2 with one line",
        repeats=[{"wall_s": a.wall_s, "cpu_s": a.cpu_s, "exit_code": a.exit_code} for a in runs],
    )


def run(bench: Bench) -> CaseResult:
    p = QUICK if bench.quick else FULL
    result = CaseResult(
        NAME,
        "Storage user errors: seconds to exit 2 with one line (production retry policy)",
        {"repeats": p.repeats, "limit_s": LIMIT_S},
    )
    stores: list[tuple[str, Callable[[], contextlib.AbstractContextManager[dict[str, Scenario]]]]]
    stores = [("s3", _s3_scenarios)]
    missing = azurite_missing()
    if missing is None:
        stores.insert(0, ("azure", _azurite_scenarios))
    else:
        result.rows.append(Row("azure", "async-amp", available=False, note=missing))
    slowest = 0.0
    for sink, scenarios in stores:
        with scenarios() as found:
            for label, scenario in found.items():
                runs = [_one(bench, sink, label, scenario) for _ in range(p.repeats)]
                result.rows.append(_row(sink, label, runs))
                slowest = max(slowest, *(a.wall_s for a in runs))
    measured = [r for r in result.rows if r.available]
    all_ok = bool(measured) and all(r.valid for r in measured)
    result.headline.append(
        f"slowest storage user error: {slowest:.1f} s to exit 2 "
        f"({len(measured)} scenarios x {p.repeats})"
    )
    result.targets.append(
        target(
            "user-errors",
            f"every storage user error: exit 2, one line, < {LIMIT_S:.0f} s",
            f"slowest {slowest:.1f} s" + ("" if all_ok else "; some not exit 2 / one line"),
            all_ok and slowest < LIMIT_S,
        )
    )
    return result
