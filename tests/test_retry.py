"""One retry policy for every AWS call: botocore's codes, bosky's 4 s cap, the
server's ``x-amz-retry-after``.

The codes are the installed botocore's; the scenarios run the real sender
against the EventBridge emulator behind the fault proxy, over loopback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import pytest

from cc_bosky.delivery import retry
from cc_bosky.delivery.sender import Target, put_events
from cc_bosky.event import make_event
from tests.support.emulator import DEFAULT_REGION

# Codes no retry makes right, for the other side of the comparison.
NEVER_RETRIED = {"AccessDenied", "AccessDeniedException", "ValidationError",
                 "ValidationException", "MalformedDetail", "UnrecognizedClientException",
                 "InvalidSignatureException", "ResourceNotFoundException", "HTTP400", ""}


def botocore_standard_codes() -> Set[str]:
    """What the installed botocore's standard retry mode retries by code (read from
    its checkers' own lists)."""
    from botocore.retries import standard

    return {*standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES,
            *standard.TransientRetryableChecker._TRANSIENT_ERROR_CODES}


def test_the_retryable_codes_are_botocores_for_the_installed_version() -> None:
    botocore_codes = botocore_standard_codes()
    assert {"RequestLimitExceeded", "SlowDown", "PriorRequestNotComplete",
            "EC2ThrottledException"} <= botocore_codes  # the ones bosky's own list lacked
    candidates = botocore_codes | retry.FALLBACK_CODES | retry.ENTRY_FAULT_CODES | NEVER_RETRIED
    assert {c for c in candidates if retry.retryable_code(c)} == botocore_codes


def test_a_failed_entry_is_retried_for_botocores_codes_and_eventbridges_faults() -> None:
    assert retry.retryable_entry_code("InternalFailure")
    assert retry.retryable_entry_code("ThrottlingException")
    assert not retry.retryable_entry_code("MalformedDetail")


@pytest.fixture
def without_standard_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A botocore before 1.15, which has no botocore.retries.standard."""
    monkeypatch.setattr(retry, "_standard_checker", lambda: None)
    retry.retryable_code.cache_clear()
    retry.legacy_codes.cache_clear()
    yield
    retry.retryable_code.cache_clear()
    retry.legacy_codes.cache_clear()


def test_an_old_botocore_gives_its_legacy_retry_data(without_standard_mode: None) -> None:
    from cc_bosky.arns import botocore_data

    data = json.loads(Path(botocore_data("_retry.json") or "").read_text())
    named = {d["applies_when"]["response"]["service_error_code"]
             for d in data["definitions"].values()
             if "service_error_code" in d.get("applies_when", {}).get("response", {})}
    assert named and named <= retry.legacy_codes()
    assert all(retry.retryable_code(c) for c in named)
    assert not retry.retryable_code("AccessDenied")


def test_without_any_botocore_retry_data_the_fallback_list_holds(
        without_standard_mode: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from cc_bosky import arns

    monkeypatch.setattr(arns, "botocore_data", lambda name: None)
    assert retry.legacy_codes() == retry.FALLBACK_CODES
    assert retry.retryable_code("SlowDown") and not retry.retryable_code("AccessDenied")


def test_the_backoff_stays_under_its_cap_and_honours_retry_after() -> None:
    policy = retry.Retry(60.0)
    assert all(0 <= policy.pause(n) <= retry.BACKOFF_CAP for n in range(1, 30))
    policy.after(3.0)
    assert all(3.0 <= policy.pause(n) <= retry.BACKOFF_CAP + 3.0 for n in range(1, 30))
    policy.after(60.0)  # never more than 5 s past the jittered pause, as botocore
    assert all(policy.pause(n) <= retry.BACKOFF_CAP + retry.RETRY_AFTER_MAX_EXTRA
               for n in range(1, 30))
    assert retry.retry_after("1500") == 1.5
    assert retry.retry_after("soon") is None and retry.retry_after("-1") is None


def one_event() -> Dict[str, Any]:
    return make_event(source="retry-test", detail_type="User Data", status="pass",
                      message="m", identity={}, origin="command").entry()


def test_a_code_only_botocore_knew_is_retried_and_delivered(fault_proxy: Any,
                                                             aws_env: Dict[str, str]) -> None:
    """EC2-style throttling (HTTP 400 RequestLimitExceeded): bosky's old list gave up."""
    pauses: List[float] = []
    fault_proxy.http_error(400, times=2, error_type="RequestLimitExceeded")
    (outcome,) = put_events([one_event()], Target(DEFAULT_REGION, fault_proxy.url, 30.0),
                            aws_env, sleep=pauses.append)
    assert outcome.delivered and outcome.attempts == 3
    assert len(pauses) == 2 and all(p <= retry.BACKOFF_CAP for p in pauses)


def test_the_server_asks_for_a_pause_and_gets_it(fault_proxy: Any,
                                                 aws_env: Dict[str, str]) -> None:
    pauses: List[float] = []
    fault_proxy.http_error(503, times=1, error_type="SlowDown", retry_after_ms=2500)
    (outcome,) = put_events([one_event()], Target(DEFAULT_REGION, fault_proxy.url, 30.0),
                            aws_env, sleep=pauses.append)
    assert outcome.delivered and outcome.attempts == 2
    (pause,) = pauses
    assert 2.5 <= pause <= retry.BACKOFF_CAP + 2.5


def test_a_pause_past_the_budget_ends_the_call_undelivered(fault_proxy: Any,
                                                           aws_env: Dict[str, str]) -> None:
    pauses: List[float] = []
    fault_proxy.http_error(429, times=1, error_type="ThrottlingException", retry_after_ms=4000)
    (outcome,) = put_events([one_event()], Target(DEFAULT_REGION, fault_proxy.url, 3.0),
                            aws_env, sleep=pauses.append)
    assert not outcome.delivered and outcome.retryable and outcome.attempts == 1
    assert pauses == []  # gave up at once rather than sleep past the budget
