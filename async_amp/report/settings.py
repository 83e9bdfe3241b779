"""What the report looks for: event names and property keys, with Amplitude browser SDK defaults.

Every list is tried in order and the first present value wins, so one setting covers the
browser SDK's ``[Amplitude] Page Viewed`` events and the common hand-named ones alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError

__all__ = ["ReportSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSettings:
    """The ``[report]`` section: which events and keys the audience and content panels read."""

    page_view_events: tuple[str, ...] = (
        "[Amplitude] Page Viewed",
        "Page Viewed",
        "Blog Post Viewed",
        "page_view",
        "Pageview",
    )
    """Event types counted as page views (visitors, blog posts, the weekday heatmap)."""
    page_path_keys: tuple[str, ...] = ("[Amplitude] Page Path", "page_path", "path")
    """``event_properties`` keys holding the page's path (first present wins)."""
    page_title_keys: tuple[str, ...] = ("blog_post_title", "[Amplitude] Page Title", "page_title")
    """``event_properties`` keys holding a readable name for a page or post."""
    blog_prefix: str = "/blog/"
    """Page paths starting with this are blog posts."""
    source_keys: tuple[str, ...] = (
        "utm_source",
        "referring_domain",
        "[Amplitude] Page Referrer",
        "referrer",
        "initial_utm_source",
        "initial_referring_domain",
    )
    """Keys naming where a visitor came from, in ``event_properties`` then ``user_properties``."""
    company_keys: tuple[str, ...] = ("company_name", "company_domain", "company")
    """``user_properties`` keys naming an identified user's company (the leads table)."""
    time_zone: str = "UTC"
    """IANA time zone of the hour-of-day x weekday heatmap (e.g. "Europe/Berlin")."""
    drop_ratio: float = 0.5
    """An hour below this share of the median of the same hour in earlier weeks is suspicious."""
    top: int = 20
    """Rows in the top lists (blog posts, countries, sources)."""
    leads: int = 25
    """Identified users listed (most recent visit first)."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("page_view_events", "page_path_keys", "page_title_keys", "source_keys"):
            values = getattr(self, name)
            if not values or not all(isinstance(v, str) and v for v in values):
                problems.append(f"[report] {name} must be a non-empty list of names")
        if not self.blog_prefix.startswith("/"):
            problems.append(f'[report] blog_prefix must start with "/", got {self.blog_prefix!r}')
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"[report] time_zone {self.time_zone!r} is not an IANA time zone "
                '(e.g. "Europe/Berlin", "America/New_York", "UTC")'
            )
        if not 0.0 < self.drop_ratio < 1.0:
            problems.append(f"[report] drop_ratio must be between 0 and 1, got {self.drop_ratio}")
        if not 1 <= self.top <= 1000 or not 0 <= self.leads <= 100_000:
            problems.append("[report] top must be 1-1000 and leads 0-100000")
        if problems:
            raise ConfigError("; ".join(problems))
