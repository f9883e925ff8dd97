"""Secrets out of log text before it leaves the instance.

A boot log tail is the most useful part of a failure event and the most
dangerous: scripts echo keys, tokens and passwords. Each rule below replaces
the secret, keeps enough around it to tell what was there, and leaves
ordinary text (hashes, UUIDs, prose that mentions passwords) alone.
"""

from __future__ import annotations

import re
from typing import Callable, List, Match, Pattern, Tuple, Union

MASK = "[REDACTED]"

_Rule = Tuple[Pattern[str], Union[str, Callable[[Match[str]], str]]]

_SECRET_WORD = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|client[_-]?secret|credentials?|auth|cookie"
    # DB_PASS, --pass, db.pass: "pass" as a word of a key, but not "bypass",
    # "passed" or automake's "PASS: test-name".
    r"|(?<=[_.-])pass(?![a-z]))"
)
# Debian's "package:arch" (libsecret-1-0:amd64) is not a key and its value.
_ARCH = r"(?:amd64|arm64|armhf|armel|i386|all|ppc64el|s390x|riscv64|mips64el)\b"
_PEM_LABEL = r"[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?"

# mysql's -pPASSWORD: the password glued to -p.
_GLUED_P = re.compile(r"(\s-p)(?!\[REDACTED)[^\s-]\S*")

# Every rule that starts with a repeated class is anchored by a lookbehind at
# the start of a run of that class: without it a long run (a base64 blob, a
# line of dashes) is retried from each of its positions, which is quadratic
# and took minutes on one 256 KiB log line.
_RULES: List[_Rule] = [
    # PEM and PGP private keys, also a block whose END was cut off by the tail
    # (one whose BEGIN was cut off is handled by _mask_headless_keys).
    (re.compile(rf"-----BEGIN (?P<label>{_PEM_LABEL})-----.*?(?:-----END (?P=label)-----|\Z)",
                re.DOTALL),
     lambda m: f"-----BEGIN {m['label']}----- {MASK} -----END {m['label']}-----"),
    # AWS access key ids (long-term AKIA, temporary ASIA, and the other documented prefixes).
    (re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b"),
     "[REDACTED-AWS-ACCESS-KEY-ID]"),
    # Authorization headers and bearer tokens.
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:(bearer|basic|token|aws4-hmac-sha256)\s+)?"
                r"[^\s\"']+"),
     lambda m: f"{m.group(1)}{(m.group(2) + ' ') if m.group(2) else ''}{MASK}"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), f"Bearer {MASK}"),
    # Credentials inside URLs: scheme://user:password@host, also redis://:password@host
    (re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"),
     rf"\g<1>{MASK}@"),
    # curl -u user:password, and mysql -pPASSWORD (the password glued to -p).
    (re.compile(r"(?<![\w-])((?:-u|--user)[ =]?[\"']?[^\s:\"']+:)(?!\[REDACTED)[^\s\"']+"),
     rf"\g<1>{MASK}"),
    (re.compile(r"(?i)\b(?:mysql|mariadb)[\w-]*\b[^\n]*"),
     lambda m: _GLUED_P.sub(rf"\g<1>{MASK}", m.group())),
    # key=value, key: value, --key value and JSON "key": "value" pairs whose key names a secret.
    # Keys are bounded: in a long run of key characters holding the word many
    # times ("authauth..."), unbounded ones backtrack quadratically.
    (re.compile(rf"(?i)([\"']?(?<![\w.-])[\w.-]{{0,64}}{_SECRET_WORD}[\w.-]{{0,64}}[\"']?\s*[=:]\s*)"
                rf"(?!\[REDACTED|(?:bearer|basic|token|aws4-hmac-sha256) |{_ARCH})"
                r"(\"[^\"]*\"|'[^']*'|[^\s,;&}]+)"),
     lambda m: f"{m.group(1)}{_quoted_mask(m.group(2))}"),
    (re.compile(rf"(?i)((?<![\w-])--[\w-]{{0,64}}{_SECRET_WORD}[\w-]{{0,64}}[ =])"
                r"(\"[^\"]*\"|'[^']*'|\S+)"),
     lambda m: f"{m.group(1)}{_quoted_mask(m.group(2))}"),
    # JSON Web Tokens.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
    # Well-known token formats: GitHub, Slack, GitLab.
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
                r"|xox[abposr]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20,})\b"), MASK),
    # Bare 40-character AWS secret access keys: base64 alphabet, mixed case, not hex.
    (re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
     lambda m: MASK if _looks_like_secret_key(m.group()) else m.group()),
]
# A line of a key's body: base64, or an encrypted key's Proc-Type/DEK-Info header.
_KEY_BODY_LINE = re.compile(r"[A-Za-z0-9+/=]*[ \t]*\r?|(?:Proc-Type|DEK-Info|Comment|Version):.*")
_HEADLESS_END = re.compile(rf"(?m)^-----END ({_PEM_LABEL})-----")


def _mask_headless_keys(text: str) -> str:
    """Mask the body lines above an END line whose BEGIN was cut off by the tail.

    Done by walking back from each END rather than by one regex, which would
    rescan every run of base64 lines from each of its lines.
    """
    out: List[str] = []
    done = 0
    for m in _HEADLESS_END.finditer(text):
        start = m.start()
        while start > done:
            line_start = text.rfind("\n", done, start - 1) + 1
            if line_start < done or not _KEY_BODY_LINE.fullmatch(text, line_start, start - 1):
                break
            start = line_start
        if start == m.start():
            continue  # nothing above it looks like a key body
        out.append(text[done:start])
        out.append(f"{MASK} -----END {m.group(1)}-----")
        done = m.end()
    out.append(text[done:])
    return "".join(out)


def _quoted_mask(value: str) -> str:
    if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2:
        return f"{value[0]}{MASK}{value[0]}"
    return MASK


def _looks_like_secret_key(token: str) -> bool:
    if re.fullmatch(r"[0-9a-fA-F]{40}", token):  # a SHA-1 or git commit id
        return False
    has = [any(c.isupper() for c in token), any(c.islower() for c in token),
           any(c.isdigit() or c in "/+" for c in token)]
    return all(has)


def redact(text: str) -> str:
    """``text`` with every secret the rules recognise replaced by a marker."""
    for i, (pattern, replacement) in enumerate(_RULES):
        text = pattern.sub(replacement, text)  # type: ignore[arg-type]
        if i == 0:  # after whole blocks are gone, only headless ones are left
            text = _mask_headless_keys(text)
    return text
