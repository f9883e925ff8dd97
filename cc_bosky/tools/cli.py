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
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import config, redact
from ..errors import (
    EXIT_INTERRUPTED,
    EXIT_NOT_DELIVERED,
    EXIT_OK,
    EXIT_USAGE,
    BoskyError,
    DeliveryError,
    UsageError,
)
from ..text import safe_json
from ..version import __version__
from .args import Parser, add_config, add_connection
from .output import Progress, err

MAX_STDIN_MESSAGE = 1024 * 1024
MAX_STATUS = 256  # the detail schema's bound
# An instance id is one Resources entry (at most 2048 characters); real ones
# are i- and 17 hex digits, hand-made ones (`web-1`) must at least be sane.
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._:/-]{1,256}")


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
        err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug must still end in one line, not a traceback
        if debug:
            raise
        err(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
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


def send_command(argv: List[str], environ: Mapping[str, str]) -> int:
    args = event_parser().parse_args(argv)
    flags = {k: getattr(args, k) for k in
             ("project", "region", "event_bus", "endpoint_url", "detail_type", "send_timeout")}
    settings = config.resolve(flags, environ, args.config)
    for typo in config.env_typos(environ):
        err(f"warning: {typo}")
    if args.generate_config:
        print(config_template(), end="")
        return EXIT_OK
    from .. import awsconfig
    from .. import identity as identity_mod

    chosen = awsconfig.profile(args.profile, environ)
    awsconfig.check(chosen)
    # AWS's own region settings in the AWS CLI's order, after bosky's own
    # (--region, BOSKY_REGION, AWS_REGION, AWS_DEFAULT_REGION, 'region:').
    settings = settings.replace(region=settings.region or awsconfig.region(chosen))
    instance_id = args.instance_id or environ.get("BOSKY_INSTANCE_ID") or None
    if args.permissions:
        ident = identity_mod.resolve(instance_id, environ)
        if settings.project == config.Settings.project:
            err(f"warning: no project (--project, BOSKY_PROJECT or 'project:'): this policy "
                 f"allows only Source '{settings.project}'")
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
    ident = identity_mod.resolve(instance_id, environ, imds=False)
    from ..arns import send_region

    region = send_region(settings.event_bus, settings.region, ident.region)
    early = None
    if identity_mod.imds_would_help(ident, environ):
        # IMDS can be slow or hostile: the event is spooled before it is asked
        # (when a region to keep it for is known without it); the lookup has
        # its own deadline either way.
        if region and not args.dry_run and not args.no_spool:
            early = _spool_early(_command_event(settings, args.status, message, ident, region),
                                 settings, region)
        ident = identity_mod.resolve(instance_id, environ)
        region = send_region(settings.event_bus, settings.region, ident.region)
    if not region:
        raise UsageError("no AWS region: pass --region, set AWS_REGION, put 'region:' in "
                         f"{args.config or config.DEFAULT_CONFIG_FILE}, or set 'region' for "
                         f"profile '{chosen.name}' in {chosen.config_file}")
    event = _command_event(settings, args.status, message, ident, region,
                           early[1].event.event_id if early else None)
    from ..actions.command import command_actions

    try:
        actions = command_actions(settings, args.status, args.hook_result, args.lifecycle_hook,
                                  args.signal, ident, environ, identity_mod.INSTANCE_DATA,
                                  dry_run=args.dry_run)
        if args.dry_run:
            return _print_dry_run(event.entry(), [a.body() for a in actions])
        environ = awsconfig.sending_environ(chosen, environ)
        missing = awsconfig.no_credentials(chosen, environ)
        if missing:  # no source can ever answer: say so now, not after the whole send timeout
            raise DeliveryError(f"{missing}; event {event.event_id} not sent (and not spooled)")
    except BoskyError:
        if early:  # refused before sending: nothing is sent, later either
            early[0].remove(early[1])
        raise
    # One --timeout for the event and its actions: what the event leaves is
    # theirs, and what finds none left is spooled untried, as the event is.
    ends = time.monotonic() + settings.send_timeout
    with Progress(region, settings.send_timeout):
        code = _deliver(event, settings, region, args.no_spool, environ)
        if early:  # the delivery re-held (and settled) the same record
            early[0].release(early[1])
        if actions:
            code = max(code, _act(actions, settings, ident.region or region, args.no_spool,
                                  environ, ends - time.monotonic()))
    return code


def _command_event(settings: config.Settings, status: str, message: str, ident: Any,
                   region: str, event_id: Optional[str] = None) -> Any:
    from ..arns import instance_arn
    from ..event import make_event

    return make_event(
        source=settings.project,
        detail_type=settings.detail_type,
        status=status,
        message=message,
        identity=ident.detail_fields(),
        origin="command",
        resources=(instance_arn(ident.instance_id, ident.region or region, ident.account_id),)
        if ident.instance_id else (),
        event_bus=settings.event_bus,
        event_id=event_id,
    )


def _spool_early(event: Any, settings: config.Settings, region: str) -> Optional[Tuple[Any, Any]]:
    """(spool, record) holding ``event`` before anything that can hang, or None
    if the spool cannot take it now (the delivery tries again and says why)."""
    from ..delivery.outbox import NOT_SENT_YET
    from ..delivery.spool import Spool, SpoolError

    spool = Spool(settings.spool_dir, settings.spool_max_events, settings.spool_max_bytes)
    try:
        return spool, spool.put(event, region, settings.endpoint_url, NOT_SENT_YET, hold=True)
    except SpoolError:
        return None


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
    err(why)
    return EXIT_NOT_DELIVERED


def _act(actions: Sequence[Any], settings: config.Settings, region: str, no_spool: bool,
         environ: Mapping[str, str], budget: float) -> int:
    from ..delivery.deliverable import listing
    from ..delivery.outbox import act
    from ..delivery.spool import Spool

    spool = None if no_spool else Spool(settings.spool_dir, settings.spool_max_events,
                                        settings.spool_max_bytes)
    code = EXIT_OK
    for result in act(actions, region, settings.endpoints(), spool, environ, budget):
        if result.outcome.delivered:
            continue
        why = f"{listing(result.event).what} not done: {result.outcome.reason()}"
        if result.spooled:
            why += "; spooled, 'bosky flush' retries it"
        elif result.rejected:
            why += "; set aside as rejected (never retried), 'bosky status' lists it"
        err(why)
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


def _lazy(module: str, function: str) -> Callable[[List[str], Mapping[str, str]], int]:
    def run(argv: List[str], environ: Mapping[str, str]) -> int:
        import importlib

        handler: Callable[[List[str], Mapping[str, str]], int] = getattr(
            importlib.import_module(f"cc_bosky.{module}"), function)
        return handler(argv, environ)

    return run


SUBCOMMANDS: Dict[str, Callable[[List[str], Mapping[str, str]], int]] = {
    "flush": _lazy("tools.spooled", "flush_command"),
    "status": _lazy("tools.spooled", "status_command"),
    "schema": _lazy("tools.schema", "schema_command"),
    "install": _lazy("tools.install", "install_command"),
    "uninstall": _lazy("tools.install", "uninstall_command"),
    "doctor": _lazy("tools.doctor", "doctor_command"),
    "fleet": _lazy("tools.fleet", "fleet_command"),
}

__all__ = ["EXIT_NOT_DELIVERED", "EXIT_OK", "EXIT_USAGE", "main", "safe_json"]
