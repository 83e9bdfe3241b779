"""``async-amp status`` and ``async-amp verify``: read back what extractions stored.

A thin shell over ``async_amp.status`` and ``async_amp.verify`` (which read the sink without
``prepare()``: nothing is written, read-only credentials do): parse the range, load the config,
print the report as text or JSON, and map it to an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from ...errors import StorageError
from ...extraction.plan import hour_runs
from ...extraction.results import StatusResult, VerifyResult
from ...hours import iso_hour
from ...readback.status import LEGEND

if TYPE_CHECKING:
    from ...readback import StatusReport, VerifyReport
from ..options import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    add_project_option,
    add_range_options,
    add_storage_options,
    environment,
    load,
    now,
    parse_range,
    positive_int,
)

__all__ = ["ORDER", "register", "render_status", "render_verify"]

ORDER = 40

STATUS_EPILOG = """\
examples:
  async-amp status --start 2026-11-01 --end 2026-11-30
  async-amp status --start -7d --end -0d --json > status.json
  async-amp status --start 2026-11-01 --end 2026-11-07 --sink azure --config prod.toml

strip: one character per UTC hour of the day, 00 to 23:
  # complete   . empty (Amplitude had no data)   - missing (run extract)
  ' ' not yet available (availability_lag_hours)   ! unreadable manifest   _ outside the range

exit codes: 0 the status was read (whatever it shows); 1 the storage could not be read;
2 usage or config error.
"""

VERIFY_EPILOG = """\
examples:
  async-amp verify --start 2026-11-01 --end 2026-11-30
  async-amp verify --start -2d --end -1d --json > verify.json
  async-amp verify --start 2026-11-01 --end 2026-11-07 --sink azure --concurrency 8

Every stored file of every hour that has a manifest is read again (streamed, never held
whole); its size, sha256 and event count (lines; a kept .json.gz is gunzipped to count them)
are compared with the manifest. Files listed but not stored, files stored but not listed, and
files in hours without a manifest are reported too. Hours without a manifest are otherwise
'async-amp status' business. Run it when no extraction writes the same hours.

exit codes: 0 everything matches; 1 at least one problem (each is listed); 2 usage or config
error.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status`` and ``verify`` to the CLI's subcommands."""
    status = commands.add_parser(
        "status",
        help="which hours are complete, empty, missing or not yet available "
        "(e.g. async-amp status --start 2026-11-01 --end 2026-11-30)",
        description="Read the manifests of every hour from --start to --end (both inclusive, "
        "UTC) and show, per day, how many hours are complete, empty, missing or not yet "
        "available, with a 24-character strip of the day's hours and the events and bytes "
        "the manifests record.",
        epilog=STATUS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_options(status)
    status.set_defaults(handler=_cmd_status)

    check = commands.add_parser(
        "verify",
        help="re-read stored files and check them against their manifests "
        "(e.g. async-amp verify --start 2026-11-01 --end 2026-11-07)",
        description="Re-read every stored file from --start to --end (both inclusive, UTC), "
        "recompute its sha256, size and event count, and report every mismatch, missing "
        "file and unexpected extra file.",
        epilog=VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_options(check)
    check.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="N",
        help="hours checked at once (default 4; e.g. --concurrency 8 on a big Azure range)",
    )
    check.set_defaults(handler=_cmd_verify)


def _add_options(cmd: argparse.ArgumentParser) -> None:
    add_range_options(cmd)
    cmd.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document instead of text (e.g. --json | jq .totals)",
    )
    add_storage_options(cmd, sink_help="where to read from (e.g. --sink azure)")
    add_project_option(
        cmd,
        "only this project (default: every [[projects]] entry, or [amplitude] project); "
        "repeat for several (e.g. --project website)",
    )


# --- handlers -----------------------------------------------------------------------------------


def _report(
    args: argparse.Namespace,
    work: Callable[..., StatusResult | VerifyResult],
    out: TextIO | None,
    render: Callable[[Any], str],
    **kwargs: Any,
) -> StatusResult | VerifyResult | None:
    """Read the reports and print them (JSON or text); None, with one line on stderr, when the
    storage could not be read."""
    environ = environment()
    moment = now(environ)
    first, last = parse_range(args, moment)
    config = load(args, environ)
    assert first is not None and last is not None  # both are required options here
    try:
        result = work(config, start=first, end=last, project=args.project, now=moment, **kwargs)
    except StorageError as exc:
        print(f"async-amp: error: {exc}", file=sys.stderr)
        return None
    stdout = out or sys.stdout
    if args.json:
        print(json.dumps(result.to_json(), indent=2), file=stdout)
    else:
        stdout.write("\n".join(render(r) for r in result.projects))
    return result


def _cmd_status(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from ... import api  # noqa: PLC0415 - the library loads only for the command run

    result = _report(args, api.status_sync, out, render_status)
    return EXIT_INCOMPLETE if result is None else EXIT_OK


def _cmd_verify(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from ... import api  # noqa: PLC0415 - see _cmd_status

    result = _report(args, api.verify_sync, out, render_verify, concurrency=args.concurrency)
    return EXIT_OK if isinstance(result, VerifyResult) and result.ok else EXIT_INCOMPLETE


# --- text forms -----------------------------------------------------------------------------


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _span(first: datetime, last: datetime) -> str:
    return f"{first:%Y-%m-%dT%H} .. {last:%Y-%m-%dT%H} UTC"


def _extract_hint(hours: list[datetime], *, force: bool, limit: int = 5) -> list[str]:
    runs = hour_runs(hours)
    flag = " --force" if force else ""
    lines = [
        f"    async-amp extract --start {a:%Y-%m-%dT%H} --end {b:%Y-%m-%dT%H}{flag}"
        for a, b in runs[:limit]
    ]
    if len(runs) > limit:
        lines.append(f"    ... and {len(runs) - limit} more ranges (see --json)")
    return lines


def render_status(report: StatusReport) -> str:
    """The text form of ``async-amp status``."""
    lines = [
        f"async-amp status: project {report.project!r} in {report.where}",
        f"  {_span(report.first, report.last)}; available up to "
        f"{report.available_until:%Y-%m-%dT%H} (availability_lag_hours = {report.lag_hours})",
        "",
        f"  {'day':<12}{'complete':>9}{'empty':>7}{'missing':>9}{'not yet':>9}"
        f"{'events':>13}{'stored MB':>10}  hours (UTC)",
        f"  {'':<12}{'':>9}{'':>7}{'':>9}{'':>9}{'':>13}{'':>10}  |00    06    12    18    |",
    ]
    for day in report.days:
        invalid = day.count("invalid")
        lines.append(
            f"  {day.day.isoformat():<12}{day.count('complete'):>9}{day.count('empty'):>7}"
            f"{day.count('missing'):>9}{day.count('not_available'):>9}{day.events:>13,}"
            f"{day.bytes / 1e6:>10,.1f}  |{day.strip}|"
            + (f" {invalid} unreadable" if invalid else "")
        )
    lines.append(
        f"  {'total':<12}{report.count('complete'):>9}{report.count('empty'):>7}"
        f"{report.count('missing'):>9}{report.count('not_available'):>9}{report.events:>13,}"
        f"{report.bytes / 1e6:>10,.1f}"
    )
    received = sum(h.received_bytes for h in report.hours)
    ndjson = sum(h.ndjson_bytes for h in report.hours)
    if received or ndjson:  # hours committed before these were recorded have neither
        lines.append(
            f"  received {received / 1e6:,.1f} MB of archives from Amplitude, "
            f"{ndjson / 1e6:,.1f} MB of NDJSON, stored {report.bytes / 1e6:,.1f} MB"
        )
    keys = [f"{c!r} {text}" for c, text in LEGEND.items()]
    lines += ["", "  legend: " + "  ".join(keys[:3]), "          " + "  ".join(keys[3:])]
    missing = report.hours_in("missing")
    if missing:
        lines += ["", f"  {_n(len(missing), 'hour')} missing; to extract them:"]
        lines += _extract_hint(missing, force=False)
    kept = [h for h in report.hours if h.quarantined]
    if kept:
        lines += [
            "",
            f"  {_n(len(kept), 'hour')} with lines that could not become rows, "
            "kept verbatim in the hour's _quarantine.ndjson:",
        ]
        lines += [f"    {iso_hour(h.hour)}: {_n(h.quarantined, 'line')}" for h in kept[:10]]
    invalid_hours = [h for h in report.hours if h.state == "invalid"]
    if invalid_hours:
        lines += ["", f"  {_n(len(invalid_hours), 'hour')} with an unreadable manifest:"]
        lines += [f"    {iso_hour(h.hour)}: {h.detail}" for h in invalid_hours[:10]]
        lines.append("  re-extract them with:")
        lines += _extract_hint([h.hour for h in invalid_hours], force=True)
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    text = str(value)
    return text[:12] + "..." if len(text) == 64 else text  # a sha256: enough to tell apart


def render_verify(report: VerifyReport) -> str:
    """The text form of ``async-amp verify``."""
    lines = [
        f"async-amp verify: project {report.project!r} in {report.where}",
        f"  {_span(report.first, report.last)}: {_n(report.checked, 'hour')} checked, "
        f"{_n(report.files, 'file')}, {report.bytes / 1e6:,.1f} MB, {report.events:,} events "
        f"in {report.seconds:.1f} s",
    ]
    if report.without_manifest:
        lines.append(
            f"  {_n(report.without_manifest, 'hour')} without a manifest, not checked "
            "(see 'async-amp status')"
        )
    kept = report.quarantined
    if kept:
        lines.append(
            f"  {_n(sum(h.quarantined for h in kept), 'line')} in {_n(len(kept), 'hour')} "
            "could not become rows and are kept verbatim (dead letters):"
        )
        lines += [
            f"    {iso_hour(h.hour)}: {_n(h.quarantined, 'line')} in {h.quarantine}"
            for h in kept[:10]
        ]
        if len(kept) > 10:
            lines.append(f"    and {_n(len(kept) - 10, 'hour')} more (--json lists them all)")
    if report.ok:
        lines.append("  OK: every stored file matches its manifest")
        return "\n".join(lines) + "\n"
    problems = report.problems
    lines += ["", f"  {_n(len(problems), 'problem')} in {_n(len(report.bad_hours), 'hour')}:"]
    for p in problems:
        where = f"{p.file}: " if p.file else ""
        found = ""
        if p.expected is not None or p.actual is not None:
            found = f" (manifest {_show(p.expected)}, stored {_show(p.actual)})"
            if p.kind == "manifest":
                found = f" (expected {_show(p.expected)}, found {_show(p.actual)})"
        lines.append(f"  {iso_hour(p.hour)}  {p.kind:<10} {where}{p.detail}{found}")
    lines += ["", "  to replace the data of those hours with a fresh extraction:"]
    lines += _extract_hint(report.bad_hours, force=True)
    return "\n".join(lines) + "\n"
