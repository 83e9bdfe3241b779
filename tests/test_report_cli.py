"""``async-amp report`` and ``async_amp.report_sync``: the file, the progress, the errors."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

import async_amp
from async_amp.cli import main

from .helpers import isolate_cli
from .report_lake import FIRST, LAST, NOW, shared_lake

RANGE = ["--start", f"{FIRST:%Y-%m-%dT%H}", "--end", f"{LAST:%Y-%m-%dT%H}"]


def test_cli_writes_the_page_and_prints_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_NOW=NOW.isoformat())
    lake = shared_lake()
    out = tmp_path / "site" / "amplitude.html"
    code = main(["report", *RANGE, "--output", str(lake.root), "--html", str(out)])
    printed = capsys.readouterr()
    assert code == 0
    assert printed.out.startswith(f"report: {out.resolve()} (")
    assert "192 hours" in printed.out
    assert "scanning hours" not in printed.err  # no progress bar when stderr is no terminal
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and 'id="calendar"' in page
    assert len(page.encode()) < 5_000_000


def test_the_older_spellings_still_work_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report --output`` named the page and ``--data`` the folder, where every other
    command's ``--output`` is the data folder; both older spellings still work."""
    isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_NOW=NOW.isoformat())
    lake = shared_lake()
    out = tmp_path / "old.html"
    code = main(["report", *RANGE, "--data", str(lake.root), "--output", str(out)])
    printed = capsys.readouterr()
    assert code == 0 and out.is_file()
    assert printed.out.startswith(f"report: {out.resolve()} (")
    assert printed.err.splitlines() == [
        f"async-amp: warning: report --output {out} is now --html {out}: --output names the "
        "data folder, as in every command",
        f"async-amp: warning: report --data {lake.root} is now --output {lake.root}, as in "
        "every command",
    ]


def test_cli_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    """stderr is a pseudo-terminal: the progress bar is drawn there while hours are scanned."""
    lake = shared_lake()
    out = tmp_path / "r.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AMP_"))}
    env |= {"ASYNC_AMP_NOW": NOW.isoformat(), "COLUMNS": "120", "TERM": "xterm"}
    parent, child = pty.openpty()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "async_amp",
            "report",
            *RANGE,
            "--output",
            str(lake.root),
            "--html",
            str(out),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=child,
        cwd=tmp_path,
        env=env,
    ) as process:
        os.close(child)
        seen = b""
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        stdout = process.stdout.read() if process.stdout else b""
    os.close(parent)
    assert process.returncode == 0, seen.decode(errors="replace")
    assert b"scanning hours" in seen
    assert b"report: " in stdout and out.is_file()


def test_api_writes_the_page_and_prints_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    lake = shared_lake()
    config = async_amp.load_config(environ={"ASYNC_AMP_OUTPUT_DIR": str(lake.root)})
    seen: list[int] = []
    result = async_amp.report_sync(
        config,
        start=FIRST,
        end=LAST,
        output=tmp_path / "r.html",
        now=NOW,
        on_progress=lambda p: seen.append(p.hours_done),
    )
    assert capfd.readouterr() == ("", "")
    assert result.path.read_bytes().__len__() == result.bytes
    assert len(result.report.hours) == 192
    assert seen and seen[-1] == 192 and seen == sorted(seen)


def test_bad_output_and_missing_data_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate_cli(tmp_path, monkeypatch)
    lake = shared_lake()
    assert main(["report", *RANGE, "--output", str(lake.root), "--html", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"async-amp: error: {tmp_path} is a folder: name the HTML file (e.g. --html {tmp_path / 'report.html'})"
    )
    assert main(["report", *RANGE, "--output", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing was extracted there; pass --output DIR" in err and "\n" not in err


def test_several_projects_need_one_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate_cli(tmp_path, monkeypatch, A_KEY="k1", A_SECRET="s1", B_KEY="k2", B_SECRET="s2")
    (tmp_path / "config.toml").write_text(
        '[[projects]]\nname = "website"\napi_key_env = "A_KEY"\nsecret_key_env = "A_SECRET"\n'
        '[[projects]]\nname = "app"\napi_key_env = "B_KEY"\nsecret_key_env = "B_SECRET"\n'
    )
    lake = shared_lake()
    assert main(["report", *RANGE, "--output", str(lake.root)]) == 2
    assert "pick one with --project NAME" in capsys.readouterr().err
    out = tmp_path / "w.html"
    assert (
        main(
            [
                "report",
                *RANGE,
                "--output",
                str(lake.root),
                "--project",
                "website",
                "--html",
                str(out),
            ]
        )
        == 0
    )
    assert out.is_file()


def test_an_unreadable_data_file_is_one_line_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stored file that is not NDJSON (damaged after its manifest was written)."""
    from async_amp.output.manifest import FileEntry, Manifest, hour_folder

    isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_NOW=NOW.isoformat())
    folder = tmp_path / "data" / hour_folder("website", FIRST)
    folder.mkdir(parents=True)
    (folder / "187520_2026-11-02_0#0.json").write_bytes(b'{"uuid": "a"}\n<html>oops</html>\n')
    entry = FileEntry("187520_2026-11-02_0#0.json", 33, 2, "0" * 64)
    manifest = Manifest(FIRST, "complete", (entry,), 1, NOW)
    (folder / "_manifest.json").write_bytes(manifest.dumps())
    code = main(["report", *RANGE, "--output", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("async-amp: error: cannot read the data of 2026-11-02T00 to 00: ")
    assert "\n" not in err and "Traceback" not in err
