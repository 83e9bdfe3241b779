"""The pure steps of the orchestration layer, tested directly, without HTTP: judging an hour,
grouping a window's members, the retry decision and its backoff, the manifest of an hour."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from async_amp.backoff import MAX_RETRY_AFTER_S, backoff_delay
from async_amp.errors import ConnectFailedError
from async_amp.extraction.commit import manifest_for
from async_amp.extraction.guard import RunGuard
from async_amp.extraction.judge import by_hour, judge_hour, missing_pages
from async_amp.extraction.limiter import AdaptiveLimiter
from async_amp.extraction.retry import RetryPlan, plan_retry
from async_amp.hours import MemberName
from async_amp.output.manifest import FileEntry
from async_amp.output.stores.azure_retry import BoundedRetry
from async_amp.source.archive import ProcessedMember

from .helpers import DAY1

H0, H1, H2 = DAY1, DAY1 + timedelta(hours=1), DAY1 + timedelta(hours=2)


def _member(hour_offset: int, page: int, events: int = 10) -> ProcessedMember:
    hour = DAY1 + timedelta(hours=hour_offset)
    base = f"1_{hour:%Y-%m-%d}_{hour.hour}#{page}.json.gz"
    return ProcessedMember(
        member=MemberName(project_id="1", hour=hour, page=page, base_name=base),
        entry=FileEntry(name=base.removesuffix(".gz"), bytes=100, events=events, sha256="0" * 64),
    )


# --- judge ------------------------------------------------------------------------------------


def test_a_whole_hour_or_an_unknown_page_count_is_committed() -> None:
    assert (
        judge_hour(frozenset({0, 1, 2}), expected=3, no_data=False, previous_short=None).action
        == "commit"
    )
    assert (
        judge_hour(frozenset({0}), expected=0, no_data=False, previous_short=None).action
        == "commit"
    )


def test_a_404_is_an_empty_hour_never_a_short_one() -> None:
    verdict = judge_hour(frozenset(), expected=3, no_data=True, previous_short=None)
    assert verdict.action == "commit" and not verdict.warnings


def test_a_short_hour_is_asked_again_then_accepted_when_the_answer_repeats() -> None:
    first = judge_hour(frozenset({0, 2}), expected=3, no_data=False, previous_short=None)
    assert first.action == "retry"
    assert first.problem == "2 of 3 pages, partition #1 absent"
    other = judge_hour(frozenset({0}), expected=3, no_data=False, previous_short=frozenset({0, 2}))
    assert other.action == "retry"  # a different short answer is not a repeat
    same = judge_hour(
        frozenset({0, 2}), expected=3, no_data=False, previous_short=frozenset({0, 2})
    )
    assert same.action == "commit"
    assert same.warnings == (
        "accepted after two identical short attempts: 2 of 3 pages, partition #1 absent",
    )


def test_missing_pages_names_them_whether_numbering_starts_at_0_or_1() -> None:
    assert missing_pages(frozenset({1, 3}), 3) == "2 of 3 pages, partition #2 absent"
    assert missing_pages(frozenset(), 2) == "0 of 2 pages, partitions #0, #1 absent"


def test_by_hour_groups_members_in_page_order_and_keeps_hours_without_data() -> None:
    grouped = by_hour([H0, H1, H2], [_member(2, 1), _member(0, 0), _member(2, 0)])
    assert [[m.member.page for m in grouped[h]] for h in (H0, H1, H2)] == [[0], [], [0, 1]]
    assert by_hour([H0], None) == {H0: []}


# --- retry -------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_capped_and_never_undercuts_retry_after() -> None:
    rng = random.Random(7)
    delays = [
        backoff_delay(3, base_s=1.0, max_s=60.0, retry_after=None, rng=rng) for _ in range(200)
    ]
    assert min(delays) >= 0 and max(delays) <= 4.0 and max(delays) > 2.0
    capped = [
        backoff_delay(20, base_s=1.0, max_s=5.0, retry_after=None, rng=rng) for _ in range(50)
    ]
    assert max(capped) <= 5.0
    assert backoff_delay(1, base_s=1.0, max_s=60.0, retry_after=30.0, rng=rng) >= 30.0
    assert backoff_delay(1, base_s=1.0, max_s=60.0, retry_after=1e9, rng=rng) == MAX_RETRY_AFTER_S


def test_equal_jitter_waits_between_half_and_all_of_a_ceiling_that_doubles_to_the_cap() -> None:
    def delays(attempt: int, seed: int = 3, n: int = 300, **kw: float) -> list[float]:
        rng = random.Random(seed)
        base_s, max_s = kw.get("base_s", 0.5), kw.get("max_s", 30.0)
        return [
            backoff_delay(attempt, base_s=base_s, max_s=max_s, rng=rng, jitter="equal")
            for _ in range(n)
        ]

    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (500, 30.0)]:
        got = delays(attempt)
        assert ceiling / 2 <= min(got) and max(got) <= ceiling, attempt
        # the whole half-open band is used, not one end of it
        assert min(got) < ceiling * 0.55 and max(got) > ceiling * 0.95, attempt
    assert delays(4) == delays(4)  # a seeded rng gives the same waits
    assert delays(4, seed=3) != delays(4, seed=4)
    assert delays(3, base_s=0.0) == [0.0] * 300  # no backoff configured: no wait
    assert delays(3, max_s=0.25) == delays(9, max_s=0.25)  # both at the cap: the same waits
    assert delays(2**20) == delays(200)  # far past the cap: the cap, no overflow
    full = [backoff_delay(3, base_s=0.5, max_s=30.0, rng=random.Random(3)) for _ in range(300)]
    assert min(full) < 0.5  # the default stays full jitter (from 0)


def test_the_azure_retry_policy_backs_off_by_equal_jitter() -> None:
    policy = BoundedRetry(retries=5, first_s=0.2, max_s=1.0)
    for count, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        waits = [policy.get_backoff_time({"count": count}) for _ in range(100)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling, count


@pytest.mark.anyio
async def test_the_guards_probes_back_off_by_equal_jitter_doubling_per_failed_probe() -> None:
    waits: list[float] = []

    class Recorded(RunGuard):
        async def sleep(self, seconds: float) -> bool:
            waits.append(seconds)
            return self.stop is None

    guard = Recorded(max_probes=4, backoff_base_s=1.0, backoff_max_s=3.0, rng=random.Random(5))
    slots = AdaptiveLimiter(1)
    error = ConnectFailedError("connection refused (h:1)")
    guard.connect_failed(error)  # the breaker opens
    for _ in range(3):
        admission, _ = await guard.admit(slots.acquire, slots.release)
        assert admission == "probe"
        slots.release()
        guard.connect_failed(error, probe=True)
    assert guard.stopped is False
    assert [round(w, 6) for w in waits] == [
        round(backoff_delay(n, base_s=1.0, max_s=3.0, rng=rng, jitter="equal"), 6)
        for rng in [random.Random(5)]
        for n in (1, 2, 3)
    ]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 1.5 <= waits[2] <= 3.0


def _plan(
    attempts: dict[datetime, int], *, alone: bool = False, max_attempts: int = 3
) -> RetryPlan:
    return plan_retry(
        list(attempts),
        attempts,
        max_attempts=max_attempts,
        alone=alone,
        retry_after=None,
        base_s=0.0,
        max_s=0.0,
        rng=random.Random(1),
    )


def test_a_window_goes_again_whole_while_all_its_hours_have_attempts_left() -> None:
    decision = _plan({H0: 1, H1: 1, H2: 2})
    assert decision.groups == ((H0, H1, H2),) and decision.give_up == ()


def test_hours_out_of_attempts_fail_and_the_rest_go_again_alone() -> None:
    decision = _plan({H0: 1, H1: 3, H2: 2})
    assert decision.give_up == (H1,)
    assert decision.groups == ((H0,), (H2,))
    assert decision.again == (H0, H2)


def test_alone_splits_a_window_and_nothing_left_means_no_delay() -> None:
    assert _plan({H0: 1, H1: 1}, alone=True).groups == ((H0,), (H1,))
    spent = _plan({H0: 3})
    assert spent.groups == () and spent.give_up == (H0,) and spent.delay == 0.0


# --- commit ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "status"), [([], "empty"), ([_member(0, 0), _member(0, 1, 5)], "complete")]
)
def test_the_manifest_of_an_hour(members: list[ProcessedMember], status: str) -> None:
    manifest = manifest_for(H0, members, attempts=2, run_id="r", warnings=("w",))
    assert manifest.status == status
    assert manifest.events == sum(m.entry.events for m in members)
    assert [f.name for f in manifest.files] == [m.entry.name for m in members]
    assert (manifest.attempts, manifest.run_id, manifest.warnings) == (2, "r", ("w",))
