"""Every ```python block of docs/python-api.md, run in order in one namespace against the
simulated Export API, with a config.toml pointing at it: the documented API works as shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from async_amp.simulator.background import BackgroundSimulator

from .helpers import (
    DAY1,
    KEY,
    SECRET,
    assert_output_matches,
    isolate_cli,
    last_hour_of,
    small_dataset,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)


def test_the_page_has_examples() -> None:
    assert len(_blocks()) >= 6


def test_every_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate_cli(tmp_path, monkeypatch)
    dataset = small_dataset(quiet_hours=frozenset({DAY1.replace(hour=7)}))
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        (tmp_path / "config.toml").write_text(
            f'[amplitude]\nbase_url = "{sim.base_url}"\n\n'
            "[extract]\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n\n"
            '[output]\ndir = "data"\nfsync = false\n',
            encoding="utf-8",
        )
        namespace: dict[str, object] = {"__name__": "docs_python_api"}
        for number, block in enumerate(_blocks(), start=1):
            code = compile(block, f"{DOC.name} block {number}", "exec")
            exec(code, namespace)
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "0"  # result.exit_code
    assert "47 1 0 0 " in printed  # two days: complete, empty, failed, skipped, events
    assert "unknown environment variable ASYNC_AMP_EXTRACT_CONCURENCY" in printed
    assert_output_matches(tmp_path / "data", dataset, DAY1, last_hour_of(DAY1, days=2))
