"""Secrets out of text from the instance before it leaves it.

A boot log tail is the most useful part of a failure event and the most
dangerous: scripts echo keys, tokens and passwords. cloud-init's error
strings, a module's message and the command's ``--fail "..."`` text carry the
same risk. ``redact`` replaces each secret with a marker and keeps enough
around it to tell what was there (``password=[REDACTED]``,
``[REDACTED-GITHUB-TOKEN]``); ordinary text (digests, UUIDs, ARNs, SSH
fingerprints and public keys, certificates, versions, prose that mentions
passwords) passes unchanged. ``benchmarks/redact.py`` measures both sides.

The rules are data in ``redact_rules``; each is compiled when a text first needs it,
so importing this module (the cloud-init stage never calls it) costs nothing.
"""

from __future__ import annotations

import bisect
import math
import re
import sys
from collections import Counter
from typing import Any, Callable, Iterator, List, Match, Optional, Pattern, Tuple

from . import redact_rules as rules

MASK = "[REDACTED]"
_NOT_MASKED = r"(?!\[REDACTED)"

# A rule: its pattern, its replacement, and the words (lower case) one of
# which is on every line it can match; it runs only on those lines.
_Sub = Tuple["_Lazy", Callable[[Match[str]], str], Tuple[str, ...]]


def redact(text: str) -> str:
    """``text`` with every secret the rules recognise replaced by a marker.

    Idempotent: redacting the output again changes nothing (the spool
    re-reads events, and a message may be redacted by a caller too).
    """
    if not text:
        return text
    compiled = _compiled()
    if "-----" in text:
        text = compiled.private_pem.sub(_pem_mask, text)
        text = _mask_headless_keys(compiled, text)
    text = compiled.token_run.sub(compiled.mask_tokens, text)
    # Which rules' words are in the text at all, looked for once: several
    # rules share their words, and a search through a 256 KiB tail costs
    # ~0.3 ms a word (the masks put in below hold none of them).
    lower = text.lower()
    present = {n for n in compiled.needles if n in lower}
    for pattern, replace, needles in compiled.subs:
        found = tuple(n for n in needles if n in present)
        if found:
            text = _on_lines_with(text, found, pattern, replace)
    text = _mask_yaml_blocks(compiled, text)
    return _mask_high_entropy(compiled, text)


def _on_lines_with(text: str, needles: Tuple[str, ...], pattern: _Lazy,
                   replace: Callable[[Match[str]], str]) -> str:
    """``pattern`` substituted in each line of ``text`` holding one of ``needles``.

    Every rule is line-local; running each on the few lines it can match,
    found by ``str.find``, instead of trying it at every position of a 256
    KiB tail, cut the cost per line by more than ten times
    (``benchmarks/redact.py``).
    """
    lower = text.lower()
    spans: List[Tuple[int, int]] = []
    for needle in needles:
        i = lower.find(needle)
        while i != -1:
            start = lower.rfind("\n", 0, i) + 1
            end = lower.find("\n", i)
            end = len(text) if end == -1 else end
            spans.append((start, end))
            i = lower.find(needle, end)
    if not spans:
        return text
    spans.sort()
    out: List[str] = []
    done = 0
    for start, end in spans:
        if end <= done:
            continue
        start = max(start, done)
        out.append(text[done:start])
        out.append(pattern.sub(replace, text[start:end]))
        done = end
    out.append(text[done:])
    return "".join(out)


def redact_all(value: Any) -> Any:
    """``value`` with every string in it, at any depth of lists and dicts, redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_all(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    return value


# -- compiling the rules ---------------------------------------------------------------


class _Lazy:
    """A rule's pattern, compiled when a text first needs it.

    Compiling every rule took 40 ms (more on a busy machine); a command's
    one-line message or a clean boot's tail needs few of them: the token
    table only for a long run with an upper-case letter or a digit, each
    keyword rule only for a line that holds its word.
    """

    def __init__(self, source: str, flags: int = 0) -> None:
        self.source = source
        self.flags = flags
        self._pattern: Optional[Pattern[str]] = None

    @property
    def pattern(self) -> Pattern[str]:
        if self._pattern is None:
            self._pattern = re.compile(self.source, self.flags)
        return self._pattern

    def sub(self, repl: Callable[[Match[str]], str], text: str) -> str:
        return self.pattern.sub(repl, text)

    def search(self, text: str) -> Optional[Match[str]]:
        return self.pattern.search(text)

    def match(self, text: str) -> Optional[Match[str]]:
        return self.pattern.match(text)

    def fullmatch(self, text: str, pos: int = 0, endpos: int = sys.maxsize
                  ) -> Optional[Match[str]]:
        return self.pattern.fullmatch(text, pos, endpos)

    def finditer(self, text: str) -> Iterator[Match[str]]:
        return self.pattern.finditer(text)

    def findall(self, text: str) -> List[Any]:
        return self.pattern.findall(text)


class _Compiled:
    def __init__(self) -> None:
        label = r"[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?"
        # Also a block whose END was cut off by the tail (one whose BEGIN was
        # cut off is found by walking back from its END: _mask_headless_keys).
        self.private_pem = _Lazy(
            rf"-----BEGIN (?P<label>{label})-----.*?(?:-----END (?P=label)-----|\Z)", re.DOTALL)
        self.headless_end = _Lazy(rf"(?m)^-----END ({label})-----")
        self.public_pem = _Lazy(
            rf"-----BEGIN (?P<label>{rules.PUBLIC_PEM})-----.*?(?:-----END (?P=label)-----|\Z)",
            re.DOTALL)
        self.public_end = _Lazy(rf"(?m)^-----END (?:{rules.PUBLIC_PEM})-----")
        self.tokens = _Lazy(
            "(?<![A-Za-z0-9_])(?:"
            + "|".join(f"(?P<t{i}>{t.prefix}{t.body})" for i, t in enumerate(rules.TOKENS))
            + ")(?![A-Za-z0-9_])")
        self.labels = {f"t{i}": f"[REDACTED-{t.kind.upper()}]" for i, t in enumerate(rules.TOKENS)}
        # Tokens are looked for only inside runs of the characters they are
        # made of, at least as long as the shortest: one alternation of ~50
        # formats tried at every position of a tail took 1.3 s per 256 KiB.
        self.token_run = _Lazy(
            r"(?<![A-Za-z0-9_.~+/=:@-])[A-Za-z0-9_.~+/=:@-]{20,}")
        self.entropy_run = _Lazy(
            rf"(?<![A-Za-z0-9+/_~-])[A-Za-z0-9+/_~-]{{{rules.ENTROPY_MIN_LENGTH},}}"
            r"={0,2}(?![A-Za-z0-9+/_=~-])")
        self.public_before = _Lazy(rf"(?:{rules.PUBLIC_PREFIXES})\Z")
        self.in_url = _Lazy(r"[a-z][a-z0-9+.-]*://\S*\Z", re.IGNORECASE)
        # A key that names or points at a secret (secret_name, token_arn), not one that holds it.
        self.reference_key = _Lazy(
            rf"(?i)[_.-](?:{rules.REFERENCE_SUFFIXES})\\?[\"']?[ \t]*(?:=>|:=|=|:)[ \t]*\Z")
        self.public_start = _Lazy(rules.PUBLIC_STARTS)
        self.not_secret_key = _Lazy(rf"(?i)(?:{rules.NOT_SECRET_KEYS})")
        self.placeholder = _Lazy(rf"[\"']?{rules.PLACEHOLDER}[\"']?[,;]?", re.IGNORECASE)
        self.upper_or_digit = _Lazy("[A-Z0-9]")
        # A line of a key's body: base64, or an encrypted key's Proc-Type/DEK-Info header.
        self.key_body_line = _Lazy(
            r"[A-Za-z0-9+/=]*[ \t]*\r?|(?:Proc-Type|DEK-Info|Comment|Version):.*")
        self.lower_run = _Lazy(r"[A-Z]?[a-z]{4,}")
        self.login_p = _Lazy(r"([ \t]-p[ \t]+)" + _NOT_MASKED
                                  + r"(\"[^\"\n]*\"|'[^'\n]*'|\S+)")
        self.glued_p = _Lazy(r"([ \t]-p)" + _NOT_MASKED
                                  + r"('[^'\n]*'|\"[^\"\n]*\"|[^\s-]\S*)")
        self.secret_word = _Lazy("(?i)(?:" + "|".join(rules.SECRET_WORDS) + ")")
        camel = "|".join(w.capitalize() for w in rules.REFERENCE_SUFFIXES.split("|"))
        self.reference_name = _Lazy(  # secret_arn, tokenPath
            rf"(?:(?i:[_.-](?:{rules.REFERENCE_SUFFIXES}))|(?<=[a-z])(?:{camel}))\Z")
        self.block_indicator = _Lazy(r"[|>][-+0-9]{0,2}")
        # A YAML key alone on its line, its value on the lines indented under it.
        # (A block scalar's key may follow a log prefix: `+ `, a timestamp.)
        self.yaml_head = _Lazy(r"([ \t]*)((?:[^\n]*?[ \t])?(?:- )?)([\"']?)([\w.-]{1,80})\3:"
                               r"[ \t]*((?:[|>][-+0-9]{0,2})?)[ \t]*\r?")
        self.yaml_entry = _Lazy(r"([ \t]*(?:- )?[\"']?[\w.-]{1,250}[\"']?:[ \t]+)(\S.*?)(\r?)")
        self.kind_secret = _Lazy(r"(?i)[ \t]*(?:- )?kind:[ \t]*[\"']?Secret[\"']?[ \t]*\r?")
        self.subs = _substitutions(self)
        self.needles = frozenset(n for _, _, needles in self.subs for n in needles)

    def label(self, m: Match[str]) -> str:
        return self.labels[m.lastgroup or ""]

    def mask_tokens(self, run: Match[str]) -> str:
        # Every format has an upper-case letter or a digit: table borders,
        # paths and module names (most runs of a log) need no closer look.
        text = run.group()
        return self.tokens.sub(self.label, text) if self.upper_or_digit.search(text) else text


_COMPILED: Optional[_Compiled] = None


def _compiled() -> _Compiled:
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = _Compiled()
    return _COMPILED


def _substitutions(c: _Compiled) -> List[_Sub]:
    word = "(?:" + "|".join(rules.SECRET_WORDS) + ")"
    # Keys are bounded and start at the start of a run of key characters: an
    # unbounded key backtracks quadratically on a long run like "authauth...".
    key = rf"(?<![\w.-])[\w.-]{{0,40}}{word}[\w.-]{{0,40}}"
    quoted = (r"\\\"(?:(?!\\\")[^\n]){0,4096}\\\""  # JSON inside a JSON string: \"...\"
              r"|\"(?:[^\"\\\n]|\\.){0,4096}\"|'[^'\n]{0,4096}'")
    headers = "|".join(rules.SECRET_HEADERS)
    params = "|".join(rules.SECRET_QUERY_PARAMS)
    logins = "|".join(rules.P_IS_PASSWORD)
    scheme = r"(?:bearer|basic|token|digest|negotiate|aws4-hmac-sha256|sso-key|apikey)"
    keyword_needles = ("pass", "pwd", "secret", "token", "key", "cred", "auth", "cookie",
                       "sas", "sonar", "_pat", "jwt", "dsn")
    return [
        # Credentials in URLs: scheme://user:password@host, also redis://:password@host.
        (_Lazy(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^\s:/@]*:)" + _NOT_MASKED
                    + r"[^\s@/]+@"),
         lambda m: f"{m.group(1)}{MASK}@", ("://",)),
        # Query parameters that carry a credential: Azure SAS sig=, presigned URLs.
        (_Lazy(rf"(?i)([?&;](?:{params})=){_NOT_MASKED}[^&\s#\"'<>]+"),
         lambda m: f"{m.group(1)}{MASK}", ("=",)),
        # HTTP headers whose value is a credential: all of it, scheme kept.
        (_Lazy(rf"(?i)(?<![\w-])((?:{headers})[ \t]*[:=][ \t]*"
                    rf"(?!(?:{scheme}[ \t]+)?\[REDACTED)(?:{scheme}[ \t]+)?)"
                    r"[^\s\"'][^\n\"']*"),
         lambda m: f"{m.group(1)}{MASK}", ("auth", "key", "token", "cookie", "api")),
        (_Lazy(rf"(?i)(?<![\w-])(bearer[ \t]+){_NOT_MASKED}[A-Za-z0-9._~+/=-]{{8,}}"),
         lambda m: f"{m.group(1)}{MASK}", ("bearer",)),
        # curl -u 'user:pass word': the pair quoted as one argument.
        (_Lazy(r"(?<![\w-])((?:-u|--user)(?:[ \t]+|=)?([\"'])[^:\"'\n]*:)" + _NOT_MASKED
                    + r"([^\"'\n]+)(?=\2)"),
         lambda m: f"{m.group(1)}{MASK}", ("-u", "--user")),
        # curl -u user:password, and -u TOKEN: (an API key as the user name).
        (_Lazy(r"(?<![\w-])((?:-u|--user)(?:[ \t]+|=)?"
               r"(?:\"[^\"\n:]*\"|'[^'\n:]*'|[\"']?[^\s:\"']*):)" + _NOT_MASKED
                    + r"('[^'\n]*'|\"[^\"\n]*\"|[^\s\"']*)"),
         _user_password, ("-u", "--user")),
        # docker login -p PASSWORD (and the other tools whose -p is a password), and
        # mysql -pPASSWORD (glued to -p). The rest of the line is matched
        # greedily and searched inside: a lazy scan for -p from every
        # occurrence of the command's name would be quadratic on one long line.
        (_Lazy(rf"(?i)\b(?:{logins})\b[^\n]*"),
         lambda m: c.login_p.sub(_login_p, m.group())
         if "login" in m.group().lower() or m.group()[:7].lower() == "sshpass"
         else m.group(), ("login", "sshpass")),
        (_Lazy(r"(?i)\b(?:mysql|mariadb|mysqladmin|mysqldump)[\w-]*\b[^\n]*"),
         lambda m: c.glued_p.sub(_login_p, m.group()), ("mysql", "mariadb")),
        # Bundler's per-host credentials: BUNDLE_GEMS__EXAMPLE__COM=user:password.
        (_Lazy(rf"(?<![\w-])({rules.BUNDLER_HOST_NAME}[\"']?[ \t]*[=:][ \t]*[\"']?)"
               + _NOT_MASKED + r"(?![A-Za-z][\w+.-]*://)[^\s:\"';]+:[^\s\"';]+"),
         lambda m: f"{m.group(1)}{MASK}", ("bundle_",)),
        # A secret's name and value as a call's first two arguments:
        # getenv("DB_PASSWORD", "default"), GetEnvOrDefault("api_token", "...").
        (_Lazy(rf"(?i)(\([ \t]*([\"'])(?P<name>{key})\2[ \t]*,[ \t]*)" + _NOT_MASKED
               + r"(\"(?:[^\"\\\n]|\\.){1,4096}\"|'[^'\n]{1,4096}')"),
         lambda m: m.group(0) if _names_no_secret(c, m["name"]) or _is_placeholder(c, m.group(4))
         else f"{m.group(1)}{_quoted_mask(m.group(4))}", keyword_needles),
        # XML settings: <add key="ClearTextPassword" value="..." /> (NuGet, .NET
        # app settings), <param name="apiToken" value="..."/>.
        (_Lazy(r"(?i)(<[\w:.-]+[^<>\n]{0,400}?(?<![\w-])(?:key|name)[ \t]*=[ \t]*([\"'])"
               r"(?P<name>[^\"'\n]{1,80})\2[^<>\n]{0,400}?(?<![\w-])value[ \t]*=[ \t]*)"
               + _NOT_MASKED + r"(\"[^\"\n]*\"|'[^'\n]*')"),
         lambda m: m.group(0) if (not c.secret_word.search(m["name"])
                                  or _names_no_secret(c, m["name"])
                                  or _is_placeholder(c, m.group(4)) or len(m.group(4)) == 2)
         else f"{m.group(1)}{_quoted_mask(m.group(4))}", ("value",)),
        # --password VALUE, --db-token=VALUE
        (_Lazy(rf"(?i)((?<![\w-])--[\w-]{{0,40}}{word}[\w-]{{0,40}}(?:[ \t]+|=))"
                    + _NOT_MASKED + r"(?!-)(" + quoted + r"|\S+)"),
         lambda m: m.group(0) if _is_placeholder(c, m.group(2))
         else f"{m.group(1)}{_quoted_mask(m.group(2))}", keyword_needles),
        # KEY=value, the env form: the value is one shell word or one quoted string.
        (_Lazy(rf"(?i)({key}=)" + _NOT_MASKED + r"(\$\{\{[^}\n]*\}\}|" + quoted
               + r"|[^\s\"'`]+)"),
         lambda m: m.group(0) if _is_placeholder(c, m.group(2))
         else f"{m.group(1)}{_quoted_mask(m.group(2))}", keyword_needles),
        # key: value, key = value, "key": "value", 'key' => 'value': a quoted
        # value to its quote (each on the line), an unquoted one to the end of
        # the line (YAML and INI values hold spaces, commas and braces).
        # A bare `key:value` without a space is no assignment (ARNs, apt's
        # package:arch), unless the key was quoted (JSON).
        (_Lazy(rf"(?i)(\\?[\"']?{key}\\?[\"']?"
                    r"(?:[ \t]*(?:=>|:{1,3}=|\?=|\+=|=)[ \t]*|[ \t]*:[ \t]+"
                    r"|(?<=[\"'])[ \t]*:[ \t]*))"
                    + _NOT_MASKED + r"(" + quoted + r"|[^\s\"'][^\n]*)"),
         lambda m: _assignment(c, m), keyword_needles),
    ]


def _names_no_secret(c: _Compiled, name: str) -> bool:
    """``secret_arn``, ``public_key``: a name that points at a secret or holds public data."""
    return bool(c.reference_name.search(name) or c.not_secret_key.search(name))


def _login_p(m: Match[str]) -> str:
    return f"{m.group(1)}{_quoted_mask(m.group(2))}"


# -- replacements ------------------------------------------------------------------------


def _pem_mask(m: Match[str]) -> str:
    return f"-----BEGIN {m['label']}----- {MASK} -----END {m['label']}-----"


def _quoted_mask(value: str) -> str:
    if value[:2] == '\\"' and value[-2:] == '\\"' and len(value) >= 4:
        return f'\\"{MASK}\\"'
    if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2:
        return f"{value[0]}{MASK}{value[0]}"
    return MASK


def _is_placeholder(c: _Compiled, value: str) -> bool:
    return c.placeholder.fullmatch(value.strip()) is not None


def _user_password(m: Match[str]) -> str:
    user, password = m.group(1), m.group(2)
    if password.strip("\"'"):
        return f"{user}{_quoted_mask(password)}"
    name = re.search(r"[^\s\"'=:]+:$", user)  # -u TOKEN: the token is the user name
    if name is None or len(name.group()) < 13:
        return m.group(0)
    return f"{user[:name.start()]}{MASK}:{password}"


def _assignment(c: _Compiled, m: Match[str]) -> str:
    value = m.group(2)
    if (c.reference_key.search(m.group(1)) or c.not_secret_key.search(m.group(1))
            or "[REDACTED" in value):  # an earlier rule has masked it, scheme kept
        return m.group(0)
    if value[:1] in "\"'" or value[:2] == '\\"':
        return m.group(0) if _is_placeholder(c, value) else m.group(1) + _quoted_mask(value)
    stripped = value.rstrip()
    if (_is_placeholder(c, stripped) or _is_prose(stripped)
            or c.block_indicator.fullmatch(stripped)):  # `password: |`: _mask_yaml_blocks
        return m.group(0)
    return m.group(1) + MASK + value[len(stripped):]


def _is_prose(value: str) -> bool:
    """A message such as ``password expiry information changed.``, not a passphrase.

    Words, most of them plain, at least one of them a word of prose: a
    passphrase of four random words has none.
    """
    words = [w.strip(".,:;!?()'\"") for w in value.split()]
    if len(words) < 2 or sum(w.isalpha() for w in words) < 0.6 * len(words):
        return False
    return any(w.lower() in rules.PROSE_WORDS for w in words)


# -- blocks ------------------------------------------------------------------------------

# How far around a Secret's data: block its `kind:` line is looked for (lines
# each way): kubectl prints `kind` after `data`, a hand-written manifest before.
_MANIFEST_REACH = 200


def _may_open_yaml_block(line: str) -> bool:
    """``key: |``, ``key: >-`` or ``data:`` at the end of ``line``, found with string methods.

    Most lines of a log fail here, before the head's pattern (whose log
    prefix backtracks over each space) is tried.
    """
    end = line.rstrip()
    if end[-1:] == ":":
        return end[-5:] == "data:" or end[-5:] == "Data:"
    end = end.rstrip("-+0123456789")
    return end[-1:] in ("|", ">") and end[:-1].rstrip()[-1:] == ":"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _mask_yaml_blocks(c: _Compiled, text: str) -> str:
    """YAML values that span lines: a secret's block scalar and a Kubernetes Secret's data.

    ``password: |`` (or ``>``) hides its value on the lines indented under
    it; a Secret manifest printed by ``kubectl get -o yaml`` or ``cat`` holds
    base64 values under ``data:`` whose keys (``username``, ``tls.key``,
    ``.dockerconfigjson``) name no secret; only the manifest's ``kind: Secret``
    line, above or below, says so. Only lines holding ``: |``, ``: >`` or a
    data key are looked at.
    """
    starts = set()
    for needle in (": |", ":|", ": >", ":>", "data:", "Data:"):
        i = text.find(needle)
        while i != -1:
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i)
            end = len(text) if end == -1 else end
            if _may_open_yaml_block(text[start:end]):
                starts.add(start)
            i = text.find(needle, end)
    if not starts:
        return text
    heads = []
    line_no = at = 0
    for start in sorted(starts):  # counted from one head to the next: linear in the text
        line_no += text.count("\n", at, start)
        at = start
        heads.append(line_no)
    lines = text.split("\n")
    changed = False
    done = 0  # lines before this one are in a block already masked
    for i in heads:
        if i < done:
            continue
        line = lines[i]
        head = c.yaml_head.fullmatch(line)
        if head is None:
            continue
        name, block = head.group(4), head.group(5)
        ind = len(head.group(1))
        if block:
            if not c.secret_word.search(name) or _names_no_secret(c, name):
                continue
            entries = False  # the whole block is the value
        elif (name in rules.KUBERNETES_SECRET_DATA and head.group(2) in ("", "- ")
              and _in_kubernetes_secret(c, lines, i, ind + len(head.group(2)))):
            ind += len(head.group(2))
            entries = True  # each `key: value` under data: is one
        else:
            continue
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > ind):
            if lines[j].strip():
                new = (_mask_entry(c, lines[j]) if entries
                       else lines[j][:_indent(lines[j])] + MASK)
                changed = changed or new != lines[j]
                lines[j] = new
            j += 1
        done = j
    return "\n".join(lines) if changed else text


def _mask_entry(c: _Compiled, line: str) -> str:
    entry = c.yaml_entry.fullmatch(line)
    if entry is None:  # a value's own line (`tls.key: |` and its base64 lines below)
        body = line.lstrip(" \t")
        return line if body[:1] == "#" or "[REDACTED" in body else line[:_indent(line)] + MASK
    value = entry.group(2)
    if ("[REDACTED" in value or _is_placeholder(c, value)
            or c.block_indicator.fullmatch(value) or value[:1] == "#"):
        return line
    return entry.group(1) + MASK + entry.group(3)


def _in_kubernetes_secret(c: _Compiled, lines: List[str], at: int, ind: int) -> bool:
    """Whether the mapping holding line ``at`` (a ``data:`` at indent ``ind``) has ``kind: Secret``.

    Walks the mapping's own keys up and down (deeper lines are their values)
    and stops where it ends: a line less indented, ``---``, or a list item's
    first key (``- apiVersion: v1`` in a List).
    """
    for step in (-1, 1):
        j = at + step
        while 0 <= j < len(lines) and abs(j - at) <= _MANIFEST_REACH:
            line = lines[j]
            if line.strip() and _indent(line) <= ind:
                item = line.lstrip(" \t").startswith("- ")
                if _indent(line) + (2 if item else 0) != ind or ":" not in line:
                    break
                if c.kind_secret.fullmatch(line):
                    return True
                if item and step == -1:
                    break  # the item's first key: the mapping starts here
                if item:
                    break  # the next item
            j += step
    return False

def _walk_back(c: _Compiled, text: str, end: int, floor: int) -> int:
    """Where the run of key-body lines that ends at ``end`` starts."""
    start = end
    while start > floor:
        line_start = text.rfind("\n", floor, start - 1) + 1
        if line_start < floor or not c.key_body_line.fullmatch(text, line_start, start - 1):
            break
        start = line_start
    return start


def _mask_headless_keys(c: _Compiled, text: str) -> str:
    """Mask the body lines above an END line whose BEGIN was cut off by the tail.

    Done by walking back from each END rather than by one regex, which would
    rescan every run of base64 lines from each of its lines.
    """
    out: List[str] = []
    done = 0
    for m in c.headless_end.finditer(text):
        start = _walk_back(c, text, m.start(), done)
        if start == m.start():
            continue  # nothing above it looks like a key body
        out.append(text[done:start])
        out.append(f"{MASK} -----END {m.group(1)}-----")
        done = m.end()
    out.append(text[done:])
    return "".join(out)


def _public_spans(c: _Compiled, text: str) -> List[Tuple[int, int]]:
    """Certificates and public keys, also one whose BEGIN the tail cut off."""
    spans = [m.span() for m in c.public_pem.finditer(text)]
    for m in c.public_end.finditer(text):
        spans.append((_walk_back(c, text, m.start(), 0), m.end()))
    return sorted(spans)


# -- the high-entropy fallback -----------------------------------------------------------


def _mask_high_entropy(c: _Compiled, text: str) -> str:
    spans: Optional[List[Tuple[int, int]]] = None if "-----" in text else []

    def replace(m: Match[str]) -> str:
        nonlocal spans
        token = m.group()
        start = m.start()
        line_start = text.rfind("\n", 0, start) + 1
        before = text[max(line_start, start - 80):start]
        if c.public_before.search(before) or c.public_start.match(token):
            return token
        if spans is None:
            spans = _public_spans(c, text)
        if spans:
            i = bisect.bisect_right(spans, (start, len(text))) - 1
            if i >= 0 and spans[i][0] <= start < spans[i][1]:
                return token
        if "/" in token and c.in_url.search(before):
            # A URL's path: each segment on its own (S3 keys, artifact paths).
            parts = token.split("/")
            if not any(_looks_random(c, p) for p in parts):
                return token
            return "/".join(MASK if _looks_random(c, p) else p for p in parts)
        return MASK if _looks_random(c, token) else token

    return c.entropy_run.sub(replace, text)


def _looks_random(c: _Compiled, token: str) -> bool:
    """A token, key or password rather than a digest, an id or an identifier."""
    core = token.rstrip("=")
    n = len(core)
    if n < rules.ENTROPY_MIN_LENGTH:
        return False
    if not (any(ch.isupper() for ch in core) and any(ch.islower() for ch in core)
            and any(ch.isdigit() for ch in core)):
        return False  # hex digests, UUIDs, ids, lower-case names, ALL_CAPS constants
    if n == 40 and "_" not in core and "-" not in core and "~" not in core:
        return True  # an AWS secret access key's exact shape
    # CamelCase names and paths are mostly words.
    if sum(len(w) for w in c.lower_run.findall(core)) > n * 0.5:
        return False
    counts = Counter(core)
    entropy = -sum(k / n * math.log2(k / n) for k in counts.values())
    return entropy >= rules.ENTROPY_SHARE * min(math.log2(n), 6.0)
