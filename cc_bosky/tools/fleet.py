"""``bosky fleet``: boot health of a fleet, read from the consumer stack's log group.

The log group (infra/consumer.yaml's HistoryRule target) holds every event of
a project as EventBridge wrote it: the envelope, with bosky's Detail under
``detail``. This is a thin reader of that contract: each field it uses is
looked up, with its type, in cc_bosky/schemas/detail.schema.json, the same
definition the sender's events are tested against, so a field renamed there
breaks this report's tests, and a value of the wrong type in the log (an old
or hand-made event) is ignored rather than trusted.

One row per project x ImageId x InstanceType: boots, their outcome, fail %
and p50/p95 BootSeconds; then the modules that failed most and the latest
failures. A boot that sent ``timeout`` and later its final verdict counts
once, by the final verdict. Events are de-duplicated on EventId.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime, timezone
from typing import IO, Any, Callable, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from ..errors import EXIT_OK, BoskyError, UsageError
from ..schemas import load
from ..text import printable
from .args import Parser
from .cli import safe_json

OUTCOMES = ("pass", "fail", "degraded", "timeout")
_TIMEOUT = 10.0  # each HTTP attempt: connect and read
_LOG_GROUP = re.compile(r"^[._\-/#A-Za-z0-9]{1,512}$(?!\n)")
_SINCE = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# cloud-init's own lines in cloud-init-output.log: stage banners, ci-info
# tables, and its log records echoed to the console.
_CLOUD_INIT_LINE = re.compile(r"Cloud-init v\. |ci-info: |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - "
                              r"\S+\[[A-Z]+\]: ")
_MAX_TEXT = 500  # characters of a message or log line kept per boot
_PROGRESS_AFTER = 3  # pages before a terminal shows progress
# The Detail fields this report reads; their types come from the detail schema.
FIELDS = ("Status", "Message", "EventId", "Time", "Origin", "InstanceId", "ImageId",
          "InstanceType", "BootId", "BootSeconds", "FailedModules", "LogTail")
_JSON_TYPES: Dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    and v == v and v not in (float("inf"), float("-inf")),
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
}


def fleet_parser() -> Parser:
    p = Parser(prog="bosky fleet", description="Boot health of a fleet from the consumer "
                "stack's log group (infra/consumer.yaml, output LogGroupName).")
    p.add_argument("--log-group", required=True, metavar="NAME", help="the log group to read")
    p.add_argument("--since", default="24h", metavar="AGE",
                   help="how far back: 30m, 24h, 7d, 2w (default 24h)")
    p.add_argument("--project", metavar="P", help="only this project (the events' Source)")
    p.add_argument("--failures", type=int, default=10, metavar="N",
                   help="how many of the latest failures to list (default 10)")
    p.add_argument("--json", action="store_true", help="the same report as JSON")
    p.add_argument("--region", help="region of the log group (env AWS_REGION)")
    p.add_argument("--endpoint-url", metavar="URL", help="CloudWatch Logs endpoint (env "
                   "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS)")
    p.add_argument("--page-size", type=int, default=None, metavar="N",
                   help="events per FilterLogEvents call, 1 to 10000 (default: the service's)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="give up reading after this long (default 120)")
    return p


def fleet_command(argv: List[str], environ: Mapping[str, str]) -> int:
    args = fleet_parser().parse_args(argv)
    if args.failures < 0:
        raise UsageError("--failures must be 0 or more")
    if args.page_size is not None and not 1 <= args.page_size <= 10000:
        raise UsageError("--page-size must be 1 to 10000")
    if args.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    seconds = since_seconds(args.since)
    if not _LOG_GROUP.match(args.log_group):
        raise UsageError(f"--log-group {args.log_group!r}: 1 to 512 letters, digits or ._-/#")
    region = args.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise UsageError("no AWS region: pass --region or set AWS_REGION")
    _check("region", region, "region")
    if args.endpoint_url is not None:
        _check("--endpoint-url", args.endpoint_url, "endpoint_url")
    end = time.time()
    start = end - seconds
    reader = LogReader(args.log_group, region, args.endpoint_url, environ, args.timeout,
                       args.page_size)
    progress = Progress(sys.stderr)
    report = build_report(reader.events(start, end, args.project, progress.page),
                          args.project, args.failures)
    progress.done()
    report.update({"LogGroup": args.log_group, "Since": _iso(start), "Until": _iso(end),
                   "Pages": progress.pages})
    print(safe_json(report) if args.json else render(report))
    return EXIT_OK


def _check(what: str, value: str, key: str) -> None:
    """``value`` as bosky's config schema allows ``key`` (one definition of a
    valid region or endpoint for every command)."""
    from .. import config

    if not re.search(config.schema()["properties"][key]["pattern"], value):
        raise UsageError(f"{what} {value!r} is not a valid {key.replace('_', ' ')}")


def since_seconds(text: str) -> float:
    match = _SINCE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--since {text!r}: give an age such as 30m, 24h, 7d or 2w")
    return float(int(match.group(1)) * _UNITS[match.group(2)])


# -- reading the log group ----------------------------------------------------------------


class LogReader:
    """FilterLogEvents, page by page, through a botocore client (imported only here:
    the rest of bosky never pays for it)."""

    def __init__(self, group: str, region: str, endpoint_url: Optional[str],
                 environ: Mapping[str, str], budget: float,
                 page_size: Optional[int] = None) -> None:
        self.group, self.region, self.budget, self.page_size = group, region, budget, page_size
        self.environ = environ
        self.endpoint_url = (endpoint_url or environ.get("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
                             or environ.get("AWS_ENDPOINT_URL") or None)

    def events(self, start: float, end: float, project: Optional[str],
               on_page: Callable[[int], None]) -> Iterator[Tuple[int, str]]:
        """(timestamp ms, message) of every event in the window."""
        import botocore.config
        import botocore.exceptions
        import botocore.session

        from ..delivery.sender import load_credentials

        # The sender's credential chain, read from this command's environment.
        credentials = load_credentials(self.environ)
        if credentials is None:
            raise BoskyError("no AWS credentials found (environment, profile, container or "
                             "instance role)")
        try:
            frozen = credentials.get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:  # a refresh that failed
            raise BoskyError(f"cannot load AWS credentials: {exc}") from None
        # Narrow on the server; the report checks every event again.
        pattern = '{ $.detail.Origin = "boot" }' if project is None else \
            '{ ($.detail.Origin = "boot") && ($.source = ' + json.dumps(project) + ") }"
        deadline = time.monotonic() + self.budget
        try:
            client = botocore.session.get_session().create_client(
                "logs", region_name=self.region, endpoint_url=self.endpoint_url,
                aws_access_key_id=frozen.access_key, aws_secret_access_key=frozen.secret_key,
                aws_session_token=frozen.token,
                config=botocore.config.Config(connect_timeout=_TIMEOUT, read_timeout=_TIMEOUT,
                                              retries={"max_attempts": 3, "mode": "standard"}))
            kwargs: Dict[str, Any] = {"logGroupName": self.group, "filterPattern": pattern,
                                      "startTime": int(start * 1000), "endTime": int(end * 1000)}
            if self.page_size:
                kwargs["limit"] = self.page_size
            while True:
                page = client.filter_log_events(**kwargs)
                on_page(len(page.get("events", ())))
                for event in page.get("events", ()):
                    yield int(event.get("timestamp") or 0), str(event.get("message") or "")
                token = page.get("nextToken")
                if not token or token == kwargs.get("nextToken"):
                    return
                if time.monotonic() > deadline:
                    raise BoskyError(f"reading {self.group} took longer than --timeout "
                                     f"{self.budget:g} s; narrow --since or --project")
                kwargs["nextToken"] = token
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            raise BoskyError(f"CloudWatch Logs refused: {error.get('Code', 'error')}: "
                             f"{error.get('Message', '')}".rstrip(": ")) from None
        except botocore.exceptions.ParamValidationError as exc:
            raise UsageError(f"CloudWatch Logs would refuse this request: {exc}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise BoskyError(f"cannot read {self.group}: {exc}") from None
        except ValueError as exc:  # botocore's check of the endpoint URL
            raise UsageError(f"--endpoint-url: {exc}") from None


class Progress:
    """A one-line counter on a terminal's stderr once reading takes several pages."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.pages, self.events, self.shown = stream, 0, 0, False

    def page(self, events: int) -> None:
        self.pages += 1
        self.events += events
        if self.pages >= _PROGRESS_AFTER and _isatty(self.stream):
            self.stream.write(f"\rbosky fleet: {self.pages} pages, {self.events} events read")
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


# -- the report ---------------------------------------------------------------------------


def read_detail(message: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """(project, the Detail fields this report uses) of a logged envelope, or None.

    Each field is kept only if its value has the type the detail schema gives it.
    """
    try:
        envelope = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("detail"), dict):
        return None
    detail, source = envelope["detail"], envelope.get("source")
    if not isinstance(source, str):
        return None
    props = _properties()
    kept = {}
    for name in FIELDS:
        value = detail.get(name)
        if value is not None and _JSON_TYPES[props[name]](value):
            kept[name] = value
    if kept.get("Origin") != "boot" or kept.get("Status") not in OUTCOMES:
        return None
    # What a boot keeps in memory is bounded (a month of a large fleet is
    # hundreds of thousands of events): the tail's last line, a clipped message.
    kept["LastLogLine"] = _last_line(kept.pop("LogTail", None))
    kept["Message"] = _clip(kept.get("Message", ""), _MAX_TEXT)
    if isinstance(kept["LastLogLine"], str):
        kept["LastLogLine"] = _clip(kept["LastLogLine"], _MAX_TEXT)
    kept["FailedModules"] = [m[:100] for m in kept.get("FailedModules", [])
                             if isinstance(m, str)][:50]
    return source, kept


def _properties() -> Dict[str, str]:
    """Each used field's JSON type, from the detail schema."""
    schema = load("detail")
    defs = schema.get("definitions", {})
    out = {}
    for name in FIELDS:
        spec = schema["properties"][name]
        if "$ref" in spec:
            spec = defs[spec["$ref"].rsplit("/", 1)[-1]]
        out[name] = spec["type"]
    return out


def build_report(events: Iterator[Tuple[int, str]], project: Optional[str],
                 failures: int) -> Dict[str, Any]:
    """The report's data from (timestamp ms, message) pairs."""
    seen: Set[str] = set()
    boots: Dict[Tuple[str, ...], Tuple[str, Dict[str, Any]]] = {}
    read = skipped = 0
    for stamp, message in events:
        read += 1
        parsed = read_detail(message)
        if parsed is None or (project is not None and parsed[0] != project):
            skipped += 1
            continue
        source, detail = parsed
        event_id = str(detail.get("EventId") or f"{stamp}:{hash(message)}")
        if event_id in seen:
            continue
        seen.add(event_id)
        detail["_When"] = _event_time(detail.get("Time"), stamp)
        key = ((source, detail["InstanceId"], detail["BootId"])
               if "InstanceId" in detail and "BootId" in detail else (source, event_id))
        earlier = boots.get(key)
        # A boot's final verdict outranks its timeout, whichever arrives first.
        if earlier is None or (earlier[1]["Status"] == "timeout"
                               and detail["Status"] != "timeout"):
            boots[key] = (source, detail)
    return _summarise(list(boots.values()), failures, read, skipped)


def _summarise(boots: List[Tuple[str, Dict[str, Any]]], failures: int, read: int,
               skipped: int) -> Dict[str, Any]:
    groups: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
    modules: Dict[str, int] = {}
    failed: List[Tuple[str, Dict[str, Any]]] = []
    for source, d in boots:
        key = (source, d.get("ImageId", "-"), d.get("InstanceType", "-"))
        group = groups.setdefault(key, {"counts": dict.fromkeys(OUTCOMES, 0), "seconds": []})
        group["counts"][d["Status"]] += 1
        if "BootSeconds" in d:
            group["seconds"].append(float(d["BootSeconds"]))
        if d["Status"] in ("fail", "timeout"):
            failed.append((source, d))
            for module in set(d["FailedModules"]):
                modules[module] = modules.get(module, 0) + 1
    rows = []
    for (source, image, itype), group in groups.items():
        counts, seconds = group["counts"], sorted(group["seconds"])
        total = sum(counts.values())
        rows.append({"Project": source, "ImageId": image, "InstanceType": itype, "Boots": total,
                     **{s.capitalize(): counts[s] for s in OUTCOMES},
                     "FailPercent": round(100.0 * (counts["fail"] + counts["timeout"]) / total,
                                          1),
                     "BootSecondsP50": percentile(seconds, 50),
                     "BootSecondsP95": percentile(seconds, 95)})
    rows.sort(key=lambda r: (-r["FailPercent"], -r["Boots"], r["Project"], r["ImageId"],
                             r["InstanceType"]))
    failed.sort(key=lambda item: item[1]["_When"], reverse=True)
    latest = [{"Time": _iso(d["_When"]), "Project": source, "InstanceId": d.get("InstanceId"),
               "ImageId": d.get("ImageId"), "Status": d["Status"], "Message": d.get("Message", ""),
               "LastLogLine": d["LastLogLine"], "EventId": d.get("EventId")}
              for source, d in failed[:failures]]
    return {"EventsRead": read, "EventsSkipped": skipped, "Boots": len(boots),
            "Groups": rows,
            "FailingModules": [{"Module": m, "Failures": n} for m, n in
                               sorted(modules.items(), key=lambda i: (-i[1], i[0]))],
            "Failures": len(failed), "LatestFailures": latest}


def percentile(values: List[float], pct: float) -> Optional[float]:
    """Nearest-rank percentile of sorted ``values``; None when there are none."""
    if not values:
        return None
    rank = max(1, -(-len(values) * pct // 100))
    return round(values[int(rank) - 1], 3)


def _last_line(tail: Any) -> Optional[str]:
    """The log tail's last line that is not cloud-init's own (its "finished at"
    banner, its echoed WARNINGs): what the user's script said last."""
    lines = [line for line in (tail or []) if isinstance(line, str) and line.strip()]
    own = [line for line in lines if not _CLOUD_INIT_LINE.match(line)]
    return (own or lines)[-1] if lines else None


def _event_time(detail_time: Any, stamp_ms: int) -> float:
    if isinstance(detail_time, str):
        try:
            return datetime.strptime(detail_time[:19], "%Y-%m-%dT%H:%M:%S").replace(
                tzinfo=timezone.utc).timestamp()
        except ValueError:
            pass
    return stamp_ms / 1000.0


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- text ---------------------------------------------------------------------------------


def render(report: Mapping[str, Any]) -> str:
    out = [f"bosky fleet: {report['LogGroup']}, {report['Since']} to {report['Until']}: "
           f"{_count(report['Boots'], 'boot')} ({_count(report['EventsRead'], 'event')}, "
           f"{_count(report['Pages'], 'page')})"]
    if not report["Groups"]:
        out.append("no boot verdicts in this window")
        return printable("\n".join(out), one_line=False)
    out.append("")
    out += _table(["PROJECT", "IMAGE", "TYPE", "BOOTS", "PASS", "FAIL", "DEGRADED", "TIMEOUT",
                   "FAIL %", "P50 S", "P95 S"],
                  [[r["Project"], r["ImageId"], r["InstanceType"], r["Boots"], r["Pass"],
                    r["Fail"], r["Degraded"], r["Timeout"], f"{r['FailPercent']:.1f}",
                    _num(r["BootSecondsP50"]), _num(r["BootSecondsP95"])]
                   for r in report["Groups"]])
    if report["FailingModules"]:
        out += ["", "Top failing modules"]
        out += _table(["MODULE", "FAILED BOOTS"],
                      [[m["Module"], m["Failures"]] for m in report["FailingModules"][:10]])
    if report["LatestFailures"]:
        shown = len(report["LatestFailures"])
        out += ["", f"Latest failures ({shown} of {report['Failures']})"]
        out += _table(["TIME", "INSTANCE", "IMAGE", "STATUS", "MESSAGE", "LAST LOG LINE"],
                      [[f["Time"], f["InstanceId"] or "-", f["ImageId"] or "-", f["Status"],
                        _clip(f["Message"], 50), _clip(f["LastLogLine"] or "-", 50)]
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


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


__all__ = ["build_report", "fleet_command", "read_detail", "render"]

