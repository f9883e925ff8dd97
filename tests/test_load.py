"""CI's small version of benchmarks/load.py: a fleet launching at once.

A hundred instances, each with its own spool and the real sender, start
their verdicts at the same instant against an EventBridge the proxy throttles
to 50 PutEvents calls a second. Every verdict must arrive, once, under its
own EventId. The time ratio is the script's business: on a shared CI machine
a timed assertion flakes (README has the full run's figures).
"""

from __future__ import annotations

import pytest

from benchmarks.load import run_load

pytestmark = [pytest.mark.slow]


def test_a_hundred_instances_launching_at_once_all_arrive_once(eventbridge) -> None:
    # A burst of 5: a hundred instances are too few to outrun a full second's burst.
    result = run_load(verdicts=100, rate=50, workers=2, emulator=eventbridge, burst=5)
    assert result.throttled > 0, "the throttle never bit: not a load test"
    assert result.reported_undelivered == 0, result.lines()
    assert (result.delivered, result.lost) == (100, 0), result.lines()
    assert result.two_ids == 0, result.lines()
    assert result.duplicates == 0, result.lines()
