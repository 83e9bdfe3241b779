"""Parquet output through the CLI: extract --format parquet, status and verify on it (a flipped
byte caught), and a SIGKILL mid-run leaving nothing a hive-partitioned reader could see
without its manifest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from async_amp.cli import main
from async_amp.config import Config
from async_amp.config.load import load_config
from async_amp.errors import ConfigError
from async_amp.output.manifest import MANIFEST_NAME, hour_folder
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import Latency

from .helpers import DAY1, KEY, NOW, SECRET, isolate_cli, small_dataset

HOURS = 6


def _folder(out: Path, hours: int) -> Path:
    return out / hour_folder("website", DAY1 + timedelta(hours=hours))


@pytest.fixture
def extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Six hours extracted as Parquet by the CLI; the output folder."""
    isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_NOW=NOW.isoformat())
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
        code = main(
            [
                "extract",
                "--start",
                "2026-11-01T00",
                "--end",
                f"2026-11-01T{HOURS - 1:02d}",
                "--format",
                "parquet",
                "--output",
                "out",
                "--quiet",
            ]
        )
    assert code == 0
    return tmp_path / "out"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*args, "--start", "2026-11-01T00", "--end", "2026-11-01T05", "--output", "out"])
    return code, capsys.readouterr().out


def test_status_and_verify_read_parquet_hours(
    extracted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = sum(
        json.loads((_folder(extracted, h) / MANIFEST_NAME).read_text())["events"]
        for h in range(HOURS)
    )
    code, out = _cli(capsys, "status", "--json")
    assert code == 0
    totals = json.loads(out)["projects"]["website"]["totals"]
    assert totals["complete"] == HOURS and totals["events"] == rows
    assert totals["files"] == 3 * HOURS
    code, out = _cli(capsys, "verify", "--json")
    assert code == 0, out
    report = json.loads(out)["projects"]["website"]
    assert report["ok"] and report["files_checked"] == 3 * HOURS
    assert report["events_counted"] == rows  # Parquet rows, read from each file's footer


@pytest.mark.parametrize(
    ("damage", "kinds"),
    [
        ("flip", {"sha256"}),
        ("truncate", {"size", "sha256", "corrupt"}),
        ("rows", {"events", "manifest"}),
    ],
)
def test_verify_catches_a_damaged_parquet_hour(
    extracted: Path, capsys: pytest.CaptureFixture[str], damage: str, kinds: set[str]
) -> None:
    folder = _folder(extracted, 2)
    name = sorted(p.name for p in folder.glob("*.parquet"))[0]
    path = folder / name
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 3] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) - 100]))
    else:  # the manifest claims a row the file does not hold, and is consistent with itself
        raw = json.loads((folder / MANIFEST_NAME).read_text())
        raw["files"][0]["events"] += 1
        raw["events"] += 1
        (folder / MANIFEST_NAME).write_text(json.dumps(raw))
    code, out = _cli(capsys, "verify", "--json")
    assert code == 1
    problems = json.loads(out)["projects"]["website"]["problems"]
    assert {p["kind"] for p in problems} == kinds
    assert {p["hour"] for p in problems} == {"2026-11-01T02:00:00Z"}


def test_sigkill_leaves_no_parquet_without_its_manifest_and_rerun_completes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AZURE_"))},
        "AMP_API_KEY": KEY,
        "AMP_SECRET_KEY": SECRET,
        "ASYNC_AMP_OUTPUT_FSYNC": "false",
        "ASYNC_AMP_NOW": NOW.isoformat(),
    }
    args = [sys.executable, "-m", "async_amp", "extract", "--start", "2026-11-01T00"]
    args += ["--end", "2026-11-01T11", "--output", str(out), "--format", "parquet", "--quiet"]
    dataset = small_dataset()
    with BackgroundSimulator(
        dataset, api_key=KEY, secret_key=SECRET, latency=Latency(fixed_s=0.3)
    ) as sim:
        env["ASYNC_AMP_AMPLITUDE_BASE_URL"] = sim.base_url
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        project = out / "website"  # not the staging folder, where a manifest waits too
        while len(list(project.rglob(MANIFEST_NAME))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        done = {p.parent for p in (out / "website").rglob(MANIFEST_NAME)}
        assert 2 <= len(done) < 12
        for folder in {p.parent for p in (out / "website").rglob("*.parquet")}:
            body = json.loads((folder / MANIFEST_NAME).read_text())  # never a folder without
            assert {p.name for p in folder.glob("*.parquet")} == {f["name"] for f in body["files"]}
        glob = str(out / "website" / "*" / "*" / "*.parquet")
        seen = duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"
        ).fetchall()[0][0]
        assert seen == sum(json.loads((f / MANIFEST_NAME).read_text())["events"] for f in done)

        rerun = subprocess.run(args, env=env, capture_output=True, timeout=120, check=False)
        assert rerun.returncode == 0, rerun.stderr
    assert not (out / ".async-amp-staging").exists()
    total = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"
    ).fetchall()[0][0]
    assert total == sum(dataset.hour_event_count(DAY1 + timedelta(hours=h)) for h in range(12))


def test_format_keys_and_the_keep_gzip_alias(tmp_path: Path) -> None:
    def load(**output: object) -> Config:
        return load_config(None, overrides={"output": output}, environ={})

    assert load().output.data_format == "ndjson"
    assert load(keep_gzip=True).output.data_format == "gzip"  # the older spelling still works
    assert load(format="gzip").output.data_format == "gzip"
    assert load(format="parquet", dedupe=True).output.data_format == "parquet"
    with pytest.raises(ConfigError) as clash:
        load(format="parquet", keep_gzip=True)
    assert "keep_gzip = true contradicts format" in str(clash.value)
    with pytest.raises(ConfigError) as alone:
        load(dedupe=True)
    assert 'dedupe = true needs format = "parquet"' in str(alone.value)
    with pytest.raises(ConfigError) as bad:
        load(format="csv")
    assert "format" in str(bad.value) and "parquet" in str(bad.value)
    toml = tmp_path / "config.toml"
    toml.write_text('[output]\nformat = "parquet"\n')
    assert load_config(toml, environ={}).output.data_format == "parquet"
    env = {"ASYNC_AMP_OUTPUT_FORMAT": "gzip"}
    assert load_config(None, environ=env).output.data_format == "gzip"
