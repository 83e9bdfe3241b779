"""``async-amp report``: one self-contained HTML page about what was extracted, and what it says.

``build_report`` scans stored hours through the ``Sink`` read-back protocol and aggregates them
per hour and per day in DuckDB (memory follows one day, never the range); ``render_html``
turns the resulting ``Report`` into one HTML file with inline CSS and SVG.
"""

from __future__ import annotations

from .build import ScanProgress, build_report
from .model import Report
from .page import render_html

__all__ = ["Report", "ScanProgress", "build_report", "render_html"]
