"""CloudWatch Logs JSON filter patterns, evaluated as the service documents them.

moto 5.2's ``filter_log_events`` treats every pattern that starts with ``{``
as unsupported and returns every event (tests/test_consumer_metrics.py shows
it), so the consumer stack's metric filters could not be checked against
real events there. This evaluates the documented JSON syntax ("Using filter
patterns to match terms in JSON log events"): ``{ SELECTOR OP VALUE }`` with
``=``/``!=`` on strings (``*`` wildcards), numbers, ``true``/``false``/``null``,
``<``/``<=``/``>``/``>=`` on numbers, ``IS TRUE|FALSE|NULL``, ``EXISTS``, ``NOT
EXISTS``, ``&&``, ``||`` and parentheses; selectors ``$.a.b`` and ``$.a[0]``.
A pattern outside that subset raises ValueError rather than matching.
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any, List, Optional, Tuple

_TOKEN = re.compile(r"""\s*(?:(\&\&|\|\||\(|\)|!=|<=|>=|=|<|>)|("(?:[^"\\]|\\.)*")|"""
                    r"""(\$[\w.\[\]-]*)|([^\s()&|=!<>]+))""")
_MISSING: Any = object()


def matches(pattern: str, message: str) -> bool:
    """Whether the log event ``message`` matches the JSON filter ``pattern``."""
    text = pattern.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"not a JSON filter pattern: {pattern!r}")
    try:
        event = json.loads(message)
    except ValueError:
        return False  # a JSON pattern never matches a non-JSON event
    parser = _Parser(_tokens(text[1:-1]), event)
    result = parser.expression()
    if parser.pos != len(parser.tokens):
        raise ValueError(f"unexpected {parser.tokens[parser.pos]!r} in {pattern!r}")
    return result


def select(event: Any, selector: str) -> Any:
    """The value ``$.a.b[0]`` names in ``event``, or a marker that it is absent."""
    if not selector.startswith("$"):
        raise ValueError(f"selector must start with $: {selector!r}")
    value = event
    for name, index in re.findall(r"\.([\w-]+)|\[(\d+)\]", selector[1:]):
        if name:
            if not isinstance(value, dict) or name not in value:
                return _MISSING
            value = value[name]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
    return value


def _tokens(text: str) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read {text[pos:]!r}")
        op, string, selector, word = m.groups()
        kind = "op" if op else "str" if string else "sel" if selector else "word"
        out.append((kind, op or string or selector or word))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: List[Tuple[str, str]], event: Any) -> None:
        self.tokens, self.event, self.pos = tokens, event, 0

    def peek(self) -> Optional[Tuple[str, str]]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ValueError("pattern ends too early")
        self.pos += 1
        return token

    def expression(self) -> bool:
        result = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.conjunction()
            result = result or right
        return result

    def conjunction(self) -> bool:
        result = self.term()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.term()
            result = result and right
        return result

    def term(self) -> bool:
        if self.peek() == ("op", "("):
            self.take()
            result = self.expression()
            if self.take() != ("op", ")"):
                raise ValueError("missing )")
            return result
        kind, selector = self.take()
        if kind != "sel":
            raise ValueError(f"expected a selector, got {selector!r}")
        value = select(self.event, selector)
        kind, op = self.take()
        if kind == "word" and op in ("IS", "EXISTS", "NOT"):
            return self._keyword(op, value)
        if kind != "op":
            raise ValueError(f"expected an operator, got {op!r}")
        return _compare(value, op, self.take())

    def _keyword(self, word: str, value: Any) -> bool:
        if word == "EXISTS":
            return value is not _MISSING
        if word == "NOT":
            if self.take() != ("word", "EXISTS"):
                raise ValueError("NOT must be followed by EXISTS")
            return value is _MISSING
        _, what = self.take()
        expected = {"TRUE": True, "FALSE": False, "NULL": None}.get(what.upper(), _MISSING)
        if expected is _MISSING:
            raise ValueError(f"IS {what}?")
        return value is expected


def _compare(value: Any, op: str, operand: Tuple[str, str]) -> bool:
    kind, raw = operand
    if value is _MISSING:
        return False
    if kind == "str" or (kind == "word" and not _is_number(raw)
                         and raw not in ("true", "false", "null")):
        text = json.loads(raw) if kind == "str" else raw
        if op not in ("=", "!="):
            raise ValueError(f"{op} needs a number")
        hit = isinstance(value, str) and fnmatch.fnmatchcase(value, text) if "*" in text \
            else isinstance(value, str) and value == text
        return hit if op == "=" else not hit
    if raw in ("true", "false", "null"):
        hit = value is {"true": True, "false": False, "null": None}[raw]
        return hit if op == "=" else not hit
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return op == "!="
    number = float(raw)
    return {"=": value == number, "!=": value != number, "<": value < number,
            "<=": value <= number, ">": value > number, ">=": value >= number}[op]


def _is_number(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True
