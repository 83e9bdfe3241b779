"""Bad input everywhere: every malformed CLI argument, config value and environment value gets
one clear line on stderr and exit 2 — no traceback, no request, no output written.

(tests/test_cli.py and tests/test_hours_config.py cover a first set; this file adds the rest
and does not repeat them.) Every case runs the real ``main()``; the Export API URL points at
a closed loopback port, so a value wrongly accepted shows up as a failed run, not a hang.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from async_amp.cli import main
from async_amp.simulator.background import BackgroundSimulator

from .helpers import DAY1, KEY, SECRET, isolate_cli, small_dataset

RANGE = ["--start", "2026-11-01T00", "--end", "2026-11-01T01"]
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


@dataclass
class Result:
    code: int
    out: str
    err: str
    created: set[str]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_cli(
        tmp_path,
        monkeypatch,
        ASYNC_AMP_NOW="2026-11-26T12:00:00Z",
        ASYNC_AMP_EXTRACT_MAX_ATTEMPTS="1",
        ASYNC_AMP_AMPLITUDE_BASE_URL=DEAD_URL,
    )
    return tmp_path


Cli = Callable[..., Result]


@pytest.fixture
def cli(workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run ``main(args)`` in ``workdir`` (optionally with a config.toml); what it did."""

    def go(args: list[str], *, config: str | None = None) -> Result:
        if config is not None:
            (workdir / "config.toml").write_text(config)
            for key, env in (
                ("base_url", "ASYNC_AMP_AMPLITUDE_BASE_URL"),
                ("max_attempts", "ASYNC_AMP_EXTRACT_MAX_ATTEMPTS"),
            ):
                if key in config:  # let the file's value through (the environment wins)
                    monkeypatch.delenv(env)
        return _main(workdir, capsys, args)

    return go


def _main(workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> Result:
    before = {p.relative_to(workdir).as_posix() for p in workdir.rglob("*")}
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    after = {p.relative_to(workdir).as_posix() for p in workdir.rglob("*")}
    return Result(code, out, err, after - before)


def assert_one_clear_line(result: Result, *fragments: str) -> None:
    assert result.code == 2, f"exit {result.code}\n{result.out}\n{result.err}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("async-amp: error: "), lines[0]
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert not result.created - {"logs"}, f"a rejected command wrote {result.created}"


# --------------------------------------------------------------------------- CLI arguments

BAD_ARGUMENTS = {
    "reversed-hours": (
        ["--start", "2026-11-01T05", "--end", "2026-11-01T04"],
        "before --start",
    ),
    "reversed-relative": (["--start=-1d", "--end=-7d"], "before --start"),
    "not-a-leap-day": (["--start", "2026-02-29", "--end", "2026-03-01"], "not a real date"),
    "hour-24": (["--start", "2026-11-01T24", "--end", "2026-11-02"], "not a real date"),
    "month-13-amplitude-form": (["--start", "20261301T00", "--end", "2026-12-02"], "not a real"),
    "minutes": (["--start", "2026-11-01T05:30", "--end", "2026-11-02"], "YYYY-MM-DD"),
    "day-first": (["--start", "01/11/2026", "--end", "2026-11-02"], "YYYY-MM-DD"),
    "empty-start": (["--start", "", "--end", "2026-11-02"], "--start"),
    "blank-end": (["--start", "2026-11-01", "--end", "   "], "cannot read"),
    "negative-concurrency": ([*RANGE, "--concurrency", "-3"], "--concurrency"),
    "fractional-concurrency": ([*RANGE, "--concurrency", "1.5"], "whole number"),
    "concurrency-above-64": ([*RANGE, "--concurrency", "65"], "between 1 and 64"),
    "zero-attempts": ([*RANGE, "--max-attempts", "0"], "at least 1"),
    "word-attempts": ([*RANGE, "--max-attempts", "many"], "whole number"),
    "attempts-above-100": ([*RANGE, "--max-attempts", "101"], "between 1 and 100"),
    "negative-expected-pages": ([*RANGE, "--expected-pages", "-1"], "--expected-pages"),
    "word-expected-pages": ([*RANGE, "--expected-pages", "three"], "--expected-pages"),
    "zero-window": ([*RANGE, "--window-hours", "0"], "--window-hours"),
    "word-window": ([*RANGE, "--window-hours", "day"], "--window-hours"),
    "shard-zero": ([*RANGE, "--shard", "0/4"], "--shard"),
    "shard-beyond": ([*RANGE, "--shard", "5/4"], "--shard"),
    "shard-word": ([*RANGE, "--shard", "half"], "--shard"),
    "unknown-project": ([*RANGE, "--project", "nope"], "nope"),
    "unknown-flag": ([*RANGE, "--turbo"], "--turbo"),
    "bad-log-format": ([*RANGE, "--log-format", "xml"], "--log-format"),
}


@pytest.mark.parametrize(
    ("args", "fragment"), list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS)
)
def test_bad_cli_arguments_get_one_line_and_exit_2(
    cli: Cli, workdir: Path, args: list[str], fragment: str
) -> None:
    assert_one_clear_line(cli(["extract", *args]), fragment)


def test_unknown_command_gets_one_line_and_exit_2(cli: Cli, workdir: Path) -> None:
    assert_one_clear_line(cli(["extrakt", *RANGE]), "extrakt")


def test_output_folder_that_is_a_file_gets_one_line_and_exit_2(cli: Cli, workdir: Path) -> None:
    (workdir / "out").write_text("a file, not a folder")
    result = cli(["extract", *RANGE, "--output", "out", "--quiet"])
    assert result.code == 2 and "not writable" in result.err
    assert result.err.strip().splitlines()[-1].startswith("async-amp: error: output folder out")


def test_documented_relative_bounds_work_as_separate_arguments(cli: Cli, workdir: Path) -> None:
    """``--start -7d`` (two words, as the help and README write it) must not read as a flag."""
    result = cli(["extract", "--start", "-7d", "--end", "-1d", "--dry-run"])
    assert result.code == 0, result.err
    assert "168" in result.out  # 7 whole days


# --------------------------------------------------------------------------- config values

BAD_CONFIG = {
    "concurrency-text": ("[extract]\nconcurrency = 'eight'\n", "[extract] concurrency"),
    "concurrency-float": ("[extract]\nconcurrency = 8.5\n", "[extract] concurrency"),
    "concurrency-array": ("[extract]\nconcurrency = [8]\n", "[extract] concurrency"),
    "attempts-too-many": ("[extract]\nmax_attempts = 101\n", "[extract] max_attempts"),
    "lag-negative": ("[extract]\navailability_lag_hours = -1\n", "availability_lag_hours"),
    "read-timeout-zero": ("[extract]\nread_timeout_s = 0\n", "[extract] read_timeout_s"),
    "read-timeout-nan": ("[extract]\nread_timeout_s = nan\n", "[extract] read_timeout_s"),
    "connect-timeout-negative": ("[extract]\nconnect_timeout_s = -1\n", "connect_timeout_s"),
    "member-bytes-zero": ("[extract]\nmax_member_bytes = 0\n", "max_member_bytes"),
    "member-bytes-text": ("[extract]\nmax_member_bytes = '8G'\n", "max_member_bytes"),
    "ratio-one": ("[extract]\nmax_expansion_ratio = 1\n", "max_expansion_ratio"),
    "expected-pages-huge": ("[extract]\nexpected_pages_per_hour = 10001\n", "expected_pages"),
    "region-unknown": ("[amplitude]\nregion = 'eu-west'\n", "[amplitude] region"),
    "region-number": ("[amplitude]\nregion = 1\n", "[amplitude] region"),
    "region-empty": ("[amplitude]\nregion = ''\n", "[amplitude] region"),
    "project-empty": ("[amplitude]\nproject = ''\n", "[amplitude] project"),
    "project-slash": ("[amplitude]\nproject = 'a/b'\n", "[amplitude] project"),
    "project-dot": ("[amplitude]\nproject = '.'\n", "[amplitude] project"),
    "base-url-empty": ("[amplitude]\nbase_url = ''\n", "[amplitude] base_url"),
    "base-url-number": ("[amplitude]\nbase_url = 443\n", "[amplitude] base_url"),
    "base-url-no-scheme": ("[amplitude]\nbase_url = 'amplitude.com'\n", "base_url"),
    "sink-unknown": ("[output]\nsink = 'ftp'\n", "[output] sink"),
    "s3-no-bucket": ("[output]\nsink = 's3'\n", "sink 's3' needs [s3] bucket"),
    "gcs-no-bucket": ("[output]\nsink = 'gcs'\n", "sink 'gcs' needs [gcs] bucket"),
    "gcs-bad-bucket": ("[output]\nsink = 'gcs'\n[gcs]\nbucket = 'No_Caps'\n", "[gcs] bucket"),
    "dir-number": ("[output]\ndir = 5\n", "[output] dir"),
    "dir-empty": ("[output]\ndir = ''\n", "[output] dir"),
    "fsync-word": ("[output]\nfsync = 'sometimes'\n", "[output] fsync"),
    "keep-gzip-number": ("[output]\nkeep_gzip = 1\n", "[output] keep_gzip"),
    "section-not-table": ("extract = 5\n", "[extract] must be a table"),
    "top-level-key": ("concurrency = 4\n", "unknown section [concurrency]"),
    "duplicate-key": ("[extract]\nconcurrency = 2\nconcurrency = 3\n", "not valid TOML"),
    "unknown-azure-key": ("[azure]\naccount = 'x'\n", "unknown key [azure] account"),
}


@pytest.mark.parametrize(("body", "fragment"), list(BAD_CONFIG.values()), ids=list(BAD_CONFIG))
def test_bad_config_values_get_one_line_and_exit_2(
    cli: Cli, workdir: Path, body: str, fragment: str
) -> None:
    assert_one_clear_line(cli(["extract", *RANGE], config=body), fragment)


def test_unreadable_config_files_get_one_line_and_exit_2(cli: Cli, workdir: Path) -> None:
    (workdir / "latin1.toml").write_bytes(b"\xff\xfe[extract]\n")
    (workdir / "folder.toml").mkdir()
    for name, fragment in (("latin1.toml", "cannot read"), ("folder.toml", "folder.toml")):
        result = cli(["extract", *RANGE, "--config", name])
        assert_one_clear_line(result, fragment)


# --------------------------------------------------------------------------- environment values

BAD_ENV = {
    "concurrency-word": ("ASYNC_AMP_EXTRACT_CONCURRENCY", "abc"),
    "concurrency-zero": ("ASYNC_AMP_EXTRACT_CONCURRENCY", "0"),
    "concurrency-empty": ("ASYNC_AMP_EXTRACT_CONCURRENCY", ""),
    "concurrency-blank": ("ASYNC_AMP_EXTRACT_CONCURRENCY", " "),
    "concurrency-exponent": ("ASYNC_AMP_EXTRACT_CONCURRENCY", "1e3"),
    "fsync-word": ("ASYNC_AMP_OUTPUT_FSYNC", "maybe"),
    "region-unknown": ("ASYNC_AMP_AMPLITUDE_REGION", "mars"),
    "timeout-negative": ("ASYNC_AMP_EXTRACT_READ_TIMEOUT_S", "-5"),
    "timeout-word": ("ASYNC_AMP_EXTRACT_CONNECT_TIMEOUT_S", "soon"),
    "dir-empty": ("ASYNC_AMP_OUTPUT_DIR", ""),
    "sink-unknown": ("ASYNC_AMP_OUTPUT_SINK", "ftp"),
    "unknown-variable": ("ASYNC_AMP_EXTRACT_TURBO", "1"),
    "unknown-section": ("ASYNC_AMP_OUTPUTS_DIR", "x"),
    "now-garbage": ("ASYNC_AMP_NOW", "garbage"),
}


@pytest.mark.parametrize(("name", "value"), list(BAD_ENV.values()), ids=list(BAD_ENV))
def test_bad_environment_values_get_one_line_and_exit_2(
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert_one_clear_line(cli(["extract", *RANGE]), name)


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_blank_keys_get_one_line_and_exit_2(
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    monkeypatch.setenv("AMP_API_KEY", value)
    assert_one_clear_line(cli(["extract", *RANGE]), "AMP_API_KEY")


def test_several_problems_from_every_source_are_one_line(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_AMP_OUTPUT_FSYNC", "maybe")
    result = cli(
        ["extract", *RANGE, "--expected-pages", "-2"],
        config="[extract]\nmax_attempts = 0\n[amplitude]\nregion = 'mars'\n",
    )
    assert_one_clear_line(
        result, "4 problems", "max_attempts", "region", "ASYNC_AMP_OUTPUT_FSYNC", "--expected"
    )


# --------------------------------------------------------------------------- found by these tests


def test_far_relative_bounds_get_one_line_not_a_traceback(cli: Cli, workdir: Path) -> None:
    """``-9999999d`` goes before year 1: ``OverflowError`` escapes as a traceback (exit 1);
    ``-99999999999999999999h`` overflows ``timedelta`` the same way."""
    for start in ("--start=-9999999d", "--start=-99999999999999999999h"):
        result = cli(["extract", start, "--end=-1d", "--dry-run"])
        assert_one_clear_line(result, start.split("=", 1)[1])


def test_the_last_day_of_year_9999_gets_one_line_not_a_traceback(cli: Cli, workdir: Path) -> None:
    """``hour_range`` steps one hour past ``--end`` to stop, which overflows ``datetime``."""
    args = ["extract", "--start", "9999-12-31", "--end", "9999-12-31", "--dry-run"]
    result = cli(args)
    assert result.code in (0, 2), result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("args", "config"),
    [
        (["--log-file", "blocker/run.jsonl"], None),
        ([], "[output]\nlog_dir = 'blocker/logs'\n"),
    ],
    ids=["--log-file", "log_dir"],
)
def test_unwritable_log_file_gets_one_line_not_a_traceback(
    cli: Cli, workdir: Path, args: list[str], config: str | None
) -> None:
    """``configure_logging`` creates the log folder unguarded: a file in the way raises
    ``FileExistsError``/``NotADirectoryError`` through ``main`` (traceback, exit 1)."""
    (workdir / "blocker").write_text("a file where a folder should be")
    result = cli(["extract", *RANGE, "--quiet", *args], config=config)
    assert_one_clear_line(result, "blocker")


@pytest.mark.parametrize(
    "body",
    [
        "[extract]\nbackoff_base_s = inf\nbackoff_max_s = inf\n",
        "[extract]\nread_timeout_s = inf\n",
        "[extract]\nconnect_timeout_s = inf\n",
    ],
    ids=["backoff-inf", "read-timeout-inf", "connect-timeout-inf"],
)
def test_infinite_timeouts_and_backoffs_are_refused(cli: Cli, workdir: Path, body: str) -> None:
    """TOML has ``inf``; the number parsers accept it. An infinite backoff makes the first
    retry sleep forever (``uniform(0, inf)``); an infinite read timeout turns stall
    detection off, so a stalled server hangs the run, the very thing it exists to prevent."""
    result = cli(["extract", *RANGE, "--dry-run"], config=body)
    assert_one_clear_line(result, "inf")


@pytest.mark.parametrize("url", ["http://", "https:///api", "http://:8080"])
def test_base_url_without_a_host_is_refused(cli: Cli, workdir: Path, url: str) -> None:
    """Accepted today; every request then fails as a "retryable" network error (exit 1 after
    all attempts) instead of one line naming the setting."""
    body = f'[amplitude]\nbase_url = "{url}"\n'
    result = cli(["extract", *RANGE], config=body)
    assert_one_clear_line(result, "base_url")


def test_a_base_url_whose_export_path_answers_404_is_not_a_green_run(
    cli: Cli, workdir: Path
) -> None:
    """A base URL with a path (``https://amplitude.com/api``, a natural slip) sends every
    request to ``/api/api/2/export``, which answers 404 like any unknown path; 404 is read as
    "no data in this hour", so every hour is committed as *empty*, the run exits 0, and later
    runs skip those hours for good: silent, permanent data loss from one config typo."""
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        body = f'[amplitude]\nbase_url = "{sim.base_url}/api"\n'
        args = ["extract", "--start", f"{DAY1:%Y-%m-%dT%H}"]
        args += ["--end", f"{DAY1 + timedelta(hours=2):%Y-%m-%dT%H}", "--quiet"]
        result = cli(args, config=body)
    empty = list(workdir.rglob("_manifest.json"))
    assert result.code != 0 and not empty, f"exit {result.code}, {len(empty)} hours 'empty'"
