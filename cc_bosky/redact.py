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
    r"|private[_-]?key|client[_-]?secret|credentials?|auth)"
)

_RULES: List[_Rule] = [
    # PEM private keys, also a block whose END was cut off by the tail.
    (re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)",
                re.DOTALL),
     lambda m: f"-----BEGIN {m.group(1)}PRIVATE KEY----- {MASK} "
               f"-----END {m.group(1)}PRIVATE KEY-----"),
    # AWS access key ids (long-term AKIA, temporary ASIA, and the other documented prefixes).
    (re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b"),
     "[REDACTED-AWS-ACCESS-KEY-ID]"),
    # Authorization headers and bearer tokens.
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:(bearer|basic|token|aws4-hmac-sha256)\s+)?"
                r"[^\s\"']+"),
     lambda m: f"{m.group(1)}{(m.group(2) + ' ') if m.group(2) else ''}{MASK}"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), f"Bearer {MASK}"),
    # Credentials inside URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), rf"\g<1>{MASK}@"),
    # key=value, key: value, --key value and JSON "key": "value" pairs whose key names a secret.
    (re.compile(rf"(?i)([\"']?[\w.-]*{_SECRET_WORD}[\w.-]*[\"']?\s*[=:]\s*)"
                r"(?!\[REDACTED|(?:bearer|basic|token|aws4-hmac-sha256) )"
                r"(\"[^\"]*\"|'[^']*'|[^\s,;&}]+)"),
     lambda m: f"{m.group(1)}{_quoted_mask(m.group(2))}"),
    (re.compile(rf"(?i)(--[\w-]*{_SECRET_WORD}[\w-]*[ =])(\"[^\"]*\"|'[^']*'|\S+)"),
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
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)  # type: ignore[arg-type]
    return text
