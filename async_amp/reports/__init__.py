"""``async-amp report``: one self-contained HTML page about what was extracted, and what it says.

``report_from_events`` scans the stored hours of a ``ReportScope`` (project, UTC hours, the
current time, ``[report]``) through the ``Sink`` read-back protocol and aggregates them per
hour and per day in DuckDB (memory follows one day, never the range); ``from_models`` answers
the same scope from the model tables; ``render_html`` turns the resulting ``Report`` into one
HTML file with inline CSS and SVG. ``build_report`` is ``report_from_events`` with the
scope's fields given one by one.
"""

from __future__ import annotations

from .build import ScanProgress, build_report, report_from_events
from .model import Report, ReportScope
from .page import render_html

__all__ = [
    "Report",
    "ReportScope",
    "ScanProgress",
    "build_report",
    "render_html",
    "report_from_events",
]
