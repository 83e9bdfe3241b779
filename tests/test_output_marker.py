"""The output knows what it is (issue 19 item 2): each project's root records its format in
``_async_amp.json``; every command follows it, a format mix is refused (exit 2, one line), and
an output made before the marker existed is recognised from its files, then recorded.

Through the CLI in process (``main``), against the simulator on loopback, reading the files
back with deltalake, never with the product's own readers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import deltalake
import pytest
from azure.storage.blob.aio import BlobServiceClient

from async_amp.cli import main
from async_amp.output.marker import MARKER_NAME
from async_amp.simulator.background import BackgroundSimulator

from .azurite import Azurite
from .e2e import cli, communicate, e2e_env, expect_user_error
from .helpers import DAY1, KEY, NOW, SECRET, isolate_cli, small_dataset
from .s3 import S3ServerProcess, admin_client

HOURS = 4
SPAN = ("--start", "2026-11-01T00", "--end", f"2026-11-01T{HOURS - 1:02d}")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI in ``tmp_path`` against a simulator; no format configured anywhere."""
    isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_NOW=NOW.isoformat())
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
        yield tmp_path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, *SPAN, "--output", "out"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _extract(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return _run(capsys, "extract", "--quiet", *args)


def _marker(root: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((root / "website" / MARKER_NAME).read_text())
    return loaded


def _data_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in (root / "website").rglob("*")
        if p.is_file() and not p.name.startswith("_") and "_async_amp" not in p.parts
    )


def test_a_new_output_records_its_format_and_refuses_another(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _extract(capsys, "--format", "gzip")
    assert code == 0, err
    marker = _marker(workdir / "out")
    assert marker["format"] == "gzip" and marker["project"] == "website"
    assert marker["layout"] == 1 and str(marker["created_by"]).startswith("async-amp ")
    assert marker["recognised"] is False
    before = _data_files(workdir / "out")
    assert before and all(name.endswith(".json.gz") for name in before)

    code, out, err = _extract(capsys, "--format", "parquet", "--force")
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "holds gzip output" in lines[0] and "--output DIR" in lines[0], lines[0]
    assert _data_files(workdir / "out") == before  # nothing written, nothing removed

    # the same through the environment, and for the reading commands
    os.environ["ASYNC_AMP_OUTPUT_FORMAT"] = "ndjson"
    try:
        code, _, err = _run(capsys, "status")
        assert code == 2 and len(err.splitlines()) == 1 and "holds gzip" in err
    finally:
        del os.environ["ASYNC_AMP_OUTPUT_FORMAT"]

    # no format given: the recorded one; the hours are there already
    code, _, err = _extract(capsys)
    assert code == 0, err
    assert _data_files(workdir / "out") == before
    assert _marker(workdir / "out") == marker  # written once, never rewritten


def _rows(table: Path) -> int:
    """The rows a Delta reader (deltalake) sees in the table's latest snapshot."""
    return deltalake.DeltaTable(str(table)).to_pyarrow_table(columns=["uuid"]).num_rows


def test_every_command_on_a_delta_folder_with_no_format_configured(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _extract(capsys, "--format", "delta")
    assert code == 0, err
    table = workdir / "out" / "website"
    rows = _rows(table)
    assert rows > 0

    # status: every hour complete, its events what the table holds, no extract suggested
    code, out, _ = _run(capsys, "status", "--json")
    assert code == 0
    totals = json.loads(out)["projects"]["website"]["totals"]
    assert totals["complete"] + totals["empty"] == HOURS
    assert totals["missing"] == 0 and totals["events"] == rows
    code, out, _ = _run(capsys, "status")
    assert code == 0 and "async-amp extract" not in out

    # verify: OK, and counting what a Delta reader sees
    code, out, _ = _run(capsys, "verify", "--json")
    assert code == 0, out
    report = json.loads(out)["projects"]["website"]
    assert report["ok"] and report["problem_count"] == 0
    assert report["events_counted"] == rows
    live = deltalake.DeltaTable(str(table)).file_uris()  # the files a Delta reader opens
    assert report["files_checked"] == len(live) > 0
    assert report["bytes_read"] == sum(
        Path(uri.removeprefix("file://")).stat().st_size for uri in live
    )

    # report: every hour of the range complete on the page
    capsys.readouterr()
    code = main(["report", *SPAN, "--data", "out", "--output", "report.html"])
    assert code == 0, capsys.readouterr().err
    page = (workdir / "report.html").read_text()
    assert f"{rows:,}" in page or str(rows) in page

    # compact: one file an hour afterwards, the rows unchanged
    capsys.readouterr()
    code = main(["compact", "--start", "2026-11-01", "--end", "2026-11-01", "--output", "out"])
    assert code == 0, capsys.readouterr().err
    assert _rows(table) == rows

    # extract with no format: follows the table, writes no NDJSON folder inside it
    code, _, err = _extract(capsys, "--force")
    assert code == 0, err
    assert not list(table.rglob("*.json.gz")) and not list(table.glob("date=*/hour=*/*.json"))
    assert _rows(table) == rows


@pytest.mark.parametrize(
    ("fmt", "other"),
    [("ndjson", "gzip"), ("gzip", "parquet"), ("parquet", "ndjson"), ("delta", "parquet")],
)
def test_an_output_made_before_markers_is_recognised_then_recorded(
    workdir: Path, capsys: pytest.CaptureFixture[str], fmt: str, other: str
) -> None:
    code, _, err = _extract(capsys, "--format", fmt)
    assert code == 0, err
    root = workdir / "out"
    (root / "website" / MARKER_NAME).unlink()  # as an older async-amp left it

    # reading commands recognise it and write nothing
    code, out, _ = _run(capsys, "verify", "--json")
    assert code == 0, out
    assert not (root / "website" / MARKER_NAME).exists()

    code, out, err = _extract(capsys, "--format", other)
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert f"holds {fmt} output (recognised from its files)" in err

    code, _, err = _extract(capsys)  # no format: the recognised one, now recorded
    assert code == 0, err
    marker = _marker(root)
    assert marker["format"] == fmt and marker["recognised"] is True


def test_a_fresh_output_with_no_format_is_ndjson(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _extract(capsys)
    assert code == 0, err
    assert _marker(workdir / "out")["format"] == "ndjson"
    assert (workdir / "out" / "website" / f"date={DAY1:%Y-%m-%d}" / "hour=00").is_dir()


# --- the same on Azure (Azurite) and S3 (moto's server): the CLI as a child process ------------


async def _mix_refused(
    cwd: Path, env: dict[str, str], read_marker: Any, secrets: list[str]
) -> None:
    """Extract gzip, then ask for parquet on the same root: one line, exit 2, nothing written."""
    with cli(cwd, env, "2026-11-01T00", "2026-11-01T01", "--format", "gzip") as proc:
        _, err = await communicate(proc, 120)
    assert proc.returncode == 0, err
    marker = json.loads(await read_marker())
    assert marker["format"] == "gzip" and marker["project"] == "website"
    line, _ = await expect_user_error(
        cwd, {**env, "ASYNC_AMP_OUTPUT_FORMAT": "parquet"}, "holds gzip output", secrets
    )
    assert "recorded in _async_amp.json" in line and "prefix" in line, line
    assert json.loads(await read_marker()) == marker


@pytest.mark.anyio
async def test_a_format_mix_is_refused_on_azure(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    async def read_marker() -> bytes:
        async with BlobServiceClient.from_connection_string(azurite.connection_string) as svc:
            blob = svc.get_blob_client(azure_container, f"amplitude/website/{MARKER_NAME}")
            return await (await blob.download_blob()).readall()

    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        env = e2e_env(
            sim.base_url,
            ASYNC_AMP_OUTPUT_SINK="azure",
            ASYNC_AMP_AZURE_CONTAINER=azure_container,
            AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        )
        await _mix_refused(tmp_path, env, read_marker, [azurite.account_key])


@pytest.mark.anyio
async def test_a_format_mix_is_refused_on_s3(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path
) -> None:
    async def read_marker() -> bytes:
        async with admin_client(s3_server) as client:
            answer = await client.get_object(
                Bucket=s3_bucket, Key=f"amplitude/website/{MARKER_NAME}"
            )
            async with answer["Body"] as body:
                data: bytes = await body.read()
                return data

    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        env = e2e_env(
            sim.base_url,
            ASYNC_AMP_OUTPUT_SINK="s3",
            ASYNC_AMP_S3_BUCKET=s3_bucket,
            ASYNC_AMP_S3_ENDPOINT_URL=s3_server.endpoint_url,
            ASYNC_AMP_S3_ADDRESSING_STYLE="path",
            ASYNC_AMP_S3_RETRIES="1",
            **s3_server.admin.environ(),
        )
        await _mix_refused(tmp_path, env, read_marker, [s3_server.admin.secret_access_key])
