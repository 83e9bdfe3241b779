"""Pure pieces: hour parsing, member names, planning, config validation, sanitising."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from async_amp.config.load import load_config, load_credentials
from async_amp.errors import ConfigError, CredentialsError
from async_amp.extraction.limiter import AdaptiveLimiter
from async_amp.extraction.plan import make_plan
from async_amp.hours import (
    amplitude_param,
    available_until,
    hour_range,
    parse_bound,
    parse_member_name,
)
from async_amp.source.export_api import parse_retry_after, sanitize

H = datetime(2026, 11, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "is_end", "expected"),
    [
        ("2026-11-01", False, datetime(2026, 11, 1, 0, tzinfo=UTC)),
        ("2026-11-01", True, datetime(2026, 11, 1, 23, tzinfo=UTC)),
        ("2026-11-01T05", False, H),
        ("2026-11-01T05", True, H),
        ("20261101T05", True, H),
        ("2026-11-01T5", False, H),
        ("2026-11-01T05:00:00Z", False, H),
    ],
)
def test_parse_bound(text: str, is_end: bool, expected: datetime) -> None:
    assert parse_bound(text, is_end=is_end) == expected


def test_relative_bounds_count_whole_days_back() -> None:
    now = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)
    assert parse_bound("-7d", is_end=False, now=now) == datetime(2026, 11, 19, tzinfo=UTC)
    assert parse_bound("-1d", is_end=True, now=now) == datetime(2026, 11, 25, 23, tzinfo=UTC)
    assert parse_bound("-3h", is_end=True, now=now) == datetime(2026, 11, 26, 10, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-13-01", "2026-02-30", "yesterday", "2026-11-01T24", ""])
def test_bad_bounds_say_what_forms_work(text: str) -> None:
    with pytest.raises(ConfigError, match=r"YYYY-MM-DD|not a real date"):
        parse_bound(text, is_end=False)


def test_whole_day_is_24_hours_both_ends_inclusive() -> None:
    first = parse_bound("2026-11-01", is_end=False)
    last = parse_bound("2026-11-01", is_end=True)
    hours = list(hour_range(first, last))
    assert len(hours) == 24
    assert [amplitude_param(h) for h in (hours[0], hours[-1])] == ["20261101T00", "20261101T23"]


def test_member_names_parse_unpadded_hours() -> None:
    m = parse_member_name("187520/187520_2020-01-25_17#0.json.gz")
    assert (m.hour, m.page, m.project_id) == (datetime(2020, 1, 25, 17, tzinfo=UTC), 0, "187520")
    assert parse_member_name("1/1_2020-01-25_5#12.json.gz").hour.hour == 5


@pytest.mark.parametrize(
    "name",
    [
        "1/1_2020-01-25_24#0.json.gz",
        "1/1_2020-02-30_5#0.json.gz",
        "1/1_2020-01-25_5.json.gz",
        "1/2/1_2020-01-25_5#0.json.gz",
        "1_2020-01-25_5#0.json.gz",
    ],
)
def test_bad_member_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_member_name(name)


def test_availability_lag_follows_amplitude_rule() -> None:
    # "data sent 8-9 PM is available at 11 PM"
    assert available_until(datetime(2026, 11, 1, 23, 0, tzinfo=UTC), 2).hour == 20
    assert available_until(datetime(2026, 11, 1, 22, 59, tzinfo=UTC), 2).hour == 19


def test_plan_puts_every_hour_in_exactly_one_list() -> None:
    first, last = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 23, tzinfo=UTC)
    done = {datetime(2026, 11, 1, 3, tzinfo=UTC)}
    plan = make_plan(
        first, last, done=done, now=datetime(2026, 11, 1, 12, 10, tzinfo=UTC), lag_hours=2
    )
    assert plan.done == (datetime(2026, 11, 1, 3, tzinfo=UTC),)
    assert plan.to_fetch[-1].hour == 9 and len(plan.to_fetch) == 9
    assert len(plan.not_available) == 14
    assert len(plan.to_fetch) + len(plan.done) + len(plan.not_available) == 24


def test_config_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(tmp_path / "missing.toml", environ={})
    assert config.extract.concurrency == 4
    assert config.amplitude.url == "https://amplitude.com"


def test_config_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[extract]\nconcurrency = 2\nmax_attempts = 3\n[amplitude]\nregion = 'eu'\n")
    env = {"ASYNC_AMP_EXTRACT_CONCURRENCY": "6", "ASYNC_AMP_EXTRACT_MAX_ATTEMPTS": "7"}
    config = load_config(path, environ=env, overrides={"extract": {"concurrency": 9}})
    assert config.extract.concurrency == 9
    assert config.extract.max_attempts == 7
    assert config.amplitude.url == "https://analytics.eu.amplitude.com"


def test_config_reports_every_problem_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[extract]\nconcurency = 2\nmax_attempts = 0\nread_timeout_s = 'soon'\n"
        "[amplitude]\nregion = 'mars'\n[outptu]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert "5 problems" in message
    assert "did you mean 'concurrency'" in message
    assert "max_attempts must be between 1 and 100, not 0" in message
    assert "region must be one of 'us', 'eu', not 'mars'" in message
    assert "read_timeout_s must be a number" in message
    assert "unknown section [outptu] (did you mean 'output'?)" in message


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("[extract]\nconcurrency = true\n", "whole number"),
        ("[extract]\nconcurrency = -1\n", "between 1 and 64"),
        ("[amplitude]\nbase_url = 'ftp://x'\n", "http"),
        ("[amplitude]\nbase_url = 'https://key:secret@host'\n", "credentials"),
        ("[amplitude]\nproject = '../x'\n", "folder name"),
        ("[output]\nkeep_gzip = 'maybe'\n", "true or false"),
        ("[azure]\ncontainer = 'Bad_Name'\n", "lowercase"),
        ("[extract]\nbackoff_base_s = 10\nbackoff_max_s = 1\n", "backoff_max_s"),
        ("[output]\nsink = 'azure'\n", "account_url"),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_bad_config_values_get_clear_errors(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=match):
        load_config(path, environ={})


def test_unknown_environment_variable_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ASYNC_AMP_EXTRACT_CONCURENCY"):
        load_config(None, environ={"ASYNC_AMP_EXTRACT_CONCURENCY": "3"})


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml", environ={}, required=True)


def test_credentials_come_from_the_environment_and_never_show() -> None:
    creds = load_credentials({"AMP_API_KEY": "k123", "AMP_SECRET_KEY": "s456"})
    assert "k123" not in repr(creds) and "s456" not in repr(creds)
    with pytest.raises(CredentialsError, match="AMP_SECRET_KEY"):
        load_credentials({"AMP_API_KEY": "k123"})


def test_sanitize_shortens_and_removes_secrets() -> None:
    text = "<html><body><h1>Error</h1> key s3cr3t leaked &amp; more " + "x" * 500 + "</body>"
    clean = sanitize(text, ["s3cr3t"])
    assert "s3cr3t" not in clean and "<" not in clean and len(clean) <= 160
    assert "sig=***" in sanitize("url?sig=abcdef&x=1")


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Sun, 01 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.anyio
async def test_adaptive_limiter_cuts_once_per_burst_and_recovers() -> None:
    limiter = AdaptiveLimiter(16, recover_after=2)
    epochs = [limiter.epoch] * 16  # sixteen requests sent together
    # their sixteen 429s are one signal: one cut, not 16 -> 12 -> 9 -> ... -> 1
    bounds = [limiter.throttled(e) for e in epochs]
    assert bounds == [12] * 16 and limiter.throttle_events == 16
    newer = await limiter.acquire()
    assert limiter.in_flight == 1
    assert limiter.throttled(newer) == 9  # a request sent after the cut cuts again
    limiter.release()
    for _ in range(9):
        assert limiter.throttled() >= 1
    assert limiter.current == 1
    for _ in range(4):
        limiter.succeeded()
    assert limiter.current == 3


_H = datetime(2026, 11, 1, 5, tzinfo=UTC)
HOUR_FILES = {
    # base name: (hour_of, merged_hour_of)
    "187520_2026-11-01_5#0.json.gz": (("187520", _H), None),
    "187520_2026-11-01_05#12.json.gz": (("187520", _H), None),  # a padded hour too
    "1_2028-02-29_23#0.json.gz": (("1", datetime(2028, 2, 29, 23, tzinfo=UTC)), None),
    "-36958_2026-11-01_5.json.gz": (None, ("36958", _H)),
    "-36958_2026-11-01_0.json.gz": (None, ("36958", _H.replace(hour=0))),
    "187520_2026-11-01_5.json.gz": (None, None),  # events without a partition
    "-36958_2026-11-01_5#0.json.gz": (None, None),  # the feed with a partition
    "--36958_2026-11-01_5.json.gz": (None, None),
    "187520_2026-11-01_24#0.json.gz": (None, None),  # no hour 24
    "187520_2026-02-29_5#0.json.gz": (None, None),  # 2026 is no leap year
    "-36958_2026-13-01_5.json.gz": (None, None),
    "187520_2026-11-1_5#0.json.gz": (None, None),  # an unpadded day
    "187520_2026-11-01_123#0.json.gz": (None, None),
    "187520_2026-11-01_5#0.json": (None, None),
    "187520_2026-11-01_5#0.json.gz.tmp": (None, None),
    "187520_2026-11-01_5#.json.gz": (None, None),
    "p187520_2026-11-01_5#0.json.gz": (None, None),
    "\u0661_2026-11-01_5#0.json.gz": (None, None),  # an Arabic-Indic digit is no ID
    "": (None, None),
}


@pytest.mark.parametrize("base", list(HOUR_FILES))
def test_one_parser_names_export_and_merged_id_files(base: str) -> None:
    """``hour_of`` (cloud export), ``merged_hour_of`` (merged-IDs feed) and the Export API's
    ``parse_member_name`` read Amplitude's names with one parser: each accepts its own kind
    only, and a name of no real hour is nobody's."""
    from async_amp.merged.names import merged_hour_of
    from async_amp.source.cloud_export import hour_of

    events, merged = HOUR_FILES[base]
    assert (hour_of(base), merged_hour_of(base)) == (events, merged)
    if events is None:
        with pytest.raises(ValueError, match=r"\S"):
            parse_member_name(f"{base.split('_', maxsplit=1)[0]}/{base}")
    else:
        member = parse_member_name(f"{events[0]}/{base}")
        assert (member.project_id, member.hour) == events
