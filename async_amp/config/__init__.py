"""Configuration: one declaration of every key, read and checked once, every problem in one message.

Precedence, highest first: CLI flag (or an API argument) > environment
(``ASYNC_AMP_<SECTION>_<KEY>``) > ``config.toml`` > default. Credentials come only from the
environment or ``.env``, or are passed to ``load_config`` explicitly. Reading and checking
is ``async_amp.config.load``; this module is the declaration.

The declaration is the section dataclasses below (the storage sections ``[azure]`` and
``[s3]`` in ``storage.py``): each field made with :func:`key` (``keys.py``) is a
config key, with its default, its value check (``async_amp.config.values``), and the text of its
row in ``docs/configuration.md``. Everything else is derived from it: the sections and keys
``load_config`` accepts (with "did you mean" for the rest), the environment variable of each
key, the flag named in errors, the documentation's tables (``make docs`` writes them, a test
fails when they are stale). To add a key, add one field to its section::

    min_rate_kib_s: int = key(0, integer(0), "Abandon a response slower than this (0: never).")

and use ``config.extract.min_rate_kib_s``; ``make docs`` then adds its row to the docs. To add
a section, declare a frozen dataclass of keys, a ``Config`` field for it (``[s3]`` ->
``s3: S3Config = field(default_factory=S3Config)``), and its docs heading ``## [s3]`` followed
by the ``<!-- keys: s3 -->`` marker. Checks across keys go in the section's ``problems``
method. A key that is also a CLI flag passes through ``overrides`` in the CLI (see
``async_amp.cli.options.load``); give it ``flag="--name"`` when the flag is not ``--<key>``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from .keys import Key, key, keys_of
from .models import ModelsConfig
from .storage import AzureConfig, GcsConfig, S3Config, SourceConfig, storage_problems
from .values import (
    api_url,
    boolean,
    choice,
    duration,
    env_name,
    format_name,
    integer,
    names,
    number,
    path,
    project_label,
    text,
    time_zone,
    window,
)

__all__ = [
    "FORMATS",
    "REGION_URLS",
    "SINKS",
    "AmplitudeConfig",
    "AzureConfig",
    "Config",
    "Credentials",
    "ExtractConfig",
    "GcsConfig",
    "Key",
    "ModelsConfig",
    "OutputConfig",
    "ProjectConfig",
    "ReportConfig",
    "S3Config",
    "SourceConfig",
    "key",
    "keys_of",
    "sections",
    "select_projects",
]

REGION_URLS = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
SINKS = ("local", "azure", "s3", "gcs")
FORMATS = ("ndjson", "gzip", "parquet", "delta")


@dataclass(frozen=True, slots=True)
class AmplitudeConfig:
    """``[amplitude]``: the one project to export, when there is no ``[[projects]]``."""

    project: str = key(
        "website",
        project_label,
        "Label of the project in output paths: `<dir>/<project>/date=YYYY-MM-DD/hour=HH/`. A "
        "plain name usable as a folder (no `/`). It is yours to choose; it does not have to "
        "match anything in Amplitude.",
    )
    region: str = key(
        "us",
        choice(*REGION_URLS),
        "Where the project's data lives: `us` calls `https://amplitude.com`, `eu` calls "
        "`https://analytics.eu.amplitude.com`. Keys of one region are refused (403) by the "
        "other.",
    )
    base_url: str | None = key(
        None,
        api_url,
        "Call this host instead of the region's: a proxy, the bundled simulator, tests. "
        "`http://` or `https://`, without credentials in it.",
    )

    @property
    def url(self) -> str:
        """The API host to call: ``base_url`` when set, else the region's host."""
        return (self.base_url or REGION_URLS[self.region]).rstrip("/")


@dataclass(frozen=True, slots=True)
class ExtractConfig:
    """``[extract]``: how the export runs."""

    concurrency: int = key(
        4,
        integer(1, 64),
        "Export requests in flight at once, per project (`--concurrency`). Amplitude allows "
        "about 5 concurrent REST requests per project; the bound halves itself while "
        "Amplitude answers 429/503 and recovers when it stops.",
    )
    max_attempts: int = key(
        5,
        integer(1, 100),
        "Attempts per hour before it is reported failed and the run exits 1 (`--max-attempts`).",
    )
    expected_pages_per_hour: int = key(
        0,
        integer(0, 10_000),
        "Partitions (`#0`, `#1`, ... files) every hour should have; an hour with fewer is "
        "re-asked, and accepted with a warning after two identical short answers "
        "(`--expected-pages`). `0`: unknown, not checked.",
    )
    availability_lag_hours: int = key(
        2,
        integer(0, 24 * 30),
        "Hours that must pass after an hour ends before it is exported: Amplitude makes an "
        'hour exportable about two hours after it ends. Newer hours are "not yet available": '
        "skipped by `extract`, shown blank by `status`.",
    )
    read_timeout_s: float = key(
        120.0,
        number(0, strict=True),
        "Longest silence tolerated in the middle of a response, in seconds; a stalled body is "
        "abandoned and the hour retried.",
    )
    connect_timeout_s: float = key(
        30.0,
        number(0, strict=True),
        "TCP and TLS connect timeout, in seconds.",
    )
    backoff_base_s: float = key(
        1.0,
        number(0),
        'Retry backoff: a random wait ("full jitter") up to `backoff_base_s * 2^(attempt-1)` ...',
    )
    backoff_max_s: float = key(
        60.0,
        number(0),
        "... capped at this many seconds. A server's `Retry-After` is always honoured (up to "
        "15 minutes), even beyond the cap. Must be >= `backoff_base_s`.",
    )
    window_hours: int | Literal["auto"] = key(
        1,
        window,
        "Hours asked for in one export request (`--window-hours`). Every hour is still "
        "checked, committed and retried on its own. Larger windows cost fewer requests for "
        "quiet projects; `auto` asks a few single hours first and sizes the windows from "
        "their volume (at most 7 days or 64 MB of archive each).",
    )
    total_concurrency: int = key(
        0,
        integer(0, 256),
        "With several projects: requests in flight over all of them together. `0`: the sum of "
        "each project's `concurrency`.",
    )
    start: str | None = key(
        None,
        text,
        "Where `extract --since-last` starts when nothing has been extracted yet for a "
        "project, in the `--start` forms (`2026-01-01`, `2026-01-01T05`, `-30d`). Once hours "
        "are stored, `--since-last` continues after the newest one.",
        kind="date or hour",
    )
    max_member_bytes: int = key(
        8 * 1024**3,
        integer(1),
        "Refuse an archive member that expands beyond this many bytes (a decompression bomb); "
        "the hour fails instead of filling the disk.",
        shown="`8589934592` (8 GiB)",
    )
    max_expansion_ratio: int = key(
        200,
        integer(2),
        "... or one that expands more than this many times its compressed size (checked once "
        "a member is past 16 MiB). Real NDJSON compresses about 10-20x.",
    )
    min_rate_kib_s: float = key(
        16.0,
        number(0),
        "A response whose bytes keep arriving but at under this many KiB/s for a whole "
        "`read_timeout_s` (a trickle, which no read timeout catches) is abandoned and the hour "
        "asked again; after `max_attempts` the hour fails with that reason. `0`: never.",
    )
    recheck: timedelta = key(
        timedelta(0),
        duration,
        "Ask complete hours younger than this again (`--recheck`): an hour whose members "
        "differ from its manifest (late or backfilled data) is replaced and logged as "
        "`hour.changed`; an unchanged hour is left exactly as it was. See "
        "[Reliability](reliability.md#hours-that-change-after-the-fact). `0`: never.",
        shown="`0`",
    )
    empty_recheck: timedelta = key(
        timedelta(hours=72),
        duration,
        "An hour the Export API answered 404 (no data) is only tentatively empty while it is "
        "younger than this: when Amplitude processes data late, an hour can answer 404 and "
        "have data later. Such hours are asked again by every later run (a 404 carries no "
        "body: cheap); one that now has data is committed and logged as `hour.late_data`. "
        "`0`: an empty hour is final at once.",
        shown='`"72h"`',
    )

    def problems(self, config: Config, environ: Mapping[str, str]) -> list[str]:
        if self.backoff_max_s < self.backoff_base_s:
            return ["[extract] backoff_max_s must be >= backoff_base_s"]
        return []


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """``[output]``: where the data goes."""

    sink: str = key(
        "local",
        choice(*SINKS),
        "Write to a local folder, to Azure Blob Storage (`--sink`; then see "
        "[`[azure]`](#azure)), to Amazon S3 or an S3-compatible store (then see "
        "[`[s3]`](#s3)) or to Google Cloud Storage (then see [`[gcs]`](#gcs)).",
    )
    dir: Path = key(
        Path("data"),
        path,
        "Local output root (`--output`), relative to the working directory unless absolute; "
        "`~` is expanded.",
    )
    format: str | None = key(
        None,
        format_name(FORMATS),
        "What each hour's folder holds (`--format`); left out: what the output holds "
        "(its `_async_amp.json`), else `ndjson`; another one is refused. `ndjson`: the "
        "`.json` members. `gzip`: Amplitude's `.json.gz` members as sent (10x smaller). "
        "`parquet`: a typed Parquet file per member ([schema.md](schema.md)). `delta`: one "
        "Delta Lake table per project, an hour per commit ([delta.md](delta.md)).",
        shown='(none): the recorded one, else `"ndjson"`',
    )
    keep_gzip: bool = key(
        False,
        boolean,
        'Older spelling of `format = "gzip"`: `true` stores the `.json.gz` members.',
    )
    dedupe: bool = key(
        False,
        boolean,
        'With `format = "parquet"` or `"delta"`: leave out rows whose `uuid` an earlier row '
        "of the same hour already had (Amplitude's exports can repeat events). Counted either "
        "way: the manifest's `duplicate_uuids`.",
    )
    fsync: bool = key(
        True,
        boolean,
        "Flush files and folders to disk before the manifest makes an hour visible, so a "
        "power cut never leaves a manifest over missing data. `false` is faster on throwaway "
        "disks.",
    )
    log_dir: Path = key(
        Path("logs"),
        path,
        "Each `extract` run writes its JSON log lines to `<log_dir>/<run id>.jsonl` (unless "
        "`--log-file` says otherwise).",
    )

    @property
    def data_format(self) -> str:
        """``format``, ``gzip`` for ``keep_gzip = true``, else ``ndjson`` (see output/open.py)."""
        chosen = self.format or "ndjson"
        return "gzip" if self.keep_gzip and chosen == "ndjson" else chosen

    def problems(self, config: Config, environ: Mapping[str, str]) -> list[str]:
        found = storage_problems(self.sink, config.azure, config.s3, config.gcs, environ)
        return found  # the format's own checks: load.format_problems


_PAGE_VIEWS = ("[Amplitude] Page Viewed", "Page Viewed", "Blog Post Viewed", "page_view")
_PATHS = ("[Amplitude] Page Path", "page_path", "path")
_TITLES = ("blog_post_title", "[Amplitude] Page Title", "page_title")
_SOURCES = (
    "utm_source",
    "referring_domain",
    "[Amplitude] Page Referrer",
    "referrer",
    "initial_utm_source",
    "initial_referring_domain",
)
_COMPANIES = ("company_name", "company_domain", "company")


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """``[report]``: what ``async-amp report`` looks for in the events (lists: first found wins).

    The defaults fit Amplitude's browser SDK (``[Amplitude] Page Viewed`` with
    ``[Amplitude] Page Path``) and the common hand-named events and properties.
    """

    page_view_events: tuple[str, ...] = key(
        _PAGE_VIEWS,
        names,
        "Event types that are page views (visitors, blog posts, the weekday heatmap).",
    )
    page_path_keys: tuple[str, ...] = key(
        _PATHS, names, "`event_properties` keys holding the page's path."
    )
    page_title_keys: tuple[str, ...] = key(
        _TITLES,
        names,
        "`event_properties` keys holding a readable name for a page or blog post.",
    )
    blog_prefix: str = key(
        "/blog/", text, "Page paths starting with this are blog posts (must start with `/`)."
    )
    source_keys: tuple[str, ...] = key(
        _SOURCES,
        names,
        "Keys naming where a visitor came from, looked up in `event_properties`, then "
        "`user_properties`; none: `direct`.",
    )
    company_keys: tuple[str, ...] = key(
        _COMPANIES,
        names,
        "`user_properties` keys naming an identified user's company (the leads table).",
    )
    time_zone: str = key(
        "UTC",
        time_zone,
        "Time zone of the hour-of-day x weekday heatmap (left at `UTC`: `[models] time_zone`).",
    )
    drop_ratio: float = key(
        0.5,
        number(0.0, strict=True),
        "An hour below this share of the median of the same hour 1-4 weeks before is flagged "
        "as a suspicious drop (below 1).",
    )
    top: int = key(20, integer(1, 1000), "Rows of the top lists (blog posts, countries...).")
    leads: int = key(25, integer(0, 100_000), "Identified users listed, latest visit first.")

    def problems(self, config: Config, environ: Mapping[str, str]) -> list[str]:
        found = []
        if not self.blog_prefix.startswith("/"):
            found.append(f'[report] blog_prefix must start with "/", not {self.blog_prefix!r}')
        if self.drop_ratio >= 1:
            found.append(f"[report] drop_ratio must be below 1, not {self.drop_ratio}")
        return found


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str
    secret_key: str = field(repr=False)

    def __repr__(self) -> str:
        return "Credentials(api_key='***', secret_key='***')"

    @property
    def basic_token(self) -> str:
        """The HTTP Basic credential: base64 of ``key:secret`` (as secret as the keys)."""
        return base64.b64encode(f"{self.api_key}:{self.secret_key}".encode()).decode("ascii")

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs, errors or files: the keys and the token."""
        return tuple(s for s in (self.api_key, self.secret_key, self.basic_token) if s)


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """One Amplitude project (a ``[[projects]]`` table): its output label, its host, and where
    its keys come from (``credentials``, when given in Python, wins over the variables)."""

    name: str = key(
        MISSING,
        project_label,
        "The project's label in output paths, like `[amplitude] project`; unique.",
    )
    region: str = key(
        "us",
        choice(*REGION_URLS),
        "As `[amplitude] region`.",
    )
    base_url: str | None = key(
        None,
        api_url,
        "As `[amplitude] base_url`.",
    )
    api_key_env: str = key(
        "AMP_API_KEY",
        env_name,
        "The environment variable holding this project's API key, e.g. `AMP_WEBSITE_API_KEY`.",
        required=True,
    )
    secret_key_env: str = key(
        "AMP_SECRET_KEY",
        env_name,
        "The environment variable holding its secret key.",
        required=True,
    )
    concurrency: int | None = key(
        None,
        integer(1, 64),
        "Requests in flight for this project; default `[extract] concurrency`.",
    )
    credentials: Credentials | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return (self.base_url or REGION_URLS[self.region]).rstrip("/")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Every field made with ``default_factory`` is a section."""

    amplitude: AmplitudeConfig = field(default_factory=AmplitudeConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    azure: AzureConfig = field(default_factory=AzureConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    s3: S3Config = field(default_factory=S3Config)
    gcs: GcsConfig = field(default_factory=GcsConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    projects: tuple[ProjectConfig, ...] = ()
    file: Path | None = None  # the config file read, if any
    credentials: Credentials | None = field(default=None, repr=False, compare=False)
    # the environment the config was read with: credentials and storage keys come from it
    # (None: the process environment and ./.env, read when a run starts)
    environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    def project_list(self) -> tuple[ProjectConfig, ...]:
        """``[[projects]]`` when given, else the single ``[amplitude]`` project."""
        if self.projects:
            return self.projects
        amp = self.amplitude
        return (ProjectConfig(name=amp.project, region=amp.region, base_url=amp.base_url),)


def sections() -> dict[str, type[Any]]:
    """``{"amplitude": AmplitudeConfig, ...}``: every section of ``Config``, in order."""
    return {
        f.name: f.default_factory  # type: ignore[misc]
        for f in fields(Config)
        if f.default_factory is not MISSING
    }


def select_projects(config: Config, names: Sequence[str]) -> tuple[ProjectConfig, ...]:
    """The projects called ``names`` (all of them when empty); unknown names are an error."""
    projects = config.project_list()
    if not names:
        return projects
    known = {p.name: p for p in projects}
    unknown = [n for n in names if n not in known]
    if unknown:
        msg = (
            f"unknown project {', '.join(map(repr, unknown))}: the config has "
            f"{', '.join(map(repr, known))}"
        )
        raise ConfigError(msg)
    return tuple(known[n] for n in dict.fromkeys(names))
