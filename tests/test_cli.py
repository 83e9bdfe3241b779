"""The command line, run in-process against a simulator on its own thread: exit codes, one-line
errors, dry runs, JSON logs, and secrets kept out of every log line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from async_amp.cli import build_parser, main
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import ExportSimulator, Fault, FaultPlan

from .helpers import DAY1, KEY, SECRET, isolate_cli, small_dataset


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_cli(tmp_path, monkeypatch)


@pytest.fixture
def sim(workdir: Path) -> Iterator[ExportSimulator]:
    faults = FaultPlan.always({DAY1 + timedelta(hours=5): Fault.CORRUPT_GZIP})
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET, faults=faults) as s:
        (workdir / "config.toml").write_text(
            f'[amplitude]\nbase_url = "{s.base_url}"\n'
            "[extract]\nbackoff_base_s = 0.01\nbackoff_max_s = 0.02\nmax_attempts = 2\n"
            "[output]\nfsync = false\n"
        )
        yield s


def test_extract_writes_output_logs_and_exits_0(
    sim: ExportSimulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *("extract", "--start", "2026-11-01T00", "--end", "2026-11-01T03"),
            *("--log-format", "json", "--summary-json", "out/summary.json"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[1].split()[:3] == ["project", "hours", "complete"]
    assert out.splitlines()[2].split()[:3] == ["website", "4", "4"]
    report = json.loads((workdir / "out/summary.json").read_text())
    assert report["totals"]["complete"] == 4 and report["exit_code"] == 0
    assert report["projects"]["website"]["requests"] == 4
    assert (workdir / "data/website/date=2026-11-01/hour=03/_manifest.json").is_file()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.count("hour.done") == 4 and "run.summary" in events
    assert all({"timestamp", "level", "run_id"} <= set(line) for line in lines)
    log_files = list((workdir / "logs").glob("*.jsonl"))
    assert len(log_files) == 1
    assert "run.summary" in log_files[0].read_text()


def test_incomplete_hour_exits_1_and_is_named(
    sim: ExportSimulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["extract", "--start", "20261101T04", "--end", "20261101T06", "--quiet"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert "FAILED website 2026-11-01T05:00:00Z" in out and "gzip" in out
    assert not (workdir / "data/website/date=2026-11-01/hour=05").exists()


def test_secrets_never_reach_logs_output_or_files(
    sim: ExportSimulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["extract", "--start", "2026-11-01T04", "--end", "2026-11-01T06", "--log-format", "json"])
    out, err = capsys.readouterr()
    texts = [out, err] + [
        p.read_text() for p in workdir.rglob("*") if p.is_file() and p.suffix != ".json"
    ]
    texts += [p.read_text() for p in workdir.rglob("_manifest.json")]
    for text in texts:
        assert KEY not in text and SECRET not in text


def test_dry_run_prints_the_plan_and_makes_no_request(
    sim: ExportSimulator,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-02T03:30:00Z")
    code = main(["extract", "--start", "2026-11-01", "--end", "2026-11-02", "--dry-run"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert sim.request_count() == 0
    assert "2026-11-01       24      0        0" in out
    assert "2026-11-02        1      0       23" in out
    assert "not yet available: 2026-11-02T01:00:00Z" in out


def test_rerun_makes_zero_requests(
    sim: ExportSimulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["extract", "--start", "2026-11-01T00", "--end", "2026-11-01T02", "--quiet"]
    assert main(args) == 0
    sim.reset_log()
    assert main([*args, "--summary-json", "s.json"]) == 0
    assert sim.request_count() == 0
    assert json.loads((workdir / "s.json").read_text())["totals"]["skipped"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-11-02", "--end", "2026-11-01"], "before --start"),
        (["--start", "2026-11-31", "--end", "2026-12-01"], "not a real date"),
        (["--start", "tomorrow", "--end", "2026-12-01"], "YYYY-MM-DD"),
        (["--start", "2026-11-01", "--end", "2026-11-01", "--concurrency", "0"], "at least 1"),
        (["--start", "2026-11-01", "--end", "2026-11-01", "--concurrency", "x"], "whole number"),
        (
            ["--start", "2026-11-01", "--end", "2026-11-01", "--config", "nope.toml"],
            "no such config",
        ),
        (["--start", "2026-11-01"], "required"),
        (["--start", "2026-11-01", "--end", "2026-11-01", "--shard", "3/2"], "between 1 and N"),
        (["--start", "2026-11-01", "--end", "2026-11-01", "--shard", "x"], "K/N"),
        (
            ["--start", "2026-11-01", "--end", "2026-11-01", "--window-hours", "0"],
            "--window-hours must be",
        ),
        (["--start", "2026-11-01", "--end", "2026-11-01", "--project", "nope"], "unknown project"),
        (["--start", "2026-11-01", "--end", "2026-11-01", "--sink", "ftp"], "invalid choice"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["extract", *args]))
    _, err = capsys.readouterr()
    assert info.value.code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_bad_config_file_gets_one_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "config.toml").write_text("[extract]\nconcurrency = 0\nfoo = 1\n")
    code = main(["extract", "--start", "2026-11-01", "--end", "2026-11-01"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "2 problems" in err and "unknown key [extract] foo" in err
    assert len(err.strip().splitlines()) == 1


def test_the_config_variable_names_the_file_the_cli_reads(
    sim: ExportSimulator,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    named = workdir / "etc" / "prod.toml"
    named.parent.mkdir()
    text = (workdir / "config.toml").read_text()
    named.write_text(text + 'dir = "from-variable"\n')  # the last table is [output]
    (workdir / "config.toml").unlink()
    monkeypatch.setenv("ASYNC_AMP_CONFIG", str(named))
    assert main(["extract", "--start", "2026-11-01T00", "--end", "2026-11-01T01", "--quiet"]) == 0
    hours = (workdir / "from-variable" / "website").glob("date=*/hour=*")
    assert sorted(p.name for p in hours) == ["hour=00", "hour=01"]
    assert not (workdir / "data").exists()
    monkeypatch.setenv("ASYNC_AMP_CONFIG", str(workdir / "nope.toml"))
    capsys.readouterr()
    assert main(["status", "--start", "2026-11-01", "--end", "2026-11-01"]) == 2
    _, err = capsys.readouterr()
    assert "ASYNC_AMP_CONFIG=" in err and "no such config file" in err
    assert len(err.strip().splitlines()) == 1


def test_missing_keys_get_one_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMP_SECRET_KEY")
    code = main(["extract", "--start", "2026-11-01", "--end", "2026-11-01"])
    _, err = capsys.readouterr()
    assert code == 2 and "AMP_SECRET_KEY not set" in err
    assert len(err.strip().splitlines()) == 1


def test_keys_from_dotenv_are_used(
    sim: ExportSimulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMP_API_KEY")
    monkeypatch.delenv("AMP_SECRET_KEY")
    (workdir / ".env").write_text(f"AMP_API_KEY={KEY}\nAMP_SECRET_KEY={SECRET}\n")
    assert main(["extract", "--start", "2026-11-01T00", "--end", "2026-11-01T00", "--quiet"]) == 0


def test_wrong_keys_exit_2_with_region_hint(
    sim: ExportSimulator,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMP_SECRET_KEY", "not-the-secret")
    code = main(["extract", "--start", "2026-11-01", "--end", "2026-11-02", "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "refused the keys" in err and "region" in err
    assert "not-the-secret" not in err
    assert sim.request_count() <= 8


def test_unwritable_output_folder_is_a_user_error(
    sim: ExportSimulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "blocker").write_text("a file where a folder should be")
    code = main(
        [
            "extract",
            "--start",
            "2026-11-01T00",
            "--end",
            "2026-11-01T00",
            "--output",
            "blocker/out",
            "--quiet",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "not writable" in err


def test_every_command_and_option_has_help_with_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        for action in sub._actions:
            if action.dest == "help" or action.help == argparse.SUPPRESS:
                continue  # an older spelling, kept working but not shown
            assert action.help and ("e.g." in action.help or "example" in action.help), (
                name,
                action.dest,
            )
        assert "example" in (sub.epilog or ""), name


# What start-up must not load: the run's stack (HTTP, the streaming core, structlog and rich),
# the table libraries (deltalake and pyarrow are ~70 MB of RSS), the simulator.
HEAVY = ("aiohttp", "numpy", "stream_unzip", "structlog", "rich", "aiofiles")
TABLES = ("deltalake", "pyarrow", "polars", "duckdb")
RUN_MODULES = (
    "async_amp.extraction.run",
    "async_amp.source.export_api",
    "async_amp.source.archive",
    "async_amp.simulator",
)


def _loaded_by(code: str, cwd: Path | None = None) -> set[str]:
    """The top-level packages and the async_amp modules a fresh interpreter has loaded after
    ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules}"
        " | {m for m in sys.modules if m.startswith('async_amp')})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _heavy(loaded: set[str], *names: str) -> list[str]:
    return sorted(m for m in loaded if m in names or m.startswith(RUN_MODULES))


def test_import_async_amp_loads_nothing_until_a_name_is_used() -> None:
    """The API's names are imported on first use (PEP 562), and all of them are there."""
    loaded = _loaded_by("import async_amp")
    assert {m for m in loaded if m.startswith("async_amp")} == {
        "async_amp",
        "async_amp.lazy",
        "async_amp.version",
    }
    assert _heavy(loaded, *HEAVY, *TABLES, "anyio") == []
    code = (
        "import async_amp, async_amp.readback as rb\n"
        "missing = [n for m in (async_amp, rb) for n in m.__all__ if not hasattr(m, n)]\n"
        "assert not missing, missing\n"
        "assert set(async_amp.__all__) <= set(dir(async_amp))\n"
        "assert async_amp.extract_sync is async_amp.api.extract_sync\n"
    )
    assert "async_amp.reports.api" in _loaded_by(code)


def test_the_cli_loads_no_table_library_until_a_command_needs_one() -> None:
    """Every command's parser is built for every run (``--help`` too): the commands register
    cheaply and import their library modules in the handler. The compact command's default
    retention is the library's own."""
    loaded = _loaded_by("from async_amp.cli.parser import build_parser\nbuild_parser()")
    assert _heavy(loaded, *HEAVY, *TABLES) == []
    assert "async_amp.api" not in loaded


def test_an_ndjson_runs_stack_loads_no_table_library() -> None:
    """``async_amp.extraction.run`` (what every extract imports) leaves pyarrow and the others to
    the formats and sources that need them: an NDJSON run from the Export API stays lean (the
    cloud export's merged-IDs table had made every run load pyarrow, +31 MiB of RSS)."""
    loaded = _loaded_by("import async_amp.extraction.run, async_amp.output.stores.local")
    assert "async_amp.extraction.run" in loaded
    assert [m for m in loaded if m in TABLES] == []


def test_the_model_build_loads_no_http_client_nor_parquet_writer() -> None:
    """``model`` reads Parquet with DuckDB: aiohttp (only ``reconcile`` asks Amplitude), the
    NDJSON converter, the archive reader (stream-unzip, pycryptodome) and the logger
    (structlog, rich) stay unloaded; they had cost every build about 0.7 s of start-up."""
    loaded = _loaded_by(
        "from async_amp.models.api import model_sync\nimport async_amp.merged.store"
    )
    assert "async_amp.models.build" in loaded
    assert "async_amp.merged.store" in loaded
    assert _heavy(loaded, "aiohttp", "stream_unzip", "Crypto", "structlog") == []
    assert "async_amp.output.columnar.convert" not in loaded


def test_status_loads_only_what_reading_manifests_needs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    code = (
        "import contextlib, io\nfrom async_amp.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['status', '--start', '2026-11-01', '--end', '2026-11-02']) == 0\n"
    )
    loaded = _loaded_by(code, cwd=tmp_path)
    assert "async_amp.readback.status" in loaded
    assert _heavy(loaded, "aiohttp", "numpy", "stream_unzip", "structlog", *TABLES) == []
    from async_amp.cli.commands.compact import DEFAULT_RETENTION_HOURS
    from async_amp.output.delta.maintain import DEFAULT_RETENTION_HOURS as LIBRARY_DEFAULT

    assert DEFAULT_RETENTION_HOURS == LIBRARY_DEFAULT
