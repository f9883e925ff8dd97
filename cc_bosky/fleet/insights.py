"""The Insights engine: the report's aggregations run by CloudWatch Logs Insights.

Four queries, each the Logs Insights form of a rule in :mod:`.report`:

- ``groups``: boots by project x ImageId x InstanceType x status;
- ``seconds``: p50/p95 of the boots' BootSeconds per group;
- ``modules``: boots per module named in a ``fail`` verdict;
- ``latest``: the latest failed or timed-out boots, each with its latest event.

Each one first collapses a boot's events with a ``stats ... by`` the boot's
key (re-sends count once; ``sortsFirst(detail.Status)`` lets a final verdict
outrank ``timeout``, which sorts last), then aggregates the boots with a
second ``stats``. The language allows at most two ``stats`` a query, only
``sort`` and ``limit`` after the second, and in the second only fields the
first one defined; ``dedup`` is no help here, since nothing but ``limit`` may
follow it. The same text is shipped in infra/consumer.yaml as
``AWS::Logs::QueryDefinition`` resources (a test holds the two equal).

Limits the service documents, and what this does about them: a query returns
at most 10,000 rows (``limit``; the report says when a query hit it); it
times out after 60 minutes (``--timeout`` is capped there); an account runs
a bounded number of queries at once (30 in the StartQuery reference), and
this starts at most :data:`CONCURRENT`. StartQuery takes the window in epoch
seconds. Ctrl-C stops the queries still running (StopQuery), since an
abandoned query runs, and is billed, to the end.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import BoskyError, UsageError
from .client import LogsClient, refused, stop_all
from .report import FAILED, NONE, OUTCOMES, Aggregates, iso, listed, read_detail

MAX_ROWS = 10000  # GetQueryResults' documented most
QUERY_TIMEOUT = 3600.0  # the service's query timeout, seconds
CONCURRENT = 4  # queries this command runs at once (the account's quota is shared)
NAMES = ("groups", "seconds", "modules", "latest")
DEFAULT_LATEST = 10  # --failures' default: the shipped query definition's limit
RUNNING = ("Scheduled", "Running")
ENDED = ("Failed", "Cancelled", "Timeout", "Unknown")
_POLL_FIRST, _POLL_MOST = 0.5, 5.0  # seconds between GetQueryResults calls

_STATUSES = "[" + ", ".join(f'"{s}"' for s in OUTCOMES) + "]"
_BOOT = ('fields coalesce(detail.BootId, detail.EventId) as boot')


def _where(project: Optional[str], status: str = f"detail.Status in {_STATUSES}") -> str:
    where = f'filter detail.Origin = "boot" and ispresent(detail.EventId) and {status}'
    if project is not None:
        where += f' and source = "{project}"'
    return where


def query_text(name: str, project: Optional[str] = None,
               latest: int = DEFAULT_LATEST) -> str:
    """The Logs Insights query ``name`` (one of :data:`NAMES`)."""
    if project is not None and not project_quotable(project):
        raise UsageError(f"--project {project!r} cannot be quoted in a Logs Insights query; "
                         "use --engine scan")
    per_boot = ("stats sortsFirst(detail.Status) as status, max(detail.BootSeconds) as seconds"
                " by source as project, detail.ImageId as image,"
                " detail.InstanceType as type, detail.InstanceId as instance, boot")
    parts: Dict[str, Sequence[str]] = {
        "groups": [_where(project), _BOOT, per_boot,
                   "stats count(*) as boots by project, image, type, status",
                   f"limit {MAX_ROWS}"],
        "seconds": [_where(project), _BOOT, per_boot,
                    "stats pct(seconds, 50) as p50, pct(seconds, 95) as p95"
                    " by project, image, type",
                    f"limit {MAX_ROWS}"],
        "modules": [_where(project, 'detail.Status = "fail"'),
                    _BOOT + ", jsonParse(@message) as js",
                    "unnest js.detail.FailedModules into module",
                    "stats count(*) as events by source as project,"
                    " detail.InstanceId as instance, boot, module",
                    "stats count(*) as failures by module",
                    "sort failures desc",
                    f"limit {MAX_ROWS}"],
        "latest": [_where(project), _BOOT,
                   "stats sortsFirst(detail.Status) as status, max(@timestamp) as last,"
                   " latest(@message) as message"
                   " by source as project, detail.InstanceId as instance, boot",
                   "filter status in [" + ", ".join(f'"{s}"' for s in FAILED) + "]",
                   "sort last desc",
                   f"limit {max(1, min(latest, MAX_ROWS))}"],
    }
    return "\n| ".join(parts[name])


def project_quotable(project: str) -> bool:
    return not any(c in project for c in '"\\') and project.isprintable()


# -- running the queries ------------------------------------------------------------------


class Run:
    """The queries' progress, for a terminal."""

    def __init__(self) -> None:
        self.states: Dict[str, str] = {}
        self.bytes = self.records = 0.0

    def line(self) -> str:
        done = sum(1 for s in self.states.values() if s == "Complete")
        return (f"bosky fleet: Logs Insights, {done} of {len(NAMES)} queries done, "
                f"{self.records:,.0f} records, {self.bytes / 1e6:,.1f} MB scanned")


def run(logs: LogsClient, start: float, end: float, project: Optional[str], failures: int,
        on_poll: Callable[[Run], None], sleep: Callable[[float], None] = time.sleep
        ) -> Tuple[Aggregates, Dict[str, Any]]:
    """Start the queries, poll them to the end, and read their answers."""
    client = logs.client(retries={"max_attempts": 5, "mode": "adaptive"})
    texts = {name: query_text(name, project, failures) for name in NAMES}
    started: Dict[str, str] = {}
    answers: Dict[str, Mapping[str, Any]] = {}
    progress = Run()
    try:
        with refused(logs):
            pending = list(NAMES)
            wait = _POLL_FIRST
            while pending or started:
                while pending and len(started) < CONCURRENT:
                    name = pending.pop(0)
                    started[name] = logs.within(functools.partial(
                        client.start_query, logGroupName=logs.group, startTime=int(start),
                        endTime=int(end), queryString=texts[name], limit=MAX_ROWS))["queryId"]
                    progress.states[name] = "Scheduled"
                for name, query_id in list(started.items()):
                    answer = logs.within(functools.partial(client.get_query_results,
                                                           queryId=query_id))
                    status = str(answer.get("status", "Unknown"))
                    progress.states[name] = status
                    if status == "Complete":
                        answers[name] = answer
                        del started[name]
                    elif status not in RUNNING:
                        del started[name]
                        raise BoskyError(f"the Logs Insights query {name!r} on {logs.group} "
                                         f"ended {status}")
                progress.bytes = sum(_stat(a, "bytesScanned") for a in answers.values())
                progress.records = sum(_stat(a, "recordsScanned") for a in answers.values())
                on_poll(progress)
                if started:
                    logs.check_deadline()
                    sleep(wait)
                    wait = min(_POLL_MOST, wait * 1.5)
    except BaseException:  # Ctrl-C, a deadline, a refusal: stop what still runs
        _stop(client, started.values())
        raise
    aggregates = aggregate(answers)
    # Every query reads the same events; each one is billed for what it scanned.
    truncated = [name for name in NAMES if name != "latest"
                 and len(answers[name].get("results") or ()) >= MAX_ROWS]
    return aggregates, {"Queries": len(answers),
                        "RecordsMatched": _stat(answers["groups"], "recordsMatched"),
                        "RecordsScanned": max(_stat(a, "recordsScanned")
                                              for a in answers.values()),
                        "BytesScanned": sum(_stat(a, "bytesScanned") for a in answers.values()),
                        "Truncated": truncated}


def _stop(client: Any, query_ids: Any) -> None:
    stop_all(functools.partial(client.stop_query, queryId=q) for q in list(query_ids))


def _stat(answer: Mapping[str, Any], key: str) -> float:
    value = (answer.get("statistics") or {}).get(key, 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


# -- reading the answers ------------------------------------------------------------------


def rows(answer: Mapping[str, Any]) -> List[Dict[str, str]]:
    """GetQueryResults' ``results`` (a list of rows, each a list of
    ``{"field", "value"}``) as dictionaries; Insights' own ``@ptr`` dropped."""
    out = []
    for row in answer.get("results") or ():
        cells: Dict[str, str] = {}
        for cell in row or ():
            if isinstance(cell, dict) and isinstance(cell.get("field"), str) \
                    and cell["field"] != "@ptr" and isinstance(cell.get("value"), str):
                cells[cell["field"]] = cell["value"]
        out.append(cells)
    return out


def aggregate(answers: Mapping[str, Mapping[str, Any]]) -> Aggregates:
    """The report's aggregates from the four queries' answers."""
    agg = Aggregates()
    for row in rows(answers["groups"]):
        status, boots = row.get("status"), _number(row.get("boots"))
        if status not in OUTCOMES or boots is None or "project" not in row:
            continue
        counts = agg.counts.setdefault(_group(row), dict.fromkeys(OUTCOMES, 0))
        counts[status] += int(boots)
    for row in rows(answers["seconds"]):
        if "project" in row:
            p50, p95 = _number(row.get("p50")), _number(row.get("p95"))
            agg.seconds[_group(row)] = (None if p50 is None else round(p50, 3),
                                        None if p95 is None else round(p95, 3))
    for row in rows(answers["modules"]):
        failures = _number(row.get("failures"))
        if "module" in row and failures:
            agg.modules[row["module"]] = int(failures)
    latest: List[Tuple[int, Dict[str, Any]]] = []
    for row in rows(answers["latest"]):
        parsed = read_detail(row.get("message", ""))
        stamp = _timestamp(row.get("last", ""))
        if parsed is None or stamp is None or row.get("status") not in FAILED:
            continue
        latest.append((round(stamp * 1000),
                       {"Time": iso(stamp), "Status": row["status"], **listed(*parsed)}))
    # The scan's order, ties included: latest first, then by EventId.
    latest.sort(key=lambda pair: (-pair[0], pair[1]["EventId"] or ""))
    agg.latest = [item for _, item in latest]
    return agg


def _group(row: Mapping[str, str]) -> Tuple[str, str, str]:
    return (row["project"], row.get("image", NONE), row.get("type", NONE))


def _number(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value == value else None


def _timestamp(text: str) -> Optional[float]:
    """Insights writes @timestamp as ``2026-12-01 08:00:00.000`` (UTC)."""
    try:
        when = datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    fraction = text[20:23] if len(text) > 20 and text[19] == "." else ""
    return when.timestamp() + (int(fraction) / 1000.0 if fraction.isdigit() else 0.0)
