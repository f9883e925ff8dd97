"""``bosky flush`` and ``bosky status``: the spool, sent now or described."""

from __future__ import annotations

import argparse
import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from .. import config
from ..errors import EXIT_NOT_DELIVERED, EXIT_OK, DeliveryError
from ..text import printable, safe_json
from .args import Parser, add_connection, subcommand
from .output import Progress, err

#: Which wins for a spooled event, said by flush --help and status --help.
_FLUSH_REGION = "region to send spooled events to, instead of the one stored with each " \
    "(a bus named by ARN keeps its ARN's region)"
_FLUSH_ENDPOINT = "endpoint to send spooled events through, instead of the one stored with " \
    "each (also env AWS_ENDPOINT_URL_EVENTBRIDGE, AWS_ENDPOINT_URL_EVENTS, or the config file)"


def _spool_settings(p: Parser, argv: List[str],
                    environ: Mapping[str, str]) -> Tuple[argparse.Namespace, config.Settings]:
    """Parse a spool subcommand's arguments; settings with the connection flags checked."""
    add_connection(p, _FLUSH_REGION, _FLUSH_ENDPOINT)
    args = p.parse_args(argv)
    flags = {"region": args.region, "endpoint_url": args.endpoint_url}
    return args, config.resolve(flags, environ, args.config)


def flush_command(argv: List[str], environ: Mapping[str, str]) -> int:
    p = subcommand("flush", "Send every spooled event (and action) now.")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up after this long (default: send_timeout)")
    args, settings = _spool_settings(p, argv, environ)
    from .. import awsconfig
    from ..delivery.outbox import flush
    from ..delivery.spool import Spool, SpoolError

    chosen = awsconfig.profile(args.profile, environ)
    awsconfig.check(chosen)
    environ = awsconfig.sending_environ(chosen, environ)
    spool = Spool(settings.spool_dir, settings.spool_max_events, settings.spool_max_bytes)
    budget = args.timeout or settings.send_timeout
    try:
        spool.check()  # another user's spool is refused before anything in it is read
        if spool.waiting():
            missing = awsconfig.no_credentials(chosen, environ)
            if missing:
                raise DeliveryError(f"{missing}; the spooled events stay spooled")
        with Progress(args.region or "each event's region", budget):
            report = flush(spool, environ, budget, settings.endpoint_url, region=args.region,
                           action_endpoints=settings.endpoints())
    except SpoolError as exc:  # not "busy": another user's spool, or root's seen by a user
        raise DeliveryError(str(exc)) from None
    if report.busy:
        err("another bosky is flushing the spool; try again shortly")
        return EXIT_NOT_DELIVERED
    busy = f" ({report.in_flight} being sent by another bosky)" if report.in_flight else ""
    print(f"delivered {report.delivered}, still spooled {report.remaining}{busy}, "
          f"rejected {report.rejected}, corrupt {report.corrupt}")
    if report.remaining or report.rejected or report.corrupt:
        if report.last_error:
            err(f"last error: {report.last_error}")
        return EXIT_NOT_DELIVERED
    return EXIT_OK


def status_command(argv: List[str], environ: Mapping[str, str]) -> int:
    p = subcommand("status", "Show this boot's verdict, the reporter, and what waits "
                   "in the spool.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args, settings = _spool_settings(p, argv, environ)
    from ..boot.state import describe
    from ..delivery.spool import SpoolError

    try:
        report = describe(settings, args.region)
    except SpoolError as exc:  # not "0 event(s)" for a spool this user cannot read
        raise DeliveryError(str(exc)) from None
    if not report.get("verdict"):
        from pathlib import Path

        from ..host.python import find_cloud_init

        # Only cloud-init makes a boot verdict: without it "not yet" would mislead.
        report = {**report, "CloudInit": find_cloud_init(Path("/"), environ) is not None}
    if args.json:
        print(safe_json(report))
    else:
        print(render_status(report))
    return EXIT_OK


def render_status(report: Mapping[str, Any]) -> str:
    lines: List[str] = []
    verdict = report.get("verdict")
    spool = report["spool"]
    waiting = {item["EventId"] for item in spool["events"]}
    if not verdict and report.get("CloudInit") is False:
        lines.append("this boot: no cloud-init on this machine, so no boot verdict (bosky "
                     "reports the boots cloud-init runs; this command still sends events)")
    elif not verdict:
        lines.append("this boot: no verdict yet")
    elif verdict.get("Sent") is False:
        lines.append(f"this boot: {verdict.get('Status')} (not sent: 'send' leaves it out)")
    elif verdict.get("EventId") in waiting:
        lines.append(f"this boot: {verdict.get('Status')} not delivered yet, waiting in the "
                     f"spool as {verdict.get('EventId')}")
    else:
        lines.append(f"this boot: {verdict.get('Status')} sent as {verdict.get('EventId')} "
                     f"at {verdict.get('Time')}")
    lines.append(f"reporter: {report.get('reporter')}")
    lines.append(f"spool {spool['directory']}: {len(spool['events'])} event(s), "
                 f"{spool['bytes']} bytes, {spool['dropped']} dropped, "
                 f"{len(spool['corrupt'])} corrupt, {len(spool['rejected'])} rejected")
    for item in spool["events"]:
        lines.append(printable(
            f"  {item['EventId']} {_kind(item)}{item['Status']} age {item['AgeSeconds']:.0f}s, "
            f"{item['Attempts']} attempt(s), last error: {item['LastError'] or '-'}; "
            f"flush sends it to {_target(item['SendsTo'])}"))
    lines += _aside_summary(spool["corrupt"], "corrupt (set aside, not sent)")
    lines += _aside_summary(spool["rejected"], "rejected by AWS (not retried)")
    return "\n".join(lines)


#: How many of ``corrupt/`` and ``rejected/`` status names: there may be thousands.
_ASIDE_EXAMPLES = 3


def _aside_summary(paths: Sequence[str], what: str) -> List[str]:
    """One line for a ``corrupt/`` or ``rejected/`` folder (oldest first) and its newest few."""
    if not paths:
        return []
    folder = os.path.dirname(paths[0])
    ages = [_spooled_age(p) for p in (paths[0], paths[-1])]
    span = f", spooled {ages[0]} to {ages[1]} ago" if None not in ages else ""
    lines = [printable(f"  {len(paths)} {what} in {folder}{span}; the newest:")]
    lines += [printable(f"    {os.path.basename(p)}") for p in paths[-_ASIDE_EXAMPLES:]]
    return lines


def _spooled_age(path: str) -> Optional[str]:
    """How long ago a set-aside record was spooled: its name starts with that time (ns)."""
    import time

    stamp = os.path.basename(path).split("-", 1)[0]
    if not stamp.isdigit():
        return None
    seconds = max(0.0, time.time() - int(stamp) / 1e9)
    return f"{seconds / 86400:.1f} d" if seconds >= 86400 else f"{seconds:.0f} s"


def _kind(item: Mapping[str, Any]) -> str:
    """'' for an event (as before); the kind of an action, e.g. 'lifecycle '."""
    kind = str(item.get("Kind") or "event")
    return "" if kind == "event" else f"{kind} "


def _target(sends_to: Mapping[str, Any]) -> str:
    endpoint = sends_to["EndpointUrl"]
    return f"{sends_to['Region']} via {endpoint}" if endpoint else \
        f"{sends_to['Region']} (regional endpoint)"
