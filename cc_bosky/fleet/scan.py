"""The scan engine: every event of the window through FilterLogEvents.

FilterLogEvents is limited to 5 transactions per second for the whole
account and Region, shared with every other caller, and a page holds at most
1 MB. botocore's paginator follows ``nextToken`` (and refuses a token that
repeats), and its ``adaptive`` retry mode slows this client down when the
service throttles it, so a long scan shares the quota instead of failing on
it. Each event is folded into :class:`~.report.Tally` as it arrives: nothing
but the compact per-boot state is kept.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from .client import LogsClient, refused

_MAX_ATTEMPTS = 10  # adaptive mode: throttled calls wait their turn rather than fail


def filter_pattern(project: Optional[str]) -> str:
    """Narrow on the server; the report checks every event again."""
    if project is None:
        return '{ $.detail.Origin = "boot" }'
    import json

    return '{ ($.detail.Origin = "boot") && ($.source = ' + json.dumps(project) + ") }"


def events(logs: LogsClient, start: float, end: float, project: Optional[str],
           page_size: Optional[int], on_page: Callable[[int], None]
           ) -> Iterator[Tuple[int, str]]:
    """(timestamp ms, message) of every event in the window, page by page."""
    client = logs.client(retries={"max_attempts": _MAX_ATTEMPTS, "mode": "adaptive"})
    kwargs: Dict[str, Any] = {"logGroupName": logs.group, "filterPattern": filter_pattern(project),
                              "startTime": int(start * 1000), "endTime": int(end * 1000)}
    config: Dict[str, Any] = {"PageSize": page_size} if page_size else {}
    with refused(logs):
        pages = iter(client.get_paginator("filter_log_events").paginate(
            **kwargs, PaginationConfig=config))
        while True:
            page = logs.within(functools.partial(next, pages, None))  # each call, bounded
            if page is None:
                break
            found = page.get("events", ())
            on_page(len(found))
            for event in found:
                yield int(event.get("timestamp") or 0), str(event.get("message") or "")
            logs.check_deadline()

