"""One retry policy for every AWS call bosky makes itself: when to try again, and when.

Which error codes are worth another attempt is botocore's knowledge, not
bosky's: :func:`retryable_code` asks the installed botocore's standard retry
mode (its throttling and transient checkers, ``botocore.retries.standard``),
so ``RequestLimitExceeded``, ``SlowDown``, ``PriorRequestNotComplete``,
``EC2ThrottledException`` and whatever a later botocore adds are retried as
the AWS SDKs retry them. A botocore without that module (before 1.15) falls
back to the codes in its ``data/_retry.json``, then to :data:`FALLBACK_CODES`.
botocore is imported only when an error needs classifying, never on the way
to a delivered event.

When: full-jitter exponential backoff (:class:`Retry`), capped at
:data:`BACKOFF_CAP`, within the call's budget; an ``x-amz-retry-after``
header (milliseconds) raises the pause as botocore raises it: to the
header's value, at most 5 s past the jittered pause.
"""

from __future__ import annotations

import functools
import json
import random
import time
from typing import Any, Callable, FrozenSet, Iterator, Mapping, Optional

BACKOFF_BASE = 0.25
# Full jitter up to this cap. Measured with benchmarks/load.py (1,000 instances,
# 50 calls/s): a cap of 8 s leaves a tail of stragglers sleeping long after the
# throttle has room again (ratio 1.19-1.25 to the unavoidable time); 4 s brings
# it to 1.04-1.11 for ~30% more (throttled, unbilled) calls.
BACKOFF_CAP = 4.0
# botocore's bound on how far x-amz-retry-after may stretch one pause.
RETRY_AFTER_MAX_EXTRA = 5.0
RETRY_AFTER_HEADER = "x-amz-retry-after"

# Only where botocore has neither its standard retry mode nor _retry.json: the
# throttling and transient codes of botocore 1.44's standard mode.
FALLBACK_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException",
})
# An entry of a PutEvents answer (HTTP 200) that failed on EventBridge's side
# carries one of these; no HTTP status says "server fault" for it.
ENTRY_FAULT_CODES = frozenset({
    "InternalFailure", "InternalException", "InternalServerError", "ServiceUnavailable",
    "ServiceUnavailableException",
})
# Services bosky calls, for _retry.json's per-service codes.
_SERVICES = ("events", "autoscaling", "cloudformation")


def retryable_status(status: int) -> bool:
    """A server fault or a throttle, whatever the error code says."""
    return status >= 500 or status == 429


@functools.lru_cache(maxsize=64)
def retryable_code(code: str) -> bool:
    """Whether botocore's standard retry mode retries an error with ``code``."""
    checker = _standard_checker()
    if checker is None:
        return code in legacy_codes()
    from botocore.retries.standard import RetryContext

    return bool(checker.is_retryable(RetryContext(
        attempt_number=1, parsed_response={"Error": {"Code": code}})))


def retryable_entry_code(code: str) -> bool:
    """Whether a failed PutEvents entry with ``code`` may succeed when sent again."""
    return code in ENTRY_FAULT_CODES or retryable_code(code)


@functools.cache
def _standard_checker() -> Optional[Any]:
    try:
        from botocore.retries import standard
    except ImportError:
        return None
    return standard.OrRetryChecker([standard.ThrottledRetryableChecker(),
                                    standard.TransientRetryableChecker()])


@functools.cache
def legacy_codes() -> FrozenSet[str]:
    """The service error codes botocore's legacy retry data (``_retry.json``) names for
    every service and for those bosky calls; :data:`FALLBACK_CODES` without it."""
    from ..arns import botocore_data

    try:
        with open(botocore_data("_retry.json") or "", encoding="utf-8") as f:
            data = json.load(f)
        sections = [data["definitions"], *(data["retry"].get(s, {}) for s in
                                           ("__default__", *_SERVICES))]
        found = frozenset(_service_error_codes(sections))
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return FALLBACK_CODES
    return found or FALLBACK_CODES


def _service_error_codes(node: object) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "service_error_code" and isinstance(value, str):
                yield value
            else:
                yield from _service_error_codes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _service_error_codes(item)


def retry_after(header: str) -> Optional[float]:
    """Seconds from an ``x-amz-retry-after`` value (milliseconds); None if unusable."""
    try:
        value = int(header.strip()) / 1000.0
    except (ValueError, OverflowError):
        return None
    return value if value >= 0 else None


class Retry:
    """The attempts of one call within its budget, with backoff between them.

    ``for timeout in Retry(budget).attempts(limit): ...`` runs the body once
    per attempt with that attempt's wall-clock allowance; leaving the loop
    ends the call, going round again pauses first, and the loop ends by
    itself when the budget would run out during the pause.
    """

    def __init__(self, budget: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self.deadline = clock() + budget
        self._after: Optional[float] = None

    def after(self, seconds: Optional[float]) -> None:
        """The server asked (``x-amz-retry-after``) for this long before the next attempt."""
        self._after = seconds

    def attempts(self, limit: float) -> Iterator[float]:
        attempt = 0
        while True:
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                return
            attempt += 1
            self._after = None
            yield min(limit, remaining)
            pause = self.pause(attempt)
            if self.clock() + pause >= self.deadline:
                return
            self.sleep(pause)

    def pause(self, attempt: int) -> float:
        jittered = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
        if self._after is None:
            return jittered
        return max(jittered, min(self._after, jittered + RETRY_AFTER_MAX_EXTRA))
