"""Delivery policy: spool first, send through the one sender, keep what did not arrive.

One outbox for every kind of delivery: the EventBridge entry, the lifecycle
hook's completion and the stack's signal (:mod:`.action`). The command and
the boot reporter both deliver through here, so each is handled the same way
whoever made it: written to the spool under its own
EventId before the first byte leaves, sent with bounded retries, removed from
the spool once EventBridge accepted it, and flushed later otherwise.

Spooling first is what makes a SIGKILL mid-send harmless: the record is held
(flock) by the sending process, so no flusher sends it at the same time, and
released by the kernel however that process ends, so the next flush sends it.
That first copy is fsync'd (file, then directory) before the first byte
leaves, although two fsyncs cost ~70 ms on the development machine, more than
the send: in whole-machine boots (tests/vm, bookworm's ext4) qemu was
SIGKILLed while a `bosky --fail` and the boot's verdict were both mid-send.
Unsynced, the copies survived twice (requests 0.04 s and 3.0 s before the
cut) and the third time the command's copy (request 0.15 s before the cut)
came back corrupt after the reboot and was set aside: an event lost, at-least-
once broken. A process killed mid-send loses nothing either way.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..event import Event, fit
from .action import DONE, GONE, REJECTED, Action
from .deliverable import Item, actions_of, events_of, home_region, service, settle
from .sender import Outcome, Target, call, put_events
from .spool import Record, Spool, SpoolError

LOG = logging.getLogger("bosky.outbox")

# What the spool records say while the first attempt is still going on.
NOT_SENT_YET = "not sent yet"
# The command waits this long at most to clear the dropped counter after a
# delivery; past it the count stays and is reported again (never lost).
_ACK_TIMEOUT = 1.0


@dataclasses.dataclass
class Delivery:
    event: Item
    outcome: Outcome
    spooled: Optional[str] = None  # the spool file that keeps the undelivered event
    spool_error: Optional[str] = None  # why it could not be kept
    rejected: Optional[str] = None  # EventBridge refused it for good; set aside here


@dataclasses.dataclass
class FlushReport:
    delivered: int = 0  # actions that found nothing pending count here too: nothing is left
    failed: int = 0
    rejected: int = 0
    corrupt: int = 0
    remaining: int = 0
    in_flight: int = 0  # being sent right now by another bosky; part of remaining
    busy: bool = False
    last_error: str = ""


def send(
    events: Sequence[Event],
    target: Target,
    spool: Optional[Spool],
    environ: Mapping[str, str],
) -> List[Delivery]:
    """Send ``events``, each spooled first (unless ``spool`` is None) and kept
    in the spool until EventBridge accepted it."""
    events = list(events)
    records = [_hold(spool, e, target) for e in events]
    dropped = spool.dropped() if spool else 0
    wire = list(events)
    if dropped and wire:
        wire[0] = with_dropped(wire[0], dropped)  # the record itself stays as it was
    outcomes = put_events([e.entry() for e in wire], target, environ)
    if spool and dropped and outcomes and outcomes[0].delivered:
        spool.acknowledge_dropped(dropped, timeout=_ACK_TIMEOUT)
    results = [Delivery(e, o) for e, o in zip(events, outcomes)]
    for result, (record, error) in zip(results, records):
        _after_send(spool, result, record, error, target)
    return results


def act(
    actions: Sequence[Action],
    region: str,
    endpoints: Mapping[str, Optional[str]],
    spool: Optional[Spool],
    environ: Mapping[str, str],
    budget: float,
) -> List[Delivery]:
    """Carry out ``actions`` (each spooled first, like an event) and keep
    those that did not get through. ``endpoints``: service -> endpoint URL.
    ``budget`` is shared: an action finds what the ones before it left."""
    results: List[Delivery] = []
    ends = time.monotonic() + budget
    for action in actions:
        target = Target(region, endpoints.get(action.service), ends - time.monotonic(),
                        action.service)
        record, error = _hold(spool, action, target)
        outcome = call(action.operation, action.params, target, environ)
        result = Delivery(action, outcome)
        settled = action.settle(outcome)
        _log_action(action, outcome, settled, 0)
        if settled == GONE:  # nothing pending: done, as far as anyone can tell
            result.outcome = dataclasses.replace(outcome, delivered=True)
        _after_send(spool, result, record, error, target)
        results.append(result)
    return results


def _log_action(action: Action, outcome: Outcome, settled: str, earlier: int) -> None:
    what = f"{action.describe()} ({action.action_id})"  # an action's own log lines
    if settled == DONE:
        LOG.info("%s: done", what)
    elif settled == GONE:
        if outcome.attempts + earlier > 1:  # an earlier attempt landed; its answer was lost
            LOG.info("%s: done (an earlier attempt had completed it)", what)
        else:
            LOG.info("%s: no pending lifecycle action (hook timed out, already completed, or "
                     "not waiting on this hook); nothing to do", what)
    elif settled == REJECTED:
        LOG.error("%s: refused for good, set aside: %s", what, outcome.reason())
    else:
        LOG.warning("%s: not done yet, spooled for retry: %s", what, outcome.reason())


def _hold(spool: Optional[Spool], event: Item,
          target: Target) -> Tuple[Optional[Record], Optional[str]]:
    """The event's spool record, held by this process while it sends, or why there is none."""
    if spool is None:
        return None, None
    try:
        return spool.put(event, target.region, target.endpoint_url, NOT_SENT_YET, hold=True,
                         sync=True), None
    except SpoolError as exc:  # sent anyway, from memory; spooling is retried if it fails
        return None, str(exc)


def _after_send(spool: Optional[Spool], result: Delivery, record: Optional[Record],
                error: Optional[str], target: Target) -> None:
    outcome = result.outcome
    if spool is None:
        return
    if outcome.delivered:
        if record:
            spool.remove(record)
        return
    if settle(result.event, outcome) == REJECTED:
        if record:
            result.rejected = spool.reject(record)
        return
    if record:
        spool.update(record, outcome.reason(), outcome.attempts)
        result.spooled = record.path
        return
    try:  # the spool could not take it before the send; space may have been freed since
        result.spooled = spool.put(result.event, target.region, target.endpoint_url,
                                   outcome.reason(), outcome.attempts).path
    except SpoolError as exc:
        result.spool_error = str(exc) if error is None else error


def with_dropped(event: Event, count: int) -> Event:
    detail = dict(event.detail)
    detail["DroppedEvents"] = int(detail.get("DroppedEvents", 0)) + count
    return fit(dataclasses.replace(event, detail=detail))


def flush_target(record: Record, region: Optional[str] = None,
                 endpoint_url: Optional[str] = None,
                 action_endpoints: Optional[Mapping[str, Optional[str]]] = None
                 ) -> Tuple[str, Optional[str]]:
    """Where a flush sends ``record``: (region, endpoint).

    The endpoint configured now wins over the one stored with the record
    (``endpoint_url`` for events, ``action_endpoints`` by service for
    actions): it is how this machine reaches AWS, and fixing a wrong one must
    reach old records. The region stored with the record wins over the
    configured one (a shell's default region says nothing about old events)
    unless ``region`` is asked for explicitly (``bosky flush --region``); a
    bus named by ARN always lives in the ARN's region, as when sending.
    """
    configured = {**(action_endpoints or {}), "events": endpoint_url}.get(service(record.event))
    return (home_region(record.event) or region or record.region,
            configured or record.endpoint_url)


def flush(spool: Spool, environ: Mapping[str, str], budget: float,
          endpoint_url: Optional[str] = None, region: Optional[str] = None,
          action_endpoints: Optional[Mapping[str, Optional[str]]] = None) -> FlushReport:
    """One pass over the spool: send every record, keep what failed, each to
    its :func:`flush_target`. Records another live bosky is sending right now
    are left to it.
    """
    report = FlushReport()
    start = time.monotonic()
    with spool.lock(blocking=True, timeout=min(budget, 10.0)) as held:
        if not held:
            report.busy = True
            return report
        spool.dedupe_locked()
        records, corrupt = spool.records()
        report.corrupt = len(corrupt)
        waiting = [(r, r.event) for r in records if not r.in_flight]
        ready = [r for r, _ in events_of(waiting)]
        dropped = spool.dropped()
        carrier = ready[0] if dropped and ready else None
        # Actions go beside the events, not before them: neither waits for the other.
        actions = actions_of(waiting)
        side = FlushReport()
        worker = threading.Thread(target=_flush_actions, daemon=True, args=(
            spool, actions, environ, start + budget, region, action_endpoints or {}, side))
        if actions:
            worker.start()
        for (to_region, endpoint), group in _by_target(ready, region, endpoint_url).items():
            remaining = budget - (time.monotonic() - start)
            if remaining <= 0:
                break
            outcomes = put_events(
                [(with_dropped(e, dropped) if r is carrier else e).entry()
                 for r, e in events_of([(r, r.event) for r in group])],
                Target(to_region, endpoint, remaining), environ)
            for record, outcome in zip(group, outcomes):
                _settle(spool, record, outcome, report)
                if record is carrier and outcome.delivered:
                    spool.acknowledge_dropped(dropped)
        if actions:
            worker.join()  # each call ends within the budget
            report.delivered += side.delivered
            report.failed += side.failed
            report.rejected += side.rejected
            report.last_error = report.last_error or side.last_error
        spool.enforce_bound_locked()
        left = spool.records()[0]
        report.remaining = len(left)
        report.in_flight = sum(1 for r in left if r.in_flight)
    return report


def _flush_actions(spool: Spool, records: Sequence[Tuple[Record, Action]],
                   environ: Mapping[str, str], deadline: float, region: Optional[str],
                   endpoints: Mapping[str, Optional[str]], report: FlushReport) -> None:
    for record, action in records:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            continue
        to_region, endpoint = flush_target(record, region, None, endpoints)
        target = Target(to_region, endpoint, remaining, action.service)
        outcome = call(action.operation, action.params, target, environ)
        _log_action(action, outcome, action.settle(outcome), record.attempts)
        _settle(spool, record, outcome, report)


def _settle(spool: Spool, record: Record, outcome: Outcome, report: FlushReport) -> None:
    settled = settle(record.event, outcome)
    if settled in (DONE, GONE):
        spool.remove(record)
        report.delivered += 1
    elif settled == REJECTED:
        spool.reject(record)
        report.rejected += 1
        report.last_error = outcome.reason()
    else:
        spool.update(record, outcome.reason())
        report.failed += 1
        report.last_error = outcome.reason()


def _by_target(records: Sequence[Record], region: Optional[str],
               endpoint_url: Optional[str]) -> Dict[Tuple[str, Optional[str]], List[Record]]:
    groups: Dict[Tuple[str, Optional[str]], List[Record]] = {}
    for record in records:
        groups.setdefault(flush_target(record, region, endpoint_url), []).append(record)
    return groups


def flush_for(
    spool: Spool,
    environ: Mapping[str, str],
    window: float,
    attempt_budget: float,
    endpoint_url: Optional[str] = None,
    action_endpoints: Optional[Mapping[str, Optional[str]]] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> FlushReport:
    """Flush again and again, with backoff and jitter, until the spool is
    empty or ``window`` seconds have passed. The report counts what every
    pass delivered and rejected, and what is left at the end."""
    end = clock() + window
    pause = 1.0
    delivered = rejected = 0
    while True:
        report = flush(spool, environ, max(1.0, min(attempt_budget, end - clock())), endpoint_url,
                       action_endpoints=action_endpoints)
        delivered += report.delivered
        rejected += report.rejected
        if (report.remaining == 0 and not report.busy) or clock() >= end:
            report.delivered, report.rejected = delivered, rejected
            return report
        sleep(min(random.uniform(pause / 2, pause), max(0.0, end - clock())))
        pause = min(pause * 2, 60.0)
