"""Hostile command lines: whatever argv holds, bosky ends with an exit code and
at most one escaped line of error, never a traceback.

Most runs are in-process (``cli.main(argv, environ)``) for speed; a few run
the real ``python -m cc_bosky`` to prove the same of the process, with
arguments that are not even UTF-8. Every run starts with ``--dry-run`` and has
IMDS disabled and its spool in a temporary directory: nothing is ever sent.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import unicodedata
from email import encoders
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple
from unittest import mock

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from cc_bosky.schemas import load
from cc_bosky.text import printable, safe_json
from cc_bosky.tools import cli

REPO = Path(__file__).resolve().parents[1]
DETAIL = jsonschema.Draft4Validator(load("detail"))


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text("project: fleet\n")
        yield Path(tmp)


def bosky_env(workdir: Path) -> Dict[str, str]:
    return {"AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true",
            "BOSKY_SPOOL_DIR": str(workdir / "spool"), "BOSKY_RUN_DIR": str(workdir / "run"),
            "BOSKY_CONFIG": str(workdir / "config.yaml")}


def run(argv: Sequence[str], environ: Mapping[str, str],
        stdin: bytes = b"") -> Tuple[int, str, str]:
    """bosky in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    fake_stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch.object(sys, "stdin", fake_stdin):
        try:
            code = cli.main(list(argv), environ)
        except SystemExit as exc:  # argparse's --help and --version
            code = exc.code if isinstance(exc.code, int) else 0
    return code, out.getvalue(), err.getvalue()


def unsafe_chars(text: str) -> List[str]:
    """Characters that act on a terminal or forge a line: C0/C1 controls,
    line separators, bidi overrides, lone surrogates."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs")
            or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069"]


def assert_well_behaved(code: int, out: str, err: str) -> None:
    assert code in (0, 1, 2), code
    assert "Traceback" not in out + err
    if code == 0:
        assert err == "", err
    else:
        # One line, "bosky: ...", nothing in it that a terminal would act on.
        assert err.startswith("bosky: ") and err.endswith("\n") and err.count("\n") == 1, err
        assert unsafe_chars(err[:-1]) == [], err
    # JSON escapes C0 controls in what --dry-run prints; C1 and the Unicode
    # separators are test_dry_run_escapes_c1_controls' business.
    assert [c for c in out if c < " " and c != "\n"] == [], out


# -- argv -----------------------------------------------------------------

_FLAGS = ["-p", "--pass", "--success", "-f", "--fail", "--failure", "-i", "--info",
          "--status", "--project", "--instance-id", "--region", "--event-bus",
          "--endpoint-url", "--detail-type", "--timeout", "--config", "--no-spool",
          "--permissions", "--generate-config", "--version", "--help", "-h", "--debug",
          "--continue", "--abandon", "--lifecycle-hook", "--signal",
          "--", "-", "--st", "--proj", "--status=", "--timeout=", "--bogus", "-x"]
_ANY_CHAR = st.characters(blacklist_categories=())  # surrogates included
_VALUES = st.one_of(
    st.text(_ANY_CHAR, max_size=20),
    st.sampled_from(["", " ", "\x1b[2J\x1b[H", "line\nforged: yes", "\u202egnp.exe", "\udcff",
                     "aws.ec2", "nan", "inf", "-1", "1e400", "us-east-1", "i-0abc", "é✓🚀",
                     "/nonexistent/config.yaml", "http://127.0.0.1:9"]),
    st.builds(lambda piece, n: piece * n, st.text(_ANY_CHAR, min_size=1, max_size=3),
              st.sampled_from([100, 257, 3000, 70_000])),
)
_ARGV = st.lists(st.one_of(st.sampled_from(_FLAGS), _VALUES), max_size=8)


def unopenable(path: str) -> bool:
    """A path open() refuses with ValueError, not OSError: a NUL, or a lone
    surrogate that is not a surrogate-escaped byte. Only reachable in-process:
    a real argv or environment can hold neither."""
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return True
    return "\x00" in path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=_ARGV, stdin=st.binary(max_size=50))
def test_any_arguments_end_in_an_exit_code_never_a_traceback(workdir: Path, argv: List[str],
                                                            stdin: bytes) -> None:
    argv = ["--dry-run", *argv]
    code, out, err = run(argv, bosky_env(workdir), stdin)
    assert_well_behaved(code, out, err)
    note_event(f"exit {code}")
    assert "internal error" not in err  # --dry-run never fails to deliver: 1 is a bug
    assert code in (0, 2)
    printed = json.loads(out) if code == 0 and out.startswith("{") else {}
    if "Entries" in printed:  # the dry run's entry, not --permissions' policy
        (entry,) = printed["Entries"]
        detail = json.loads(entry["Detail"])
        assert not [e.message for e in DETAIL.iter_errors(detail)]
        assert printed["SizeBytes"] <= 64 * 1024


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.sampled_from(["status", "schema", "flush"]), argv=_ARGV)
def test_any_arguments_to_a_subcommand_end_in_one_line_at_most(workdir: Path, first: str,
                                                              argv: List[str]) -> None:
    code, out, err = run([first, *argv], bosky_env(workdir))
    assert_well_behaved(code, out, err)
    assert "internal error" not in err


# -- user data for `bosky schema` -----------------------------------------------

_PREFIXES = ["#cloud-config\n", "#!/bin/sh\n", "## template: jinja\n#cloud-config\n",
             "#include\n", "#cloud-config-archive\n", "#cloud-boothook\n", "",
             "Content-Type: multipart/mixed\n\n", "MIME-Version: 1.0\n"]
_YAMLISH = st.sampled_from(["bosky:\n  project: web\n", "bosky:\n", "bosky: [1]\n",
                            "bosky:\n  deadline: {{ x }}\n", "{% if %}\n", "{{", "merge_how: 3\n",
                            "merge_how: 'list(+'\n", "- a\n", ": :\n", "\t\x00\x1b[2J",
                            "a: &x [*x]\n", "runcmd: [[echo, hi]]\n", "\udcff"])
_TEXT = st.builds(lambda prefix, body: prefix + "".join(body), st.sampled_from(_PREFIXES),
                  st.lists(st.one_of(_YAMLISH, st.text(_ANY_CHAR, max_size=30)), max_size=5))
_KINDS = ["cloud-config", "x-shellscript", "jinja2", "plain", "x-gzip", "cloud-config-jsonp",
          "x-include-url", "bogus"]


def _mime(parts: List[Tuple[str, str, str, bool]]) -> bytes:
    from email.mime.multipart import MIMEMultipart
    from email.mime.nonmultipart import MIMENonMultipart

    message = MIMEMultipart(boundary="==bosky-property==")  # base64 parts never contain it
    for kind, text, filename, zipped in parts:
        main = "application" if kind == "x-gzip" else "text"
        part = MIMENonMultipart(main, kind)
        raw = text.encode("utf-8", "surrogatepass")
        part.set_payload(gzip.compress(raw) if zipped or kind == "x-gzip" else raw)
        encoders.encode_base64(part)
        if filename:
            part.add_header("Content-Disposition", "attachment", filename=filename)
        message.attach(part)
    return message.as_bytes()


_MIME = st.builds(_mime, st.lists(st.tuples(st.sampled_from(_KINDS), _TEXT,
                                            st.text(_ANY_CHAR, max_size=12), st.booleans()),
                                  max_size=4))
_LAYERS = st.lists(st.sampled_from(["gzip", "base64", "truncate"]), max_size=3)


def _wrapped(blob: bytes, layers: List[str]) -> bytes:
    for layer in layers:
        blob = gzip.compress(blob) if layer == "gzip" else base64.b64encode(blob) \
            if layer == "base64" else blob[: len(blob) // 2]
    return blob


_USER_DATA = st.one_of(
    st.binary(max_size=300),
    st.builds(_wrapped, st.one_of(_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
                                  _MIME), _LAYERS),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=_USER_DATA, instance=st.booleans())
def test_any_user_data_ends_in_a_report_or_one_line_never_a_traceback(
        workdir: Path, blob: bytes, instance: bool) -> None:
    """Whatever a file holds, `bosky schema` ends in exit 0 or 2: a report on
    stdout, a `problem: ` line per problem, and at most one `bosky: ` line on
    stderr (a file that cannot be read)."""
    if instance:  # the same reader, as cloud-init got the bytes
        cloud = workdir / "root/var/lib/cloud/instances/i-1"
        cloud.mkdir(parents=True, exist_ok=True)
        (cloud / "user-data.txt").write_bytes(blob)
        argv = ["schema", "--instance", "--root", str(workdir / "root")]
    else:
        (workdir / "user-data").write_bytes(blob)
        argv = ["schema", str(workdir / "user-data")]
    code, out, err = run(argv, bosky_env(workdir))
    assert code in (0, 2), (code, err)
    assert "Traceback" not in out + err and "internal error" not in err, err
    lines = err.splitlines()
    assert len(lines) <= 1, err
    assert all(line.startswith("bosky: ") and not unsafe_chars(line) for line in lines), err
    assert not unsafe_chars(out.replace("\n", "")), out
    problems = [line for line in out.splitlines() if line.startswith("problem: ")] + lines
    assert bool(problems) == (code == 2), (out, err)
    note_event(f"exit {code}")


@pytest.mark.parametrize("argv, needle", [
    (["--pass", "--status", "x"], "not allowed with argument"),
    (["--pass", "one", "two"], "unrecognized arguments"),
    (["--timeout", "soon", "--pass"], "invalid float value"),
    (["--pass", "--project", "aws.ec2"], "project: 'aws.ec2' does not match"),
    (["--pass", "--project", "\x1b[2J"], "project: '\\x1b[2J' does not match"),
    (["--status", " "], "--status must not be empty"),
    (["m"], "say what happened"),
    (["--pass", "--region", "Mars"], "region: 'Mars' does not match"),
    (["--fail", "--abandon"], "--abandon needs a hook"),
    (["--fail", "--abandon", "--lifecycle-hook", "a b"], "lifecycle_hook: 'a b' does not"),
    (["--info", "--signal"], "--signal needs --pass (SUCCESS) or --fail (FAILURE)"),
    (["--fail", "--continue", "--lifecycle-hook", "h", "--instance-id", "i-1"],
     "a dry run does not look it up"),
])
def test_usage_errors_are_one_line_exit_2(workdir: Path, argv: List[str], needle: str) -> None:
    code, out, err = run(["--dry-run", *argv], bosky_env(workdir))
    assert_well_behaved(code, out, err)
    assert code == 2 and needle in err, err


def test_a_message_that_forges_a_terminal_is_data(workdir: Path) -> None:
    message = "ok\x1b]0;pwned\x07\r\nbosky: delivered\u2028\u202e"
    code, out, err = run(["--dry-run", "--fail", message], bosky_env(workdir))
    assert code == 0 and err == ""
    detail = json.loads(json.loads(out)["Entries"][0]["Detail"])
    assert detail["Message"] == message  # sent intact: the consumer gets the real text


def test_a_message_from_standard_input_that_is_not_utf8(workdir: Path) -> None:
    code, out, _ = run(["--dry-run", "--info", "-"], bosky_env(workdir), b"caf\xe9 \xff\n")
    assert code == 0
    assert json.loads(json.loads(out)["Entries"][0]["Detail"])["Message"] == "caf\ufffd \ufffd"


def test_dry_run_escapes_c1_controls(workdir: Path) -> None:
    code, out, _ = run(["--dry-run", "--fail", "a\x9b2Jb\u2028c\u202ed"], bosky_env(workdir))
    assert code == 0 and unsafe_chars(out.replace("\n", "")) == []


def test_an_over_long_status_is_a_usage_error(workdir: Path) -> None:
    code, _, err = run(["--dry-run", "--status", "s" * 300, "m"], bosky_env(workdir))
    assert code == 2 and err.startswith("bosky: ")


def test_an_absurd_instance_id_is_a_usage_error(workdir: Path) -> None:
    code, _, err = run(["--dry-run", "--pass", "--instance-id", "i" * 70_000, "m"],
                       bosky_env(workdir))
    assert code == 2 and "internal error" not in err


# -- the real process -------------------------------------------------------


def run_process(argv: Sequence[Any], env: Mapping[str, str]) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "cc_bosky", *argv], cwd=REPO, env=dict(env),
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def process_env(workdir: Path, **extra: str) -> Dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH")}
    return {**keep, **bosky_env(workdir), "PYTHONPATH": str(REPO), **extra}


@pytest.mark.parametrize("argv", [
    [b"--dry-run", b"--fail", b"caf\xe9 \xff\xfe not UTF-8"],
    [b"--dry-run", b"--pass", b"--project", b"\xff"],
    [b"--dry-run", b"--pass", b"--instance-id", b"i-\xed\xa0\x80"],
    [b"--dry-run", b"--status", b"\x1b[31m", b"--detail-type", b"\xc3"],
    [b"--dry-run", b"--pass", b"--config", b"/nonexistent/\xff.yaml", b"m"],
    [b"--dry-run", b"--nope\xff"],
    [b"--dry-run", b"--pass", b"-", b"--timeout", b"nan"],
], ids=["message", "project", "instance-id", "status", "config", "bad-flag", "nan"])
@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
def test_the_real_command_never_prints_a_traceback(workdir: Path, argv: List[bytes],
                                                   locale: str) -> None:
    done = run_process(argv, process_env(workdir, LC_ALL=locale))
    assert done.returncode in (0, 2), done.stderr
    assert b"Traceback" not in done.stdout + done.stderr
    done.stdout.decode("utf-8")  # whatever came in, what goes out is valid UTF-8
    if done.returncode == 2:
        assert done.stderr.startswith(b"bosky: ") and done.stderr.count(b"\n") == 1
        assert not any(b < 0x20 for b in done.stderr[:-1]), done.stderr


@settings(max_examples=8, deadline=None)
@given(argv=st.lists(st.one_of(st.sampled_from(_FLAGS[:28]), st.binary(min_size=1, max_size=12)
                               .filter(lambda b: b"\x00" not in b)), max_size=5))
def test_the_real_command_with_random_bytes(workdir: Path, argv: List[Any]) -> None:
    done = run_process([b"--dry-run", *(a if isinstance(a, bytes) else a.encode() for a in argv)],
                       process_env(workdir))
    assert done.returncode in (0, 2), done.stderr
    assert b"Traceback" not in done.stdout + done.stderr


def test_the_real_command_keeps_its_exit_code_contract(workdir: Path) -> None:
    done = run_process(["--version"], process_env(workdir))
    assert done.returncode == 0 and done.stdout.startswith(b"bosky ")
    done = run_process(["--dry-run", "--pass", "deployed"], process_env(workdir))
    assert done.returncode == 0 and json.loads(done.stdout)["Entries"][0]["Source"] == "fleet"


# -- printable() --------------------------------------------------------------


@given(st.text(_ANY_CHAR))
def test_printable_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    out = printable(text)
    assert unsafe_chars(out) == []
    assert "\t" not in out
    out.encode("utf-8")  # lone surrogates are escaped, not left to fail the print


@given(st.dictionaries(st.text(_ANY_CHAR), st.text(_ANY_CHAR), max_size=3))
def test_safe_json_is_the_same_json_with_nothing_a_terminal_acts_on(data: Dict[str, str]) -> None:
    """``bosky status --json``/``--dry-run``: one escaping rule with printable()'s."""
    out = safe_json(data)
    assert json.loads(out) == data
    assert [c for c in unsafe_chars(out) if c != "\n"] == []  # newlines: the indentation
    out.encode("utf-8")


@given(st.text(st.characters(whitelist_categories=("L", "M", "N", "P", "S", "Zs"))))
def test_printable_leaves_ordinary_unicode_alone(text: str) -> None:
    assert printable(text) == text


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[31mred", "\\x1b[31mred"),
    ("a\nb\rc", "a\\nb\\x0dc"),
    ("tab\there", "tab\\there"),
    ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
    ("\u2028\u2029", "\\u2028\\u2029"),
    ("\u202egnp.exe", "\\u202egnp.exe"),
    ("\udcff", "\\udcff"),
    ("déploiement ✓ 部署 🚀", "déploiement ✓ 部署 🚀"),
])
def test_printable_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_printable_on_several_lines_keeps_newlines_and_tabs() -> None:
    assert printable("a\n\tb\x1b", one_line=False) == "a\n\tb\\x1b"


_FLEET_FLAGS = ["--log-group", "--since", "--project", "--failures", "--json", "--region",
                "--endpoint-url", "--page-size", "--timeout", "--help", "--bogus", "--"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=st.lists(st.one_of(st.sampled_from(_FLEET_FLAGS), _VALUES), max_size=8))
def test_any_arguments_to_bosky_fleet_end_in_one_line_at_most(workdir: Path,
                                                             argv: List[str]) -> None:
    # Nothing listens on port 9: a request that passes every check is refused there.
    env = {**bosky_env(workdir), "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": "http://127.0.0.1:9",
           "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    code, out, err = run(["fleet", "--log-group", "g", "--timeout", "5", *argv], env)
    assert_well_behaved(code, out, err)
    assert "internal error" not in err
