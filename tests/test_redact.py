"""Secrets never leave the instance in a log tail; ordinary log text does, unchanged.

The scenarios are lines a user-data script really prints. Every secret-shaped
value below is either AWS's documented example or made up at run time, so
this file itself holds nothing a secret scanner should flag.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import string
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cc_bosky.boot.logtail import tail
from cc_bosky.redact import MASK, redact
from tests.support import secrets

# AWS's documented example credentials.
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
_RNG = random.Random(4)


def _token(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


# Assembled here so no complete token sits in the source.
SESSION_TOKEN = "IQoJb3JpZ2luX2Vj" + _token(300, string.ascii_letters + string.digits + "/+")
GITHUB_TOKEN = "gh" + "p_" + _token(36)
GITHUB_PAT = "github" + "_pat_" + _token(82, string.ascii_letters + string.digits + "_")
SLACK_TOKEN = "xox" + "b-" + "-".join([_token(12, string.digits), _token(12, string.digits),
                                      _token(24)])
JWT = ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (
    b'{"alg":"HS256","typ":"JWT"}', b'{"sub":"deploy","exp":1999999999}', os.urandom(32)))
PASSWORD = "hunter2-Correct-Horse"


def pem(label: str, lines: int = 12, headers: str = "") -> str:
    body = "\n".join(_token(64, string.ascii_letters + string.digits + "+/") for _ in range(lines))
    return f"-----BEGIN {label}-----\n{headers}{body}\n-----END {label}-----"


RSA_KEY = pem("RSA PRIVATE KEY")
EC_KEY = pem("EC PRIVATE KEY", 3)
OPENSSH_KEY = pem("OPENSSH PRIVATE KEY", 7)
PKCS8_KEY = pem("PRIVATE KEY", 10)
ENCRYPTED_PKCS8 = pem("ENCRYPTED PRIVATE KEY", 10)
LEGACY_ENCRYPTED = pem("RSA PRIVATE KEY", 12, "Proc-Type: 4,ENCRYPTED\n"
                       "DEK-Info: AES-128-CBC,0F1E2D3C4B5A69788796A5B4C3D2E1F0\n\n")
PGP_KEY = pem("PGP PRIVATE KEY BLOCK", 8, "Version: GnuPG v2\n\n")


def body_lines(key: str) -> List[str]:
    """The secret part of a PEM block: every line that is not BEGIN, END or a header."""
    return [line for line in key.splitlines()
            if line and not line.startswith("-----") and ":" not in line]


# (scenario, log text, the secret strings that must be gone)
LEAKS = [
    ("a script exporting its access key id", f"+ export AWS_ACCESS_KEY_ID={ACCESS_KEY_ID}",
     [ACCESS_KEY_ID]),
    ("a temporary key id in prose", "using ASIAY34FZKBOKMUTVV7A from the instance role",
     ["ASIAY34FZKBOKMUTVV7A"]),
    ("a secret key echoed bare", f"+ echo {SECRET_KEY}", [SECRET_KEY]),
    ("a credentials file printed by cat",
     f"[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_KEY}\n"
     f"aws_session_token = {SESSION_TOKEN}", [ACCESS_KEY_ID, SECRET_KEY, SESSION_TOKEN]),
    ("environment variables dumped by env",
     f"AWS_SECRET_ACCESS_KEY={SECRET_KEY}\nAWS_SESSION_TOKEN={SESSION_TOKEN}",
     [SECRET_KEY, SESSION_TOKEN]),
    ("the instance role's credentials fetched from IMDS",
     f'{{"Code" : "Success", "AccessKeyId" : "{ACCESS_KEY_ID}", "SecretAccessKey" : '
     f'"{SECRET_KEY}", "Token" : "{SESSION_TOKEN}", "Expiration" : "2030-01-01T00:00:00Z"}}',
     [ACCESS_KEY_ID, SECRET_KEY, SESSION_TOKEN]),
    ("curl -v showing a bearer token",
     f"> GET /v1/artifacts HTTP/1.1\n> Authorization: Bearer {JWT}\n> Accept: */*",
     [JWT, JWT.split(".")[2]]),
    ("a bearer token in a curl command line",
     f'+ curl -fsS -H "Authorization: Bearer {GITHUB_TOKEN}" https://api.example.com/',
     [GITHUB_TOKEN]),
    ("basic auth header", "Authorization: Basic " + base64.b64encode(
        f"deploy:{PASSWORD}".encode()).decode(),
     [base64.b64encode(f"deploy:{PASSWORD}".encode()).decode()]),
    ("a lower-case authorization assignment", f"authorization=token {GITHUB_TOKEN}",
     [GITHUB_TOKEN]),
    ("a bare JWT", f"session established: {JWT}", [JWT]),
    ("a script echoing its database password", f"connecting with password={PASSWORD}",
     [PASSWORD]),
    ("mysql --password=", f"+ mysql --password={PASSWORD} -e 'select 1'", [PASSWORD]),
    ("--password as its own argument", f"+ createuser --password {PASSWORD} app", [PASSWORD]),
    ("--password quoted with spaces", "+ tool --password 'correct horse battery' run",
     ["correct horse battery", "correct", "battery"]),
    ("a YAML dump in capitals", f"DATABASE:\n  PASSWORD: {PASSWORD}\n  HOST: db", [PASSWORD]),
    ("a JSON token", f'{{"user": "deploy", "token": "{SESSION_TOKEN[:40]}x"}}',
     [SESSION_TOKEN[:40]]),
    ("a JSON api key without spaces", f'{{"api_key":"{_token(32)}"}}', []),
    ("an env var named *_PASS", f"+ export DB_PASS={PASSWORD}", [PASSWORD]),
    ("PGPASSWORD before a command", f"+ PGPASSWORD={PASSWORD} psql -h db", [PASSWORD]),
    ("mysql with the password glued to -p", f"+ mysql -uroot -p{PASSWORD} app < schema.sql",
     [PASSWORD]),
    ("curl -u user:password", f"+ curl -u deploy:{PASSWORD} https://repo.example/x", [PASSWORD]),
    ("a git URL with credentials",
     f"+ git clone https://deploy:{PASSWORD}@git.example.com/app.git", [PASSWORD]),
    ("a database URL", f"DATABASE_URL=postgres://app:{PASSWORD}@db:5432/app", [PASSWORD]),
    ("a redis URL with only a password", f"connecting to redis://:{PASSWORD}@cache:6379/0",
     [PASSWORD]),
    ("a GitHub token", f"+ git push https://{GITHUB_TOKEN}@github.com/o/r.git", [GITHUB_TOKEN]),
    ("a fine-grained GitHub token", f"GH_TOKEN {GITHUB_PAT}", [GITHUB_PAT]),
    ("a Slack bot token", f"notifying with {SLACK_TOKEN}", [SLACK_TOKEN]),
    ("a cookie header", f"> Cookie: sessionid={_token(32)}", []),
    ("an RSA key printed by cat", f"+ cat /root/.ssh/id_rsa\n{RSA_KEY}\n+ done",
     body_lines(RSA_KEY)),
    ("an EC key", EC_KEY, body_lines(EC_KEY)),
    ("an OpenSSH key", f"key:\n{OPENSSH_KEY}", body_lines(OPENSSH_KEY)),
    ("a PKCS#8 key", PKCS8_KEY, body_lines(PKCS8_KEY)),
    ("an encrypted PKCS#8 key", ENCRYPTED_PKCS8, body_lines(ENCRYPTED_PKCS8)),
    ("a legacy encrypted RSA key", LEGACY_ENCRYPTED, body_lines(LEGACY_ENCRYPTED)),
    ("a PGP private key block", PGP_KEY, body_lines(PGP_KEY)),
    ("a key cut off by the end of the tail", "\n".join(RSA_KEY.splitlines()[:6]),
     body_lines("\n".join(RSA_KEY.splitlines()[:6]))),
    ("a key whose BEGIN was cut off by the start of the tail",
     "\n".join(RSA_KEY.splitlines()[5:]) + "\n+ systemctl restart app",
     body_lines("\n".join(RSA_KEY.splitlines()[5:]))),
    ("a key inside a JSON string", '{"private_key": "' + RSA_KEY.replace("\n", "\\n") + '"}',
     body_lines(RSA_KEY)),
]


@pytest.mark.parametrize("text, secrets", [(t, s) for _, t, s in LEAKS],
                         ids=[name for name, _, _ in LEAKS])
def test_nothing_secret_remains(text: str, secrets: List[str]) -> None:
    out = redact(text)
    for secret in secrets:
        assert secret not in out
    assert "REDACTED" in out
    # Redacting twice changes nothing more: the spool re-reads events.
    assert redact(out) == out


def test_a_masked_line_still_tells_what_was_there() -> None:
    assert redact(f"+ mysql --password={PASSWORD} -e 'select 1'") == \
        f"+ mysql --password={MASK} -e 'select 1'"
    assert redact(f"export AWS_ACCESS_KEY_ID={ACCESS_KEY_ID}") == \
        "export AWS_ACCESS_KEY_ID=[REDACTED-AWS-ACCESS-KEY-ID]"
    assert redact(RSA_KEY) == \
        f"-----BEGIN RSA PRIVATE KEY----- {MASK} -----END RSA PRIVATE KEY-----"
    assert redact('{"token": "abc123xyz"}') == f'{{"token": "{MASK}"}}'


UNTOUCHED = [
    "HEAD is now at 3f786850e387550fdab836ed7e6dc881de23001b Fix the build",
    "boot id 6f1c1c7e-2b0e-4f7c-9a3b-4b1f4c2d9e10",
    "Digest: sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "password policy updated",
    "Updated the password policy for 3 users",
    "token bucket refilled at 10/s",
    "tests passed: 12, failed: 0, bypassed: 1",
    "PASS: test-login",
    "Setting up openssl (3.0.11-1~deb12u2) ...",
    "Unpacking libsecret-1-0:amd64 (0.20.5-3) ...",
    "Selecting previously unselected package libsecret-common.",
    "Get:7 http://mirror.example/debian bookworm/main amd64 libpam-modules amd64 1.5.2-6 [...]",
    "pip: Successfully installed requests-2.32.3 urllib3-2.2.2 keyring-25.2.1",
    "payload aGVsbG8gd29ybGQ= decoded",
    "wrote /var/lib/cloud/instance/scripts/part-001",
    "reading /etc/ssl/private/ssl-cert-snakeoil.key",
    "assumed arn:aws:iam::123456789012:role/bosky-instance-role",
    "bus arn:aws:events:us-east-1:123456789012:event-bus/ops",
    "instance i-0abcdef1234567890 from ami-0123456789abcdef0 in subnet-0a1b2c3d",
    "Cloud-init v. 25.1.4 finished at Tue, 01 Jul 2025 10:00:00 +0000. "
    "Datasource DataSourceEc2Local.  Up 12.34 seconds",
    "Generating public/private ed25519 key pair.",
    "The key fingerprint is: SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU root@host",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop",
    "PasswordAuthentication no",
    "Reading state information... Done",
    "ssh -p 2222 deploy@10.0.0.5",
    "-----------------------------------------------------------------------",
    "2025-07-01T10:00:00Z INFO https://example.com:8443/health returned 200",
    # cloud-init's own output
    "ci-info: ++++++++Authorized keys from /home/admin/.ssh/authorized_keys for user admin++++++",
    "ci-info: | ssh-ed25519 | 2b:9f:6a:11:0c:aa:bb:cc:dd:ee:ff:00:11:22:33:44 | - | ops@laptop |",
    "Cloud-init v. 25.1.4 running 'modules:config' at Tue, 01 Jul 2025 10:00:00 +0000. "
    "Up 4.56 seconds.",
    "2025-07-01 10:00:00,123 - util.py[WARNING]: Failed to run module scripts_user "
    "(scripts in /var/lib/cloud/instance/scripts)",
    "npm WARN deprecated uuid@3.4.0: Please upgrade to version 7 or higher.",
    "Successfully tagged registry.example.com/app:1.2.3",
]


@pytest.mark.parametrize("text", UNTOUCHED)
def test_ordinary_log_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_redaction_never_raises_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert isinstance(once, str)
    assert redact(once) == once


# Log-ish text: the characters secrets and their keys are made of, so the
# rules actually fire on generated input.
_LOGGY = st.text(alphabet=st.sampled_from(list(
    "aAzZ09/+=-_.:;,'\" \n\t@{}[]" "pwdsecrtokenPASWORD" "-----BEGIN PRIVATE KEY")), max_size=200)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_LOGGY, st.sampled_from([t for _, t, _ in LEAKS] + UNTOUCHED)),
                max_size=6))
def test_redaction_is_idempotent_on_log_like_text(parts: List[str]) -> None:
    once = redact("\n".join(parts))
    assert redact(once) == once


# Any valid text but a newline: a whole log line of its own.
_NOISE_LINE = st.text(st.characters(codec="utf-8", blacklist_characters="\n"), max_size=80)


@settings(max_examples=200, deadline=None)
@given(before=st.lists(_NOISE_LINE, max_size=4), after=st.lists(_NOISE_LINE, max_size=4),
       leak=st.sampled_from(LEAKS))
def test_a_secret_among_other_log_lines_is_still_redacted(
        before: List[str], after: List[str], leak: tuple) -> None:  # type: ignore[type-arg]
    _, text, secrets = leak
    out = redact("\n".join([*before, text, *after]))
    for secret in secrets:
        assert secret not in out


@pytest.mark.parametrize("run", ["a", "-", "a.", "Ab/+", "--x", "x=", "\n", "-u a:", "mysql -p ",
                                 "http://", "A\n-----END RSA PRIVATE KEY-----\n", "auth",
                                 "password", "--password", "a_pass-", "authorization:",
                                 "-----BEGIN RSA PRIVATE KEY-----"])
def test_one_huge_line_is_redacted_in_linear_time(run: str) -> None:
    # The reporter redacts up to 256 KiB before it can send the verdict; a
    # rule that rescans a run from each position took minutes here, and one
    # with unbounded keys as long on a run like "authauth...".
    # Linear takes ~0.3 s here, the quadratic bugs took minutes: a bound far
    # from both catches them on a loaded machine without measuring speed.
    text = run * (256 * 1024 // len(run))
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 30.0


# -- the log tail ---------------------------------------------------------


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_tail_of_a_huge_log_is_its_last_lines(tmp_path: Path) -> None:
    lines = [f"line {i} " + "x" * 60 for i in range(200_000)]  # about 14 MB
    log = write(tmp_path / "out.log", ("\n".join(lines) + "\n").encode())
    assert tail(log, 50) == lines[-50:]


def test_tail_reads_only_the_end_of_a_log_of_any_size(tmp_path: Path) -> None:
    # A sparse terabyte: reading it whole would never finish, so a tail that
    # returns at all has read only its end.
    log = tmp_path / "out.log"
    with open(log, "wb") as f:
        f.truncate(1 << 40)
        f.seek(0, 2)
        f.write(b"\nlast-but-one\nlast\n")
    assert tail(str(log), 2) == ["last-but-one", "last"]


def test_tail_ends_at_the_boot_s_finished_line_not_at_ssh_keygen_chatter(
        tmp_path: Path) -> None:
    # The order cloud-init 25.1.4 and 26.2 wrote cloud-init-output.log in on
    # whole-machine boots (tests/vm): the init stage's ssh-keygen output comes
    # after the final "finished at" line.
    log = tmp_path / "cloud-init-output.log"
    keygen = [f"Your identification has been saved in /etc/ssh/key{i}" for i in range(60)]
    log.write_text("\n".join([
        "Cloud-init v. 25.1.4 running 'modules:final' at Tue, 01 Dec 2026 21:59:42 +0000.",
        "fetching s3://releases/app-1.4.2.tar.gz",
        "download failed: HTTP 404 Not Found",
        "Cloud-init v. 25.1.4 finished at Tue, 01 Dec 2026 21:59:50 +0000. Datasource "
        "DataSourceEc2Local.  Up 192.61 seconds",
        *keygen]) + "\n")
    got = tail(str(log), lines=3)
    assert got[:2] == ["fetching s3://releases/app-1.4.2.tar.gz",
                       "download failed: HTTP 404 Not Found"]
    assert got[2].startswith("Cloud-init v. 25.1.4 finished at")


def test_a_boot_still_running_is_not_cut_at_the_last_boot_s_finished_line(
        tmp_path: Path) -> None:
    log = tmp_path / "cloud-init-output.log"
    log.write_text("\n".join([
        "Cloud-init v. 25.1.4 finished at Tue, 01 Dec 2026 21:59:50 +0000. Up 192.61 seconds",
        "Cloud-init v. 25.1.4 running 'init-local' at Tue, 01 Dec 2026 22:10:00 +0000.",
        "still migrating the database"]) + "\n")
    assert tail(str(log), lines=1) == ["still migrating the database"]


def test_tail_of_a_huge_single_line_is_clipped(tmp_path: Path) -> None:
    log = write(tmp_path / "out.log", b"y" * (3 * 1024 * 1024))
    (line,) = tail(log, 10)
    assert len(line) == 1000 and line.endswith("...")


def test_the_partial_first_line_of_the_read_window_is_dropped(tmp_path: Path) -> None:
    lines = ["z" * 999 for _ in range(400)]  # 400 KB: more than one read window
    log = write(tmp_path / "out.log", "\n".join(lines).encode())
    got = tail(log, 1000)
    assert got and all(line == "z" * 999 for line in got)
    assert len(got) < 400


def test_binary_content_becomes_printable_text(tmp_path: Path) -> None:
    log = write(tmp_path / "out.log", bytes(range(256)) * 8 + b"\xff\xfe\x00done\n")
    got = tail(log, 20)
    assert got[-1].endswith("\ufffd\ufffd\\x00done")  # NUL shown escaped, bad bytes as U+FFFD
    for line in got:
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)


def test_crlf_line_endings_leave_no_carriage_returns(tmp_path: Path) -> None:
    log = write(tmp_path / "out.log", b"first\r\nsecond\r\nthird\r\n")
    assert tail(log, 2) == ["second", "third"]


def test_a_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    log = write(tmp_path / "out.log", b"one\ntwo\nthree (no newline)")
    assert tail(log, 2) == ["two", "three (no newline)"]


def test_fewer_lines_than_asked_gives_them_all(tmp_path: Path) -> None:
    log = write(tmp_path / "out.log", b"one\n\ntwo\n")
    assert tail(log, 50) == ["one", "", "two"]


@pytest.mark.parametrize("lines", [0, -1])
def test_zero_lines_asked_gives_none(tmp_path: Path, lines: int) -> None:
    assert tail(write(tmp_path / "out.log", b"one\n"), lines) == []


@pytest.mark.parametrize("content", [b"", b"\n", b"\n\n\n"])
def test_an_empty_log_has_no_lines(tmp_path: Path, content: bytes) -> None:
    assert tail(write(tmp_path / "out.log", content), 50) == []


def test_a_missing_or_unreadable_log_gives_no_lines(tmp_path: Path) -> None:
    assert tail(str(tmp_path / "absent.log"), 50) == []
    assert tail(str(tmp_path), 50) == []  # a directory


def test_a_private_key_printed_at_the_end_of_the_boot_is_redacted(tmp_path: Path) -> None:
    text = f"+ cat /root/.ssh/id_rsa\n{RSA_KEY}\n+ echo password={PASSWORD}\n"
    got = tail(write(tmp_path / "out.log", text.encode()), 50)
    joined = "\n".join(got)
    assert PASSWORD not in joined
    assert not any(line in joined for line in body_lines(RSA_KEY))
    assert got[0] == "+ cat /root/.ssh/id_rsa"


def test_a_key_whose_begin_is_before_the_read_window_is_still_redacted(tmp_path: Path) -> None:
    # The window is the last 256 KiB: put its start in the middle of the key.
    middle = len("\n".join(RSA_KEY.splitlines()[:7])) + 1
    room = 256 * 1024 - (len(RSA_KEY) - middle + 1)  # for the lines after the key
    steps = [f"step {i:03d} " + "." * 990 for i in range(room // 1000 - 1)]
    used = sum(len(s) + 1 for s in steps)
    steps.append("last " + "." * (room - used - 6))
    text = "filler\n" * 2000 + RSA_KEY + "\n" + "\n".join(steps) + "\n"
    got = tail(write(tmp_path / "out.log", text.encode()), 1000)
    joined = "\n".join(got)
    assert "-----BEGIN" not in joined  # the window really starts inside the key
    assert not any(line in joined for line in body_lines(RSA_KEY))
    assert got[-1].startswith("last ")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.integers(min_value=-2, max_value=100))
def test_tail_of_any_bytes_is_printable_lines(data: bytes, lines: int) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        got = tail(f.name, lines)
    assert len(got) <= max(lines, 0)
    for line in got:
        assert "\n" not in line and "\r" not in line
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)


# -- everything from the instance, not only the log tail ---------------------


def test_the_boot_verdict_redacts_errors_recoverable_errors_and_its_message(
        tmp_path: Path) -> None:
    # cloud-init quotes user data in its error strings: a runcmd item it
    # could not turn into a command, a schema warning naming the value.
    from cc_bosky import config
    from cc_bosky.boot import verdict
    from cc_bosky.boot.reporter import Reporter

    run = tmp_path / "cloud-run"
    run.mkdir()
    (run / "instance-data.json").write_text(json.dumps(
        {"v1": {"instance_id": "i-0abcdef1234567890", "region": "us-east-1"}}))
    settings = config.Settings(project="web", run_dir=str(tmp_path / "run"),
                               spool_dir=str(tmp_path / "spool"), log_lines=0)
    reporter = Reporter(settings, {"cloud_run_dir": str(run),
                                   "config_warnings": [f"bosky.token: {GITHUB_TOKEN}"]},
                        {"AWS_EC2_METADATA_DISABLED": "true"})
    found = verdict.Verdict("fail", f"cloud-init ended without writing result.json: {JWT}", {
        "Errors": [f"('runcmd', TypeError(\"Failed to shellify [{{'token': "
                   f"'{GITHUB_TOKEN}'}}] into file /var/lib/cloud/instance/scripts/runcmd\"))"],
        "RecoverableErrors": {"WARNING": [f"runcmd.0: {{'password': '{PASSWORD}'}} is not "
                                          "valid under any of the given schemas"]},
        "FailedModules": ["runcmd"]})
    detail = reporter.build_event("final", found).detail
    sent = json.dumps(detail)
    for secret in (GITHUB_TOKEN, JWT, PASSWORD):
        assert secret not in sent
    assert detail["Errors"][0].startswith("('runcmd', TypeError(\"Failed to shellify")
    assert detail["FailedModules"] == ["runcmd"]


@pytest.fixture
def dry_run(tmp_path: Path) -> Callable[..., Dict[str, Any]]:
    """`bosky --dry-run ...` as a script runs it; the detail it would send."""
    import subprocess
    import sys

    (tmp_path / "config.yaml").write_text("project: web\n")
    env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "BOSKY_CONFIG": str(tmp_path / "config.yaml"),
           "BOSKY_INSTANCE_ID": "i-0abcdef1234567890"}

    def run(*argv: str, stdin: str = "") -> Dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "cc_bosky", "--dry-run", *argv],
                              input=stdin, capture_output=True, text=True, env=env,
                              cwd=str(tmp_path), check=False)
        assert done.returncode == 0, done.stderr
        (entry,) = json.loads(done.stdout)["Entries"]
        return json.loads(entry["Detail"])  # type: ignore[no-any-return]

    return run


def test_the_command_redacts_its_message(dry_run: Callable[..., Dict[str, Any]]) -> None:
    detail = dry_run("--fail", f"deploy failed: GITHUB_TOKEN={GITHUB_TOKEN} rejected")
    assert GITHUB_TOKEN not in detail["Message"]
    assert detail["Message"] == "deploy failed: GITHUB_TOKEN=[REDACTED-GITHUB-TOKEN] rejected"


def test_the_command_redacts_a_message_read_from_stdin(
        dry_run: Callable[..., Dict[str, Any]]) -> None:
    log = f"+ curl -H 'Authorization: Bearer {JWT}' https://x\n{RSA_KEY}\ncurl: (22) 403\n"
    detail = dry_run("--fail", "-", stdin=log)
    assert JWT not in detail["Message"]
    assert not any(line in detail["Message"] for line in body_lines(RSA_KEY))
    assert detail["Message"].endswith("curl: (22) 403")


def test_verbatim_sends_the_message_as_given(dry_run: Callable[..., Dict[str, Any]]) -> None:
    message = f"rotated to {SLACK_TOKEN}"
    assert dry_run("--info", "--verbatim", message)["Message"] == message
    assert dry_run("--info", "--verbatim", "-", stdin=message)["Message"] == message


# -- the corpus and generated secrets -----------------------------------------

CORPUS_DIR = Path(__file__).parent / "data" / "redaction"


def test_the_corpus_loses_at_least_95_percent_of_its_secrets_and_no_ordinary_line() -> None:
    samples = secrets.corpus()
    assert len(samples) >= 600
    leaked = [s for s in samples if any(x in redact(s.text) for x in s.secrets)]
    assert len(leaked) <= 0.05 * len(samples), [s.text[:120] for s in leaked]
    for path in ("ordinary.txt", "cloud-init-output.log"):
        lines = secrets.ordinary_lines(str(CORPUS_DIR / path))
        assert redact("\n".join(lines)).split("\n") == lines


def test_every_kind_of_the_corpus_names_the_scanner_rule_it_follows() -> None:
    sources = json.loads((CORPUS_DIR / "sources.json").read_text())
    kinds = {s.kind for s in secrets.corpus()}
    assert kinds <= set(sources["kinds"])
    for kind in kinds:
        for rule in sources["kinds"][kind]:
            assert rule["repo"] in sources["licences"], rule
            assert rule["path"] and rule["rule"]


def test_generated_github_and_npm_tokens_carry_a_valid_checksum() -> None:
    rng = random.Random(1)
    for kind in ("github-token", "npm-token"):
        token = secrets.MAKERS[kind](rng)
        assert secrets.checksum_ok(token)
        assert not secrets.checksum_ok(token[:-1] + ("A" if token[-1] != "A" else "B"))


_PUNCT = st.sampled_from(["", " ", '"', "'", "(", ")", "[", "]", "{", "}", "<", ">", ",", ";",
                          ":", "=", "`", " - ", "\t", "|"])
_FORMAT_KINDS = sorted(set(secrets.MAKERS) - set(secrets.CONTEXTUAL))
_WRAPS = (secrets.BARE + secrets.ASSIGNED
          + ("https://example.com/hooks/{s}/run", "{{\"items\": [\"{s}\"]}}", "- {s}",
             "key1={s}&key2=x", "{s} {s}", "token:\n  - {s}"))


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(_FORMAT_KINDS), seed=st.integers(0, 2**32),
       template=st.sampled_from(_WRAPS), before=_PUNCT, after=_PUNCT,
       noise=st.sampled_from(["", "2025-07-01 10:00:00,123 - ", "+ ", "cloud-init[812]: "]))
def test_a_token_of_any_known_format_is_gone_wherever_it_stands(
        kind: str, seed: int, template: str, before: str, after: str, noise: str) -> None:
    sample = secrets.sample(random.Random(seed), kind, template)
    out = redact(noise + before + sample.text + after)
    for secret in sample.secrets:
        assert secret not in out


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(secrets.CONTEXTUAL), seed=st.integers(0, 2**32), data=st.data(),
       noise=st.sampled_from(["", "2025-07-01 10:00:00,123 - ", "+ ", "cloud-init[812]: "]))
def test_a_secret_in_an_assignment_of_any_syntax_is_gone(kind: str, seed: int, data: Any,
                                                         noise: str) -> None:
    template = data.draw(st.sampled_from(secrets.CONTEXTS[kind]))
    sample = secrets.sample(random.Random(seed), kind, template)
    out = redact(noise + sample.text)
    for secret in sample.secrets:
        assert secret not in out


_ORDINARY = [line for line in secrets.ordinary_lines(str(CORPUS_DIR / "ordinary.txt"))
             + secrets.ordinary_lines(str(CORPUS_DIR / "cloud-init-output.log"))
             if not line.startswith("-----") and not re.fullmatch(r"[A-Za-z0-9+/=]{40,}", line)]


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.sampled_from(_ORDINARY), min_size=1, max_size=12),
       noise=st.sampled_from(["", "2025-07-01 10:00:00,123 - ", "+ ", "cloud-init[812]: "]))
def test_ordinary_lines_pass_unchanged_in_any_order(lines: List[str], noise: str) -> None:
    text = "\n".join(noise + line for line in lines)
    assert redact(text) == text


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(_FORMAT_KINDS), seed=st.integers(0, 2**32),
       lines=st.lists(st.sampled_from(_ORDINARY), min_size=1, max_size=6))
def test_a_secret_among_ordinary_lines_takes_nothing_else_with_it(
        kind: str, seed: int, lines: List[str]) -> None:
    sample = secrets.sample(random.Random(seed), kind, "+ echo {s}")
    out = redact("\n".join([*lines, sample.text, *lines])).split("\n")
    assert out[:len(lines)] == lines and out[-len(lines):] == lines
    assert not any(secret in out[len(lines)] for secret in sample.secrets)


def test_kubectl_printing_a_secret_loses_its_data_but_a_config_map_keeps_its() -> None:
    password = base64.b64encode(_token(24).encode()).decode()
    log = ("+ kubectl get configmap,secret -o yaml\n"
           "apiVersion: v1\nitems:\n"
           "- apiVersion: v1\n  data:\n    LOG_LEVEL: info\n  kind: ConfigMap\n"
           "  metadata:\n    name: app-settings\n"
           f"- apiVersion: v1\n  data:\n    username: YXBw\n    password: {password}\n"
           f"    tls.key: |\n      {password[:12]}\n      {password[12:]}\n"
           "  kind: Secret\n  metadata:\n    name: app-db\n  type: Opaque\n"
           "kind: List")
    out = redact(log)
    assert password not in out and "username: [REDACTED]" in out
    assert password[:12] not in out and password[12:] not in out
    assert "    LOG_LEVEL: info\n  kind: ConfigMap" in out
    assert "name: app-db" in out


def test_a_secret_s_yaml_block_scalar_is_masked_line_by_line() -> None:
    key = [_token(40), _token(40)]
    text = f"+ cat /etc/app.yaml\napp:\n  signing_key: |\n    {key[0]}\n    {key[1]}\n  port: 8080"
    assert redact(text) == ("+ cat /etc/app.yaml\napp:\n  signing_key: |\n"
                            f"    {MASK}\n    {MASK}\n  port: 8080")
    prose = "description: >\n  Rotates the database password every 30 days."
    assert redact(prose) == prose


@pytest.mark.parametrize("line, kept", [
    ('<add key="ClearTextPassword" value="Tiger,2024" />', '<add key="ClearTextPassword" value="'),
    ("export BUNDLE_GEMS__EXAMPLE__COM=0a1b2c3d:4e5f6a7b", "export BUNDLE_GEMS__EXAMPLE__COM="),
    ('db = os.getenv("DB_PASSWORD", "hunter2x")', 'db = os.getenv("DB_PASSWORD", "'),
    ('SONAR_LOGIN = "0123456789abcdef0123456789abcdef01234567"', 'SONAR_LOGIN = "'),
    ("api_key=6f1c1c7e-2b0e-4f7c-9a3b-4b1f4c2d9e10", "api_key="),
])
def test_a_secret_named_by_the_setting_it_fills_is_masked(line: str, kept: str) -> None:
    assert redact(line).startswith(kept + MASK)


@pytest.mark.parametrize("line", [
    '<add key="LogLevel" value="Debug" />', "BUNDLE_BUILD__NOKOGIRI=--use-system-libraries",
    'os.getenv("API_TOKEN_PATH", "/run/secrets/api_token")',
    "boot id 6f1c1c7e-2b0e-4f7c-9a3b-4b1f4c2d9e10",
])
def test_the_same_shapes_without_a_secret_are_left_alone(line: str) -> None:
    assert redact(line) == line
