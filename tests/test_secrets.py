"""Secrets never leak: the whole local fault matrix runs with sentinel credentials, and no log
line (stderr and the JSON log file), error message, summary, manifest or output file holds them
or the Basic-auth token made from them; nor when the server echoes them back in its error
bodies (the simulator's ``echo_credentials`` option); nor when a config value carries them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from async_amp.cli import main
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import ExportSimulator, Fault, FaultPlan

from .helpers import DAY1, isolate_cli, small_dataset
from .test_reliability import record

API_KEY = "SENTINEL-API-KEY-8d1f0c"
SECRET_KEY = "SENTINEL-SECRET-KEY-3b7e52"
TOKEN = base64.b64encode(f"{API_KEY}:{SECRET_KEY}".encode()).decode()
# Whole values, the Basic token, and fragments (a shortened message must not keep half a key).
FORBIDDEN = (API_KEY, SECRET_KEY, TOKEN, "SENTINEL-API", "SENTINEL-SECRET", TOKEN[:16])

ALL_FAULTS = list(Fault)
HOURS = {DAY1 + timedelta(hours=n): fault for n, fault in enumerate(ALL_FAULTS)}
LAST = DAY1 + timedelta(hours=len(ALL_FAULTS))  # one clean hour after the faulted ones
_ISO_HOUR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:00:00Z")


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    files: dict[str, bytes]
    sim: ExportSimulator

    def leaks(self) -> list[str]:
        """Every place a forbidden string shows up, as ``where: what``."""
        found = []
        places = {"stdout": self.out.encode(), "stderr": self.err.encode(), **self.files}
        for where, data in places.items():
            for secret in FORBIDDEN:
                if secret.encode() in data:
                    found.append(f"{where}: {secret}")
        return found


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_cli(
        tmp_path, monkeypatch, key=API_KEY, secret=SECRET_KEY, ASYNC_AMP_NOW="2026-11-26T12:00:00Z"
    )


Runner = Callable[..., Outcome]


@pytest.fixture
def extract(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Runner]:
    """Run ``async-amp extract`` in-process against a simulator; collect every output."""

    def go(
        faults: Any = None,
        *,
        first: Any = DAY1,
        last: Any = LAST,
        echo: str | None = None,
        max_attempts: int = 3,
        server_keys: tuple[str, str] = (API_KEY, SECRET_KEY),
        extra: list[str] | None = None,
    ) -> Outcome:
        with BackgroundSimulator(
            small_dataset(),
            api_key=server_keys[0],
            secret_key=server_keys[1],
            faults=faults,
            retry_after_s=0,
            stall_s=5,  # longer than read_timeout_s: the stalled answer times out
            echo_credentials=echo,
        ) as sim:
            (workdir / "config.toml").write_text(
                f'[amplitude]\nbase_url = "{sim.base_url}"\n'
                f"[extract]\nbackoff_base_s = 0.01\nbackoff_max_s = 0.02\n"
                f"max_attempts = {max_attempts}\nread_timeout_s = 4.0\nexpected_pages_per_hour = 3\n"
                "[output]\nfsync = false\n"
            )
            args = ["extract", "--start", f"{first:%Y-%m-%dT%H}", "--end", f"{last:%Y-%m-%dT%H}"]
            code = main([*args, "--log-format", "json", "--concurrency", "4", *(extra or [])])
            out, err = capsys.readouterr()
            files = {
                p.relative_to(workdir).as_posix(): p.read_bytes()
                for p in workdir.rglob("*")
                if p.is_file() and p.name != ".env"
            }
            return Outcome(code, out, err, files, sim)

    yield go


def failed_hours(outcome: Outcome) -> list[str]:
    """The hours the summary names on its FAILED lines, in order."""
    lines = [line for line in outcome.out.splitlines() if "FAILED" in line]
    return [m[0] for line in lines if (m := _ISO_HOUR.search(line))]


def _record(test: str, outcome: Outcome) -> None:
    requests = outcome.sim.requests
    record(
        test,
        fault_kinds=len({r.fault for r in requests if r.fault}),
        faults_injected=sum(1 for r in requests if r.fault),
        requests=len(requests),
        hours_failed=len(failed_hours(outcome)),
        places_scanned=2 + len(outcome.files),
        leaks=len(outcome.leaks()),
    )


def _logged(outcome: Outcome) -> None:
    """The run really logged and wrote files (a silent run would pass vacuously)."""
    assert any(k.startswith("logs/") and k.endswith(".jsonl") for k in outcome.files)
    assert any(k.endswith("_manifest.json") for k in outcome.files)
    assert '"hour.retry"' in outcome.err or "hour.retry" in outcome.err


# --------------------------------------------------------------------------- the fault matrix


def test_every_fault_once_then_recovered_leaks_nothing(extract: Runner) -> None:
    """Each of the 17 fault kinds hits one hour's first attempt(s); every hour recovers,
    except HTTP_400, which for a single hour is final by design."""
    tries = {h: 2 if f is Fault.RESET_BEFORE_HEADERS else 1 for h, f in HOURS.items()}
    plan = FaultPlan.chain(
        *(FaultPlan.on_first_attempts({h: f}, tries[h]) for h, f in HOURS.items())
    )
    outcome = extract(plan)
    assert outcome.code == 1, outcome.out  # the HTTP_400 hour
    assert failed_hours(outcome) == ["2026-11-01T05:00:00Z"]  # HTTP_400 is the 6th kind
    assert {r.fault for r in outcome.sim.requests if r.fault} == set(Fault), outcome.out
    _logged(outcome)
    assert outcome.leaks() == []
    _record("secrets_faults_once", outcome)


def test_every_fault_that_never_clears_leaks_nothing(extract: Runner) -> None:
    """Every fault kind on every attempt: all 17 hours fail, with their errors printed and
    logged; the clean hour after them completes."""
    outcome = extract(FaultPlan.always(HOURS), max_attempts=2)
    assert outcome.code == 1
    # Two identical short answers are accepted (with a warning in the manifest): the same
    # partition missing twice, and the same empty ZIP twice (see test_reliability).
    accepted = {Fault.MISSING_PARTITION}  # an empty ZIP with 200 is an error, never "no data"
    failing = [f"{h:%Y-%m-%dT%H}:00:00Z" for h, f in HOURS.items() if f not in accepted]
    assert failed_hours(outcome) == failing, outcome.out
    _logged(outcome)
    assert outcome.leaks() == []
    _record("secrets_faults_always", outcome)


def test_rejected_keys_leak_nothing(extract: Runner) -> None:
    outcome = extract(server_keys=("other-key", "other-secret"), last=DAY1 + timedelta(hours=3))
    assert outcome.code == 2
    assert "refused the keys" in outcome.err
    assert outcome.leaks() == []


# --------------------------------------------------------------------------- echoing servers

ECHO_PLAIN = "Bad request from {api_key} / {secret_key}."
ECHO_PAIRS = "debug: api_key={api_key}&secret_key={secret_key}&password={secret_key}"
ECHO_HEADER = "Unauthorized. Authorization: {authorization}"
ECHO_TOKEN = "token {token} was sent"
ECHO_ERRORS = {h: f for h, f in HOURS.items() if f.status is not None}
HTML_HOUR = next(h for h, f in HOURS.items() if f is Fault.HTML_200)


@pytest.mark.parametrize("echo", [ECHO_PLAIN, ECHO_PAIRS], ids=["plain", "key=value"])
def test_error_bodies_echoing_the_keys_leak_nothing(extract: Runner, echo: str) -> None:
    """Every error status (429, 5xx, and the final 400) echoes the decoded keys."""
    outcome = extract(FaultPlan.always(ECHO_ERRORS), echo=echo, max_attempts=2)
    assert outcome.code == 1
    assert "***" in outcome.out or "***" in outcome.err  # the echo arrived and was masked
    assert outcome.leaks() == []


def test_an_html_page_served_with_200_echoing_the_keys_leaks_nothing(
    extract: Runner,
) -> None:
    """A 200 that is not a ZIP is reported with a preview of its first 48 bytes
    ("the response is not a ZIP archive (it starts with '...')"). The preview is built in
    source/archive.py, which knows no secrets: the summary on stdout prints the key as sent, and
    the log redactor, which only knows whole keys, lets a cut-off half of one through."""
    outcome = extract(
        FaultPlan.always({HTML_HOUR: Fault.HTML_200}),
        echo=ECHO_PLAIN,
        max_attempts=2,
        first=HTML_HOUR,
        last=HTML_HOUR,
    )
    assert outcome.code == 1
    assert "not a ZIP archive" in outcome.out
    assert outcome.leaks() == []


def test_rejected_keys_echoed_in_the_403_body_leak_nothing(extract: Runner) -> None:
    outcome = extract(
        server_keys=("other-key", "other-secret"),
        last=DAY1 + timedelta(hours=3),
        echo=ECHO_PLAIN,
    )
    assert outcome.code == 2 and "refused the keys" in outcome.err
    assert outcome.leaks() == []


@pytest.mark.parametrize("echo", [ECHO_HEADER, ECHO_TOKEN], ids=["header", "token"])
def test_error_bodies_echoing_the_authorization_header_leak_nothing(
    extract: Runner, echo: str
) -> None:
    """A server (or proxy) that reflects the Authorization header sends the Basic token:
    base64 of "key:secret", the credentials in all but name. Neither ``sanitize`` (it masks
    the raw keys and ``key=value`` pairs) nor the log redactor knows the token."""
    outcome = extract(FaultPlan.always(ECHO_ERRORS), echo=echo, max_attempts=2)
    assert outcome.code == 1
    assert outcome.leaks() == []


def test_rejected_keys_with_the_header_echoed_in_the_403_body_leak_nothing(
    extract: Runner,
) -> None:
    outcome = extract(
        server_keys=("other-key", "other-secret"),
        last=DAY1 + timedelta(hours=3),
        echo=ECHO_HEADER,
    )
    assert outcome.code == 2 and "refused the keys" in outcome.err
    assert outcome.leaks() == []


# --------------------------------------------------------------------------- secrets in config


def _config_error(workdir: Path, capsys: pytest.CaptureFixture[str], body: str) -> str:
    (workdir / "config.toml").write_text(body)
    code = main(["extract", "--start", "2026-11-01", "--end", "2026-11-01", "--dry-run"])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "url",
    [
        f"https://{API_KEY}:{SECRET_KEY}@amplitude.com",
        f"https://{API_KEY}@amplitude.com",
        f"http://u:{SECRET_KEY}@127.0.0.1:8080/",
    ],
    ids=["key-and-secret", "key-only", "secret-as-password"],
)
def test_base_url_with_credentials_is_refused_without_echoing_them(
    workdir: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    err = _config_error(workdir, capsys, f'[amplitude]\nbase_url = "{url}"\n')
    assert "no credentials" in err
    assert not [s for s in FORBIDDEN if s in err]


def test_base_url_with_credentials_from_the_environment_is_refused_without_echo(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", f"https://x:{SECRET_KEY}@amplitude.com")
    code = main(["extract", "--start", "2026-11-01", "--end", "2026-11-01", "--dry-run"])
    _, err = capsys.readouterr()
    assert code == 2 and "no credentials" in err
    assert not [s for s in FORBIDDEN if s in err]


def test_base_url_with_credentials_and_a_wrong_scheme_is_not_echoed(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scheme check runs first and quotes the whole value back, credentials included."""
    err = _config_error(
        workdir, capsys, f'[amplitude]\nbase_url = "ftp://{API_KEY}:{SECRET_KEY}@amplitude.com"\n'
    )
    assert not [s for s in FORBIDDEN if s in err], err


def test_base_url_with_a_key_in_its_query_is_refused_without_echo(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base URL has no query: ``?api_key=...`` is accepted today, then glued in front of
    ``/api/2/export`` (so the request goes to the wrong path) and repeated in messages that
    quote the URL (the region hint of a 401/403)."""
    err = _config_error(
        workdir, capsys, f'[amplitude]\nbase_url = "https://amplitude.com/?api_key={API_KEY}"\n'
    )
    assert not [s for s in FORBIDDEN if s in err], err
