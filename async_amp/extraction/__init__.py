"""The extraction: an hour's way from the plan to its manifest
(plan, schedule, attempt, judge, commit, retry, guard, run)."""
