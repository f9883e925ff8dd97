"""``bosky schema FILE``: check user data before it ships, as cloud-init will read it.

The file is read like EC2 and cloud-init read user data (tools/userdata.py:
base64, gzip, MIME multipart); each cloud-config part is validated against
cloud-init's schema extended with bosky's stanza, then the parts are merged
the way cloud-init merges them and the merged config is validated too.
Scripts and other parts are listed, not validated. The whole report goes to
stdout (``--json``: as one JSON object), ending with what was not checked and
how to get it checked; only a file that cannot be read is a one-line error
on stderr. Exit 0 valid, 2 invalid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from .. import config, layers, validation
from ..boot.cloudconfig import merge, problems
from ..errors import EXIT_OK, EXIT_USAGE, ConfigError, UsageError
from ..text import printable
from . import userdata
from .args import subcommand

#: Where cloud-init keeps the user data it was given (root only, 0600).
INSTANCE_USER_DATA = "/var/lib/cloud/instance/user-data.txt"
MAX_FILE = 16 * 1024 * 1024
#: The whole check's wall-clock bound (hostile YAML, a huge file).
CHECK_SECONDS = 60.0
_WITH_CLOUD_INIT = "cloud-init's schema with bosky's stanza"
_STDIN = "-"
_UNEXPECTED = re.compile(r"bosky: Additional properties are not allowed "
                         r"\('([^']+)' was unexpected\)$")
# How to get each kind of part bosky schema lists but cannot check, checked.
_SCRIPT_HINT = "check it with shellcheck"
_HINTS = {"text/x-include-url": "fetch each URL and check it with bosky schema",
          "text/x-include-once-url": "fetch each URL and check it with bosky schema",
          userdata.JSON_PATCH: "apply it by hand and check the result with bosky schema"}
# Offline a template is checked with each expression standing for a value.
_PLACEHOLDER = "__jinja__"
_JINJA_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
_JINJA_STATEMENT_LINE = re.compile(r"^[ \t]*\{%.*?%\}[ \t]*\n?", re.M | re.S)
_JINJA_STATEMENT_OR_COMMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.S)


@dataclasses.dataclass
class Report:
    """What ``bosky schema`` says: the summary lines, then the problems, the
    warnings, and what was not checked (each saying how to get it checked)."""

    lines: List[str] = dataclasses.field(default_factory=list)
    problems: List[str] = dataclasses.field(default_factory=list)
    warnings: List[str] = dataclasses.field(default_factory=list)
    not_checked: List[str] = dataclasses.field(default_factory=list)
    merged: Optional[Dict[str, Any]] = None

    def findings(self) -> List[str]:
        """The problems, warnings and what was not checked, one line each."""
        return ([f"problem: {p}" for p in self.problems]
                + [f"warning: {w}" for w in self.warnings]
                + [f"not checked: {n}" for n in self.not_checked or ["nothing"]])

    def as_json(self) -> Dict[str, Any]:
        return {"Valid": not self.problems, "Summary": self.lines, "Problems": self.problems,
                "Warnings": self.warnings, "NotChecked": self.not_checked}


def schema_command(argv: List[str], environ: Mapping[str, str]) -> int:
    """``bosky schema FILE`` or ``bosky schema --instance``."""
    p = subcommand("schema", "Validate user data (#cloud-config, MIME multipart, gzip, base64, "
                   "jinja templates) or a cloud.cfg.d file against cloud-init's schema "
                   "extended with bosky's stanza, reading it as cloud-init does.", config=False)
    p.add_argument("file", nargs="?", help="user data as handed to EC2, or a "
                   "/etc/cloud/cloud.cfg.d/ file; '-' reads standard input")
    p.add_argument("--instance", action="store_true",
                   help=f"check this instance's own user data ({INSTANCE_USER_DATA}; root only)")
    p.add_argument("--root", metavar="DIR",
                   help="with --instance: the instance's file system is under DIR (default /)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help="the report as one JSON object (Valid, Summary, Problems, Warnings, "
                     "NotChecked)")
    out.add_argument("--merged", action="store_true",
                     help="print the merged cloud-config (as cloud-init merges the parts) "
                     "instead of the report (the findings go to stderr)")
    args = p.parse_args(argv)
    if args.instance == bool(args.file):
        raise UsageError("give a FILE or --instance, not both or neither "
                         "(see 'bosky schema --help')")
    if args.root is not None and not args.instance:
        raise UsageError("--root goes with --instance (see 'bosky schema --help')")
    path = instance_user_data(args.root or "/") if args.instance else args.file
    label = "stdin" if path == _STDIN else path
    with time_limit(CHECK_SECONDS, label):
        report = check(_read(path, args.instance), label, ec2_decodes_base64=not args.instance)
    if args.merged:
        import yaml

        print("#cloud-config\n" + yaml.safe_dump(report.merged or {}, sort_keys=False), end="")
        for line in report.findings():
            print(f"bosky: {printable(line)}", file=sys.stderr)
    elif args.json:
        from ..text import safe_json

        print(safe_json(report.as_json()))
    else:
        for line in (*report.lines, *report.findings()):
            print(printable(line))
    return EXIT_USAGE if report.problems else EXIT_OK


def instance_user_data(root: str) -> str:
    """user-data.txt under ``root``; cloud-init's ``instance`` link is
    absolute, so it is followed within ``root``."""
    cloud_dir = os.path.join(root, "var/lib/cloud")
    link = os.path.join(cloud_dir, "instance")
    try:
        target = os.readlink(link)
    except OSError:  # not a link (or absent: the read says so)
        return os.path.join(link, "user-data.txt")
    if os.path.isabs(target):
        return os.path.join(root, target.lstrip("/"), "user-data.txt")
    return os.path.join(cloud_dir, target, "user-data.txt")


class _OutOfTime(BaseException):
    """Raised by the timer; a BaseException, so no ``except Exception`` on the
    way (cloud-init's mergers, the validator) takes it for a finding."""


@contextlib.contextmanager
def time_limit(seconds: float, label: str) -> Iterator[None]:
    """Give up on ``label`` after ``seconds`` of wall-clock time, in one line
    (UsageError, exit 2): with YAML's own bounds (layers.load_yaml) and the
    file's size bound, this holds what no other bound catches, such as
    cloud-init's validator on a large document."""
    import signal

    def expire(signum: int, frame: Any) -> None:
        raise _OutOfTime()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _OutOfTime:
        raise UsageError(f"{label}: not checked: gave up after {seconds:.0f} s (too large or "
                         "too nested to be user data)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _read(path: str, instance: bool) -> bytes:
    if path == _STDIN:
        return sys.stdin.buffer.read(MAX_FILE) if sys.stdin else b""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
        if len(raw) > MAX_FILE:
            raise UsageError(f"{path}: refused: larger than {MAX_FILE // (1024 * 1024)} MiB "
                             "(EC2 takes at most 16 KiB of user data)")
        return raw
    except PermissionError:
        hint = " (only root can read it: sudo bosky schema --instance)" if instance else ""
        raise UsageError(f"cannot read {path}: permission denied{hint}") from None
    except OSError as exc:
        hint = " (no user data, or cloud-init has not run)" if instance else ""
        raise UsageError(f"cannot read {path}: {exc.strerror}{hint}") from None
    except ValueError:  # a NUL or an unencodable character in the path
        raise UsageError(f"cannot read {path!r}: not a valid path") from None


def check(raw: bytes, label: str, ec2_decodes_base64: bool = True) -> Report:
    """The report on ``raw``, named ``label`` in every line."""
    report = Report()
    data = userdata.read(raw, ec2_decodes_base64, _load_archive)
    report.problems += [f"{label}: {p}" for p in data.problems]
    parts = list(data.parts)
    # One #cloud-config document: one line, as for any YAML file.
    plain = not data.layers and len(parts) == 1 and parts[0].content_type in (
        userdata.CLOUD_CONFIG, userdata.NOT_MULTIPART)
    if plain and parts[0].content_type == userdata.NOT_MULTIPART:
        if report.problems:  # what the reader found says it all
            report.lines.append(f"{label}: not user data cloud-init reads")
            return report
        return _drop_in(raw, label, report)
    if not plain:
        count = f"{len(parts)} part" + ("" if len(parts) == 1 else "s")
        report.lines.append(f"{label}: {', '.join((*data.layers, count))}")
    found: List[Tuple[str, Dict[str, Any], str]] = []
    for part in parts:
        origin = label if plain else f"{label}: {part.name}"
        summary, document = _check_part(part, origin, report)
        report.lines.append(f"{label}: {summary}" if plain else
                            f"  {part.name} ({part.content_type}): {summary}")
        if document is not None:
            found.append((part.name, document, part.merge_type))
    if data.size > userdata.EC2_MAX_BYTES:
        report.warnings.append(f"{label}: {data.size} bytes: EC2 takes at most "
                               f"{userdata.EC2_MAX_BYTES} bytes of user data (gzip it)")
    if not found:
        if not report.problems:
            report.lines.append(f"{label}: no cloud-config part: nothing to validate")
            report.warnings.append(f"{label} has no 'bosky' key: the module will not run "
                                   "with this user data alone")
        return report
    _check_merged(found, label, plain, report)
    return report


def _load_archive(text: str) -> Any:
    return layers.load_yaml(text.encode("utf-8", "surrogateescape"), "#cloud-config-archive")


def _check_part(part: userdata.Part, origin: str,
                report: Report) -> Tuple[str, Optional[Dict[str, Any]]]:
    """(one-line summary, the cloud-config mapping to merge or None)."""
    if part.content_type == userdata.CLOUD_CONFIG:
        return _validate(part.text, origin, report)
    if part.content_type == userdata.JINJA:
        return _jinja(part, origin, report)
    what = userdata.HANDLED.get(part.content_type)
    if what is None:
        report.warnings.append(f"{origin}: cloud-init has no handler for {part.content_type} "
                               "and ignores this part")
        return "ignored by cloud-init", None
    if part.content_type == userdata.JSON_PATCH:
        report.warnings.append(f"{origin}: {what}; bosky schema does not check it")
    if part.content_type != userdata.ARCHIVE:
        hint = _HINTS.get(part.content_type, _SCRIPT_HINT if "script" in what or "boothook" in what
                          else "cloud-init runs it as it is")
        report.not_checked.append(f"{origin}: {what}: {hint}")
    return f"{what}; not validated", None


def _validate(text: str, origin: str, report: Report,
              ignore: str = "") -> Tuple[str, Optional[Dict[str, Any]]]:
    try:
        document = config.parse_yaml(text.encode("utf-8", "surrogateescape"), origin)
    except layers.RefusedYaml as exc:
        report.problems.append(str(exc))
        # The report must not then end with "not checked: nothing".
        report.not_checked.append(f"{origin}: all of it (cloud-init's keys and bosky's stanza): "
                                  "its YAML was refused before validation (the problem above); "
                                  "remove that cause and run bosky schema again")
        return "not checked (refused)", None
    except ConfigError as exc:
        report.problems.append(str(exc) + " (cloud-init skips this part)")
        return "not valid YAML", None
    document = _normalized(document)
    try:
        found = [f for f in problems(document)[0] if not (ignore and ignore in f)]
    except RecursionError:  # YAML aliases can make a structure that contains itself
        report.problems.append(f"{origin}: nested too deep to check (a YAML alias to itself?)")
        report.not_checked.append(f"{origin}: all of it: remove the alias that contains itself "
                                  "and run bosky schema again")
        return "not checked", None
    report.problems += [f"{origin}: {_suggested(f)}" for f in found]
    return (f"{len(found)} problem(s)" if found else "valid"), document


def _suggested(problem: str) -> str:
    """cloud-init's validator names an unknown key of the stanza; add the
    key it was probably meant to be, as bosky's own validator does."""
    match = _UNEXPECTED.match(problem)
    if not match:
        return problem
    return problem + validation.did_you_mean(match.group(1), config.keys())


def _normalized(document: Dict[str, Any]) -> Dict[str, Any]:
    if "bosky" in document and document["bosky"] is None:
        document["bosky"] = {}  # `bosky:` with nothing under it: the boot reads it as {}
    return document


def _jinja(part: userdata.Part, origin: str,
           report: Report) -> Tuple[str, Optional[Dict[str, Any]]]:
    """A template cannot be rendered without the instance's data; its syntax
    (when jinja2 is importable) and what YAML it has without the template
    parts can be checked."""
    body = part.text.split("\n", 1)[1] if "\n" in part.text else ""
    kind = userdata.sniff(body)
    syntax = _jinja_syntax(body)
    if syntax:
        report.problems.append(f"{origin}: jinja: {syntax} (cloud-init skips this part)")
        return "a jinja template with a syntax error", None
    if kind != userdata.CLOUD_CONFIG:
        what = userdata.HANDLED.get(kind or "", "")
        if not what:
            report.warnings.append(f"{origin}: a jinja template whose first line after the "
                                   "header has no type cloud-init knows: ignored at boot")
            return "ignored by cloud-init", None
        return f"a jinja template of {what}; not validated", None
    report.not_checked.append(f"{origin}: the values of its {{{{ }}}} (a jinja template "
                              "cannot be rendered offline): on a booted instance, "
                              "sudo cloud-init schema --system")
    stripped = _JINJA_STATEMENT_LINE.sub("", body)
    stripped = _JINJA_STATEMENT_OR_COMMENT.sub("", stripped)
    stripped = _JINJA_EXPRESSION.sub(_PLACEHOLDER, stripped)
    summary, document = _validate(stripped, origin, report, ignore=_PLACEHOLDER)
    return f"jinja template, unrendered: {summary}", document


def _jinja_syntax(body: str) -> str:
    try:
        import jinja2
    except ImportError:
        return ""
    try:
        jinja2.Environment(extensions=["jinja2.ext.do"]).parse(body)
    except jinja2.TemplateSyntaxError as exc:
        return f"line {exc.lineno + 1}: {str(exc.message).rstrip('.')}"
    except Exception:  # whatever else jinja2 cannot parse, cloud-init reports at boot
        return "cannot be parsed"
    return ""


def _check_merged(found: List[Tuple[str, Dict[str, Any], str]], label: str, plain: bool,
                  report: Report) -> None:
    merged, parts, with_mergers = merge(found)
    report.merged = merged
    for part in parts:
        if part.problem:
            report.problems.append(f"{label}: {part.name}: {part.problem}")
        for key in part.replaced:
            report.warnings.append(f"{label}: {part.name} replaces the whole '{key}' of an "
                                   "earlier part (cloud-init's default merge; set merge_how "
                                   "to combine them)")
    found_problems, with_cloud_init = problems(merged)
    found_problems = [_suggested(f) for f in found_problems if _PLACEHOLDER not in f]
    theirs = sorted(str(k) for k in merged if k != "bosky")
    if with_cloud_init:
        scope = f"valid ({_WITH_CLOUD_INIT})"
    elif theirs:  # a misspelt 'runcmnd:' must not read as valid
        scope = "bosky's stanza valid, cloud-init's keys not checked"
        shown = ", ".join(theirs[:10]) + (", ..." if len(theirs) > 10 else "")
        report.not_checked.append(
            f"{label}: cloud-init's own keys ({shown}): cloud-init is not importable by this "
            f"Python ({sys.executable}); run bosky schema with the Python that runs cloud-init "
            "(on the image: python3 -m cc_bosky schema FILE), or cloud-init schema -c FILE")
    else:
        scope = "valid (bosky's stanza; no cloud-init keys to check)"
    # A part's own problem is reported once, under the part's name.
    seen = list(report.problems)
    report.problems += [f"{label}: merged: {f}" for f in found_problems
                        if not any(p.endswith(f": {f}") for p in seen)]
    verdict = f"{len(found_problems)} problem(s)" if found_problems else scope
    if plain:  # the one line says it all
        report.lines[-1:] = [f"{label}: {verdict}"]
    else:
        names = ", ".join(part.name for part in parts if not part.problem) or "no part"
        how = "" if with_mergers else ", default merge only"
        report.lines.append(f"{label}: merged cloud-config of {names}{how}: {verdict}")
    if "bosky" not in merged:
        # Older cloud-init schemas accept unknown top-level keys, so a typo
        # such as 'boksy:' passes them; without the key the module never runs.
        report.warnings.append(f"{label} has no 'bosky' key: the module will not run with "
                               "this file alone")


def _drop_in(raw: bytes, label: str, report: Report) -> Report:
    """A file with no user-data type: a /etc/cloud/cloud.cfg.d/ file, which
    cloud-init reads as plain YAML (as user data it would be ignored)."""
    try:
        document = config.parse_yaml(raw, label)
    except ConfigError as exc:
        report.problems.append(f"{exc}; and not user data cloud-init knows either (user data "
                               "starts with '#cloud-config', '#!' or a MIME header)")
        return report
    if document:
        report.warnings.append(f"{label}: read as a /etc/cloud/cloud.cfg.d/ file (no "
                               "'#cloud-config' first line: as user data cloud-init would "
                               "ignore it)")
    _check_merged([(label, _normalized(document), "")], label, True, report)
    return report
