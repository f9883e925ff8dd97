"""Delivery policy: send through the one sender, spool what did not arrive.

The command and the boot reporter both deliver through here, so an event is
handled the same way whoever made it: sent with bounded retries, spooled
under its own EventId when it could not be sent, and flushed later.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .event import Event, fit
from .sender import Outcome, Target, put_events
from .spool import Record, Spool, SpoolError

# Entry errors that no retry can fix: the same entry will be refused again.
REJECTED_CODES = frozenset({
    "MalformedDetail", "InvalidArgument", "ValidationException", "SerializationException",
})


@dataclasses.dataclass
class Delivery:
    event: Event
    outcome: Outcome
    spooled: Optional[str] = None
    spool_error: Optional[str] = None


@dataclasses.dataclass
class FlushReport:
    delivered: int = 0
    failed: int = 0
    rejected: int = 0
    corrupt: int = 0
    remaining: int = 0
    busy: bool = False
    last_error: str = ""


def send(
    events: Sequence[Event],
    target: Target,
    spool: Optional[Spool],
    environ: Mapping[str, str],
) -> List[Delivery]:
    """Send ``events``; spool each one that did not arrive and could later."""
    events = list(events)
    dropped = spool.dropped() if spool else 0
    if dropped and events:
        events[0] = with_dropped(events[0], dropped)
    outcomes = put_events([e.entry() for e in events], target, environ)
    if spool and dropped and outcomes and outcomes[0].delivered:
        spool.acknowledge_dropped(dropped)
    results = [Delivery(e, o) for e, o in zip(events, outcomes)]
    for result in results:
        if result.outcome.delivered or spool is None:
            continue
        if result.outcome.error_code in REJECTED_CODES:
            continue
        try:
            record = spool.put(result.event, target.region, target.endpoint_url,
                               result.outcome.reason(), result.outcome.attempts)
            result.spooled = record.path
        except SpoolError as exc:
            result.spool_error = str(exc)
    return results


def with_dropped(event: Event, count: int) -> Event:
    detail = dict(event.detail)
    detail["DroppedEvents"] = int(detail.get("DroppedEvents", 0)) + count
    return fit(dataclasses.replace(event, detail=detail))


def flush(spool: Spool, environ: Mapping[str, str], budget: float,
          endpoint_url: Optional[str] = None) -> FlushReport:
    """One pass over the spool: send every record, keep what failed.

    Each record goes to the region and endpoint it was meant for, unless
    ``endpoint_url`` is configured now: a fixed endpoint must reach old events.
    """
    report = FlushReport()
    start = time.monotonic()
    with spool.lock(blocking=True, timeout=min(budget, 10.0)) as held:
        if not held:
            report.busy = True
            return report
        records, corrupt = spool.records()
        report.corrupt = len(corrupt)
        dropped = spool.dropped()
        if dropped and records:
            records[0].event = with_dropped(records[0].event, dropped)
        for (region, endpoint), group in _by_target(records).items():
            remaining = budget - (time.monotonic() - start)
            if remaining <= 0:
                report.remaining += len(group)
                continue
            outcomes = put_events([r.event.entry() for r in group],
                                  Target(region, endpoint_url or endpoint, remaining), environ)
            for record, outcome in zip(group, outcomes):
                _settle(spool, record, outcome, report)
            if dropped and records[0] in group and outcomes[group.index(records[0])].delivered:
                spool.acknowledge_dropped(dropped)
        spool.enforce_bound_locked()
    report.remaining = len(spool.records()[0])
    return report


def _settle(spool: Spool, record: Record, outcome: Outcome, report: FlushReport) -> None:
    if outcome.delivered:
        spool.remove(record)
        report.delivered += 1
    elif outcome.error_code in REJECTED_CODES:
        spool.set_aside(record.path, "rejected")
        report.rejected += 1
        report.last_error = outcome.reason()
    else:
        spool.update(record, outcome.reason())
        report.failed += 1
        report.last_error = outcome.reason()


def _by_target(records: Sequence[Record]) -> Dict[Tuple[str, Optional[str]], List[Record]]:
    groups: Dict[Tuple[str, Optional[str]], List[Record]] = {}
    for record in records:
        groups.setdefault((record.region, record.endpoint_url), []).append(record)
    return groups


def flush_for(
    spool: Spool,
    environ: Mapping[str, str],
    window: float,
    attempt_budget: float,
    endpoint_url: Optional[str] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> FlushReport:
    """Flush again and again, with backoff and jitter, until the spool is
    empty or ``window`` seconds have passed."""
    end = clock() + window
    pause = 1.0
    while True:
        report = flush(spool, environ, max(1.0, min(attempt_budget, end - clock())), endpoint_url)
        if (report.remaining == 0 and not report.busy) or clock() >= end:
            return report
        sleep(min(random.uniform(pause / 2, pause), max(0.0, end - clock())))
        pause = min(pause * 2, 60.0)
