"""``bosky fleet``: boot health of a fleet, read from the consumer stack's log group.

One row per project x ImageId x InstanceType: boots, their outcome, fail %
and p50/p95 BootSeconds; then the modules that failed most and the latest
failures. Which boots count and how a boot's events collapse into one is
cc_bosky/fleet/report.py; the report is built by one of two engines:
``scan`` (FilterLogEvents, every event to this machine, cc_bosky/fleet/scan.py)
or ``insights`` (CloudWatch Logs Insights aggregates on AWS's side,
cc_bosky/fleet/insights.py). By default a window longer than
:data:`SCAN_UP_TO` goes to Insights: a day of a 5,000-instance fleet is
about 10,000 verdicts (44 MB, a few dozen FilterLogEvents pages at the
account's 5 a second), a month is a hundred times that.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime, timezone
from typing import IO, Any, List, Mapping, Optional

from .. import awsconfig
from ..errors import EXIT_OK, UsageError
from ..fleet import insights, scan
from ..fleet import report as fleet_report
from ..fleet.client import LogsClient
from ..fleet.report import OUTCOMES, clip
from ..text import printable, safe_json
from .args import PROFILE_HELP, Parser

SCAN_UP_TO = 86400.0  # seconds of window the default engine still scans
SCAN_TIMEOUT, INSIGHTS_TIMEOUT = 120.0, 900.0  # --timeout's defaults, by engine
ROWS = 20  # groups the table shows unless --rows says otherwise
_LOG_GROUP = re.compile(r"^[._\-/#A-Za-z0-9]{1,512}$(?!\n)")
_AGE = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PROGRESS_AFTER = 3  # pages before a terminal shows progress


def fleet_parser() -> Parser:
    p = Parser(prog="bosky fleet", description="Boot health of a fleet from the consumer "
                "stack's log group (infra/consumer.yaml, output LogGroupName).")
    p.add_argument("--log-group", required=True, metavar="NAME",
                   help="the log group to read (the stack's output LogGroupName, "
                   "/aws/events/bosky/PROJECT)")
    p.add_argument("--since", default="24h", metavar="WHEN",
                   help="start of the window: an age (30m, 24h, 7d, 2w) or a UTC time "
                   "(2026-12-01T08:00:00Z); default 24h")
    p.add_argument("--until", default=None, metavar="WHEN",
                   help="end of the window, the same forms (default: now)")
    p.add_argument("--project", metavar="P", help="only this project (the events' Source)")
    p.add_argument("--engine", choices=("auto", "scan", "insights"), default="auto",
                   help="scan: FilterLogEvents, every event read here; insights: CloudWatch "
                   "Logs Insights aggregates on AWS's side; auto (default): scan up to a "
                   "24-hour window, insights beyond")
    p.add_argument("--failures", type=int, default=10, metavar="N",
                   help="how many of the latest failures to list (default 10)")
    p.add_argument("--rows", type=int, default=ROWS, metavar="N",
                   help=f"groups the table shows, worst first (default {ROWS}; --json has all)")
    p.add_argument("--json", action="store_true", help="the same report as JSON")
    p.add_argument("--region", help="region of the log group (env AWS_REGION; then the "
                   "profile's)")
    p.add_argument("--profile", metavar="NAME", help=PROFILE_HELP)
    p.add_argument("--endpoint-url", metavar="URL", help="CloudWatch Logs endpoint (env "
                   "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS)")
    p.add_argument("--page-size", type=int, default=None, metavar="N",
                   help="scan: events per FilterLogEvents call, 1 to 10000 (default: the "
                   "service's)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help=f"give up after this long (default {SCAN_TIMEOUT:g} for scan, "
                   f"{INSIGHTS_TIMEOUT:g} for insights; at most 3600, Insights' own timeout)")
    p.add_argument("--permissions", action="store_true",
                   help="print the IAM policy this report needs on --log-group (both engines) "
                   "and exit")
    return p


def fleet_command(argv: List[str], environ: Mapping[str, str]) -> int:
    args = fleet_parser().parse_args(argv)
    if args.failures < 0 or args.failures > insights.MAX_ROWS:
        raise UsageError(f"--failures must be 0 to {insights.MAX_ROWS}")
    if args.rows < 1:
        raise UsageError("--rows must be 1 or more")
    if args.page_size is not None and not 1 <= args.page_size <= 10000:
        raise UsageError("--page-size must be 1 to 10000")
    if args.timeout is not None and not 0 < args.timeout <= insights.QUERY_TIMEOUT:
        raise UsageError("--timeout must be more than 0 and at most 3600 seconds")
    now = time.time()
    start = moment(args.since, now, "--since")
    end = moment(args.until, now, "--until") if args.until is not None else now
    if start >= end:
        raise UsageError(f"--since ({fleet_report.iso(start)}) must be before --until "
                         f"({fleet_report.iso(end)})")
    if not _LOG_GROUP.match(args.log_group):
        raise UsageError(f"--log-group {args.log_group!r}: 1 to 512 letters, digits or ._-/#")
    # The profile's region and credentials as the AWS CLI reads them (awsconfig).
    chosen = awsconfig.profile(args.profile, environ)
    awsconfig.check(chosen)
    environ = awsconfig.sending_environ(chosen, environ)
    region = (args.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
              or awsconfig.region(chosen))
    if args.permissions:
        from .policy import fleet_reader_policy

        print(safe_json(fleet_reader_policy(args.log_group, region, None)))
        return EXIT_OK
    engine = args.engine
    if engine == "auto":
        engine = "insights" if end - start > SCAN_UP_TO else "scan"
    if engine == "insights" and args.project is not None:
        insights.query_text("groups", args.project)  # a project Insights cannot quote: exit 2
    if not region:
        raise UsageError("no AWS region: pass --region, set AWS_REGION, or set 'region' for "
                         f"profile '{chosen.name}' in {chosen.config_file}")
    _check("region", region, "region")
    if args.endpoint_url is not None:
        _check("--endpoint-url", args.endpoint_url, "endpoint_url")
    budget = args.timeout or (INSIGHTS_TIMEOUT if engine == "insights" else SCAN_TIMEOUT)
    logs = LogsClient(args.log_group, region, args.endpoint_url, environ, budget)
    progress = Progress(sys.stderr)
    if engine == "scan":
        result = fleet_report.build_report(
            scan.events(logs, start, end, args.project, args.page_size, progress.page),
            args.failures, args.project)
        result["Pages"] = progress.pages
    else:
        aggregates, stats = insights.run(logs, start, end, args.project, args.failures,
                                         progress.poll)
        result = fleet_report.assemble(aggregates)
        result["Insights"] = stats
    progress.done()
    result.update({"LogGroup": args.log_group, "Engine": engine, "Since": fleet_report.iso(start),
                   "Until": fleet_report.iso(end)})
    print(safe_json(result) if args.json else render(result, args.rows))
    return EXIT_OK


def _check(what: str, value: str, key: str) -> None:
    """``value`` as bosky's config schema allows ``key`` (one definition of a
    valid region or endpoint for every command)."""
    from .. import config

    if not re.search(config.schema()["properties"][key]["pattern"], value):
        raise UsageError(f"{what} {value!r} is not a valid {key.replace('_', ' ')}")


def moment(text: str, now: float, flag: str) -> float:
    """An age before ``now`` (``30m``, ``24h``, ``7d``, ``2w``; ``0s`` is now) or a UTC
    time (``2026-12-01T08:00:00Z``, ``2026-12-01``), as epoch seconds."""
    text = text.strip()
    match = _AGE.match(text)
    if match:
        return now - float(int(match.group(1)) * _UNITS[match.group(2)])
    for form in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, form).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise UsageError(f"{flag} {text!r}: give an age such as 30m, 24h, 7d or 2w, or a UTC "
                     "time such as 2026-12-01T08:00:00Z")


def since_seconds(text: str) -> float:
    """How far back an age reaches (``--since``'s age form)."""
    return time.time() - moment(text, time.time(), "--since")


class Progress:
    """One line on a terminal's stderr: scan pages once reading takes several,
    the Insights queries' state while they run."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.pages, self.events, self.shown = stream, 0, 0, False

    def page(self, events: int) -> None:
        self.pages += 1
        self.events += events
        if self.pages >= _PROGRESS_AFTER:
            self._show(f"bosky fleet: {self.pages} pages, {self.events} events read")

    def poll(self, run: insights.Run) -> None:
        self._show(run.line())

    def _show(self, line: str) -> None:
        if _isatty(self.stream):
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- text ---------------------------------------------------------------------------------


def render(report: Mapping[str, Any], rows: int = ROWS) -> str:
    if report.get("Engine") == "insights":
        stats = report["Insights"]
        source = (f"Logs Insights: {stats['RecordsMatched']:,.0f} events matched, "
                  f"{stats['BytesScanned'] / 1e6:,.1f} MB scanned")
    else:
        source = (f"{_count(report['EventsRead'], 'event')}, "
                  f"{_count(report.get('Pages', 0), 'page')}")
    out = [f"bosky fleet: {report['LogGroup']}, {report['Since']} to {report['Until']}: "
           f"{_count(report['Boots'], 'boot')} ({source})"]
    for name in (report.get("Insights") or {}).get("Truncated", ()):
        out.append(f"note: the {name} query reached Logs Insights' {insights.MAX_ROWS:,} "
                   "rows; narrow --since or --project for all of it")
    if not report["Groups"]:
        out.append("no boot verdicts in this window")
        return printable("\n".join(out), one_line=False)
    out.append("")
    groups = report["Groups"]
    out += _table(["PROJECT", "IMAGE", "TYPE", "BOOTS", "PASS", "FAIL", "DEGRADED", "TIMEOUT",
                   "FAIL %", "P50 S", "P95 S"],
                  [[r["Project"], r["ImageId"], r["InstanceType"], r["Boots"], r["Pass"],
                    r["Fail"], r["Degraded"], r["Timeout"], f"{r['FailPercent']:.1f}",
                    _num(r["BootSecondsP50"]), _num(r["BootSecondsP95"])]
                   for r in groups[:rows]])
    if len(groups) > rows:
        out.append(f"  ... {_count(len(groups) - rows, 'more group')} (--rows {len(groups)} "
                   "or --json for all)")
    if report["FailingModules"]:
        out += ["", "Top failing modules"]
        out += _table(["MODULE", "FAILED BOOTS"],
                      [[m["Module"], m["Failures"]] for m in report["FailingModules"][:10]])
    if report["LatestFailures"]:
        shown = len(report["LatestFailures"])
        out += ["", f"Latest failures ({shown} of {report['Failures']})"]
        out += _table(["TIME", "INSTANCE", "IMAGE", "STATUS", "MESSAGE", "LAST LOG LINE"],
                      [[f["Time"], f["InstanceId"] or "-", f["ImageId"] or "-", f["Status"],
                        clip(f["Message"], 50), clip(f["LastLogLine"] or "-", 50)]
                       for f in report["LatestFailures"]])
    return "\n".join(out)


def _table(header: List[str], rows: List[List[Any]]) -> List[str]:
    cells = [[printable(str(c)) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if numeric[i] else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  " + "  ".join(parts).rstrip())
    return lines


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"-|[0-9]+(\.[0-9]+)?", text))


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


__all__ = ["OUTCOMES", "fleet_command", "render"]

