"""The ``bosky`` command: a drop-in for the original Go bosky, plus tools.

``bosky --fail "artifact 404"`` sends one event and exits 0 only when
EventBridge accepted it (1: not delivered, 2: usage or config error). A first
argument naming a subcommand (``flush``, ``status``, ``schema``, ...) runs that
instead; a message that is literally such a word goes after a status flag.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import config, redact
from ..errors import (
    EXIT_INTERRUPTED,
    EXIT_NOT_DELIVERED,
    EXIT_OK,
    EXIT_USAGE,
    BoskyError,
    UsageError,
)
from ..text import printable
from ..version import __version__
from .args import Parser, add_config, add_connection, subcommand

MAX_STDIN_MESSAGE = 1024 * 1024
MAX_STATUS = 256  # the detail schema's bound
# An instance id is one Resources entry (at most 2048 characters); real ones
# are i- and 17 hex digits, hand-made ones (`web-1`) must at least be sane.
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._:/-]{1,256}")
# Characters a terminal acts on that JSON leaves raw with ensure_ascii=False.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


#: Each subcommand and what it does: the bare call's usage, --help, and the
#: typo suggestion all read this (README's command table is checked against it).
PURPOSES: Dict[str, str] = {
    "flush": "send every spooled event (and action) now",
    "status": "this boot's verdict, the reporter, and what waits in the spool",
    "schema": "check user data as cloud-init reads it, bosky's stanza included",
    "install": "register the module with cloud-init (and the reporter's units, under systemd)",
    "uninstall": "remove exactly what 'bosky install' wrote",
    "doctor": "checklist: will bosky work on this machine?",
    "fleet": "boot health of the fleet from the consumer stack's log group",
}
#: The flags that make the first word a message (as in the Go original).
_EVENT_FLAGS = frozenset({"-p", "--pass", "--success", "-f", "--fail", "--failure", "-i",
                          "--info", "--status"})


def _subcommand_lines() -> str:
    width = max(len(name) for name in PURPOSES)
    return "\n".join(f"  {name:<{width}}  {what}" for name, what in PURPOSES.items())


def usage() -> str:
    """What a bare ``bosky`` prints: how to send, and each subcommand."""
    return ("usage: bosky (--pass | --fail | --info | --status STATUS) [MESSAGE] [options]\n"
            "       bosky SUBCOMMAND [options]\n\n"
            "Send an Amazon EventBridge event (DetailType 'User Data'), e.g.\n"
            "  bosky --pass \"deployed\"\n\n"
            f"subcommands:\n{_subcommand_lines()}\n\n"
            "'bosky --help' lists every option; 'bosky SUBCOMMAND --help' a subcommand's.\n")


def event_parser() -> Parser:
    p = Parser(
        prog="bosky",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Send an Amazon EventBridge event (DetailType 'User Data') from a script "
        "or an instance.\n\nA first argument naming a subcommand runs it instead "
        "('bosky SUBCOMMAND --help'):\n" + _subcommand_lines(),
        epilog="Exit codes: 0 delivered, 1 not delivered (spooled unless --no-spool), "
        "2 usage or configuration error, 130 interrupted (Ctrl-C).",
    )
    status = p.add_mutually_exclusive_group()
    status.add_argument("-p", "--pass", "--success", dest="status", action="store_const",
                        const="pass", help="report success (Status 'pass')")
    status.add_argument("-f", "--fail", "--failure", dest="status", action="store_const",
                        const="fail", help="report failure (Status 'fail')")
    status.add_argument("-i", "--info", dest="status", action="store_const", const="info",
                        help="report information (Status 'info')")
    status.add_argument("--status", dest="status", metavar="STATUS", help="a custom Status")
    p.add_argument("message", nargs="?", default=None,
                   help="the event's Message; '-' reads it from standard input")
    p.add_argument("--verbatim", action="store_true", help="send the message unredacted")
    p.add_argument("--project", help="event Source (env BOSKY_PROJECT; default 'unknown')")
    p.add_argument("--instance-id", help="instance id (env BOSKY_INSTANCE_ID; default: looked up)")
    add_connection(p, "region of the event bus (env AWS_REGION)",
                      "EventBridge endpoint (env AWS_ENDPOINT_URL_EVENTBRIDGE, "
                      "AWS_ENDPOINT_URL_EVENTS)")
    p.add_argument("--event-bus", help="event bus name or ARN (default: the default bus)")
    p.add_argument("--detail-type", help="event DetailType (default 'User Data')")
    p.add_argument("--timeout", type=float, dest="send_timeout", metavar="SECONDS",
                   help="give up sending after this long (default 30)")
    add_config(p)
    hook = p.add_mutually_exclusive_group()
    hook.add_argument("--continue", dest="hook_result", action="store_const", const="CONTINUE",
                      help="also complete the Auto Scaling lifecycle hook with CONTINUE")
    hook.add_argument("--abandon", dest="hook_result", action="store_const", const="ABANDON",
                      help="also complete the lifecycle hook with ABANDON (the instance is "
                      "replaced)")
    p.add_argument("--lifecycle-hook", metavar="NAME",
                   help="the hook for --continue/--abandon (default: 'lifecycle_hook' setting)")
    p.add_argument("--signal", action="store_true",
                   help="also signal CloudFormation: SUCCESS with --pass, FAILURE with --fail")
    p.add_argument("--no-spool", action="store_true",
                   help="do not keep an undelivered event for a later 'bosky flush'")
    p.add_argument("--dry-run", action="store_true",
                   help="print the PutEvents entry and its size; send nothing")
    p.add_argument("--permissions", action="store_true",
                   help="print the least-privilege IAM policy for this configuration")
    p.add_argument("--generate-config", action="store_true",
                   help="print a commented config file template")
    p.add_argument("--version", action="version", version=f"bosky {__version__}")
    return p


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    debug = "--debug" in args
    try:
        if not args:
            print(usage(), end="", file=sys.stderr)
            return EXIT_USAGE
        if args[0] in SUBCOMMANDS:
            return SUBCOMMANDS[args[0]](args[1:], env)
        _suggest(args)
        return send_command(args, env)
    except BoskyError as exc:
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug must still end in one line, not a traceback
        if debug:
            raise
        _err(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
        return EXIT_NOT_DELIVERED


def _suggest(args: Sequence[str]) -> None:
    """``bosky stauts``: a word close to a subcommand, with no status flag to
    make it a message, is a typo (without a status flag it could not be sent
    anyway). ``bosky --info stauts`` sends it as the Go original would."""
    import difflib

    if args[0].startswith("-") or any(a.split("=")[0] in _EVENT_FLAGS for a in args):
        return
    close = difflib.get_close_matches(args[0], list(SUBCOMMANDS), n=1, cutoff=0.6)
    if close:
        raise UsageError(f"unknown subcommand '{args[0]}': did you mean '{close[0]}'? "
                         f"(to send it as a message: bosky --info {args[0]})")


def _err(message: str) -> None:
    print(f"bosky: {printable(message)}", file=sys.stderr)


def send_command(argv: List[str], environ: Mapping[str, str]) -> int:
    args = event_parser().parse_args(argv)
    flags = {k: getattr(args, k) for k in
             ("project", "region", "event_bus", "endpoint_url", "detail_type", "send_timeout")}
    settings = config.resolve(flags, environ, args.config)
    if args.generate_config:
        print(config_template(), end="")
        return EXIT_OK
    from .. import identity as identity_mod

    instance_id = args.instance_id or environ.get("BOSKY_INSTANCE_ID") or None
    if args.permissions:
        ident = identity_mod.resolve(instance_id, environ)
        return _print_permissions(settings, ident.region, ident.account_id)
    if args.status is None:
        raise UsageError("say what happened: one of --pass, --fail, --info or --status STATUS")
    if not args.status.strip():
        raise UsageError("--status must not be empty")
    if len(args.status) > MAX_STATUS:
        raise UsageError(f"--status is longer than {MAX_STATUS} characters")
    if instance_id is not None and not _INSTANCE_ID.fullmatch(instance_id):
        raise UsageError("--instance-id (or BOSKY_INSTANCE_ID) must be 1 to 256 letters, digits "
                         "or ._:/-")
    message = _read_message(args.message, redacted=not args.verbatim)
    ident = identity_mod.resolve(instance_id, environ)
    from ..arns import send_region

    region = send_region(settings.event_bus, settings.region, ident.region)
    if not region:
        raise UsageError("no AWS region: pass --region, set AWS_REGION, or put 'region:' in "
                         f"{args.config or config.DEFAULT_CONFIG_FILE}")
    from ..arns import instance_arn
    from ..event import make_event

    event = make_event(
        source=settings.project,
        detail_type=settings.detail_type,
        status=args.status,
        message=message,
        identity=ident.detail_fields(),
        origin="command",
        resources=(instance_arn(ident.instance_id, ident.region or region, ident.account_id),)
        if ident.instance_id else (),
        event_bus=settings.event_bus,
    )
    from ..actions.command import command_actions

    actions = command_actions(settings, args.status, args.hook_result, args.lifecycle_hook,
                              args.signal, ident, environ, identity_mod.INSTANCE_DATA,
                              dry_run=args.dry_run)
    if args.dry_run:
        return _print_dry_run(event.entry(), [a.body() for a in actions])
    code = _deliver(event, settings, region, args.no_spool, environ)
    if actions:
        code = max(code, _act(actions, settings, ident.region or region, args.no_spool, environ))
    return code


def _read_message(message: Optional[str], redacted: bool) -> str:
    if message == "-":  # longer input is cut here and again, marked, by the event's size limit
        raw = sys.stdin.buffer.read(MAX_STDIN_MESSAGE + 1) if sys.stdin else b""
        message = raw[:MAX_STDIN_MESSAGE].decode("utf-8", "replace").rstrip("\n")
    return redact.redact(message or "") if redacted else message or ""


def _deliver(event: Any, settings: config.Settings, region: str, no_spool: bool,
             environ: Mapping[str, str]) -> int:
    from ..delivery.outbox import send
    from ..delivery.sender import Target
    from ..delivery.spool import Spool

    spool = None if no_spool else Spool(settings.spool_dir, settings.spool_max_events,
                                        settings.spool_max_bytes)
    target = Target(region, settings.endpoint_url, settings.send_timeout)
    (result,) = send([event], target, spool, environ)
    if result.outcome.delivered:
        return EXIT_OK
    why = f"event {event.event_id} not delivered: {result.outcome.reason()}"
    if result.spooled:
        why += "; spooled, 'bosky flush' retries it"
    elif result.rejected:
        why += "; set aside as rejected (never retried), 'bosky status' lists it"
    elif result.spool_error:
        why += f"; and not spooled: {result.spool_error}"
    _err(why)
    return EXIT_NOT_DELIVERED


def _act(actions: Sequence[Any], settings: config.Settings, region: str, no_spool: bool,
         environ: Mapping[str, str]) -> int:
    from ..delivery.deliverable import listing
    from ..delivery.outbox import act
    from ..delivery.spool import Spool

    spool = None if no_spool else Spool(settings.spool_dir, settings.spool_max_events,
                                        settings.spool_max_bytes)
    code = EXIT_OK
    for result in act(actions, region, settings.endpoints(), spool, environ,
                      settings.send_timeout):
        if result.outcome.delivered:
            continue
        why = f"{listing(result.event).what} not done: {result.outcome.reason()}"
        if result.spooled:
            why += "; spooled, 'bosky flush' retries it"
        elif result.rejected:
            why += "; set aside as rejected (never retried), 'bosky status' lists it"
        _err(why)
        code = EXIT_NOT_DELIVERED
    return code


def _print_dry_run(entry: Dict[str, Any], actions: Sequence[Any] = ()) -> int:
    from ..event import billing_units, entry_size

    size = entry_size(entry)
    out: Dict[str, Any] = {"Entries": [entry], "SizeBytes": size,
                           "BillingUnits": billing_units(size)}
    if actions:
        out["Actions"] = list(actions)
    print(safe_json(out))
    return EXIT_OK


def safe_json(data: Any) -> str:
    """Indented JSON with non-ASCII text kept readable but every character a
    terminal would act on escaped (still valid JSON, the same values)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _print_permissions(settings: config.Settings, region: Optional[str],
                       account_id: Optional[str]) -> int:
    from .policy import action_statements, put_events_policy

    policy = put_events_policy(settings.project, settings.detail_type, settings.event_bus,
                               settings.region or region, account_id)
    policy["Statement"] += action_statements(settings.lifecycle_hook, settings.cfn_signal,
                                             region or settings.region, account_id)
    print(json.dumps(policy, indent=2))
    return EXIT_OK


def config_template() -> str:
    """A commented config file, generated from the config schema."""
    lines = [
        "# bosky configuration: /etc/bosky/config.yaml, or the `bosky:` stanza of cloud-config.",
        "# Precedence: flags, then environment (BOSKY_<KEY>), then this file, then defaults.",
        "# Uncomment a '#key: value' line to change a setting.",
        "",
    ]
    for key, spec in config.schema()["properties"].items():
        lines.append(f"# {spec['description']}")
        if "enum" in spec:
            lines.append(f"# One of: {', '.join(spec['enum'])}.")
        default = spec.get("default")
        value = json.dumps(default) if default is not None else "<unset>"
        lines.append(f"#{key}: {value}")
        lines.append("")
    return "\n".join(lines)


# -- subcommands ---------------------------------------------------------


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
    from ..delivery.outbox import flush
    from ..delivery.spool import Spool, SpoolError

    spool = Spool(settings.spool_dir, settings.spool_max_events, settings.spool_max_bytes)
    try:
        report = flush(spool, environ, args.timeout or settings.send_timeout,
                       settings.endpoint_url, region=args.region,
                       action_endpoints=settings.endpoints())
    except SpoolError as exc:  # not "busy": another user's spool, or root's seen by a user
        raise BoskyError(str(exc)) from None
    if report.busy:
        _err("another bosky is flushing the spool; try again shortly")
        return EXIT_NOT_DELIVERED
    busy = f" ({report.in_flight} being sent by another bosky)" if report.in_flight else ""
    print(f"delivered {report.delivered}, still spooled {report.remaining}{busy}, "
          f"rejected {report.rejected}, corrupt {report.corrupt}")
    if report.remaining or report.rejected or report.corrupt:
        if report.last_error:
            _err(f"last error: {report.last_error}")
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
        raise BoskyError(str(exc)) from None
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
    if not verdict:
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


def _lazy(module: str, function: str) -> Callable[[List[str], Mapping[str, str]], int]:
    def run(argv: List[str], environ: Mapping[str, str]) -> int:
        import importlib

        handler: Callable[[List[str], Mapping[str, str]], int] = getattr(
            importlib.import_module(f"cc_bosky.{module}"), function)
        return handler(argv, environ)

    return run


SUBCOMMANDS: Dict[str, Callable[[List[str], Mapping[str, str]], int]] = {
    "flush": flush_command,
    "status": status_command,
    "schema": _lazy("tools.schema", "schema_command"),
    "install": _lazy("tools.install", "install_command"),
    "uninstall": _lazy("tools.install", "uninstall_command"),
    "doctor": _lazy("tools.doctor", "doctor_command"),
    "fleet": _lazy("tools.fleet", "fleet_command"),
}

__all__ = ["EXIT_NOT_DELIVERED", "EXIT_OK", "EXIT_USAGE", "main"]
