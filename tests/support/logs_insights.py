"""CloudWatch Logs Insights' side, for exactly the subset bosky's queries use.

moto 5.2 runs only ``fields``, ``sort`` and ``limit`` and silently drops the
rest, so it cannot stand in for Logs Insights. This module does, in two parts:

- :func:`parse` checks a query against the syntax the Logs Insights
  documentation gives (commands, functions, and the documented rules on
  combining them), and refuses anything else, including documented
  commands and functions that bosky does not use (this evaluator would not
  know what they do);
- :func:`evaluate` runs a parsed query over log events (timestamp ms,
  message) the way the documentation describes each command, and answers in
  GetQueryResults' shape: rows of ``{"field", "value"}`` (values as
  strings, ``@ptr`` included), ``statistics``.

Documentation followed (CloudWatch Logs user guide, "Logs Insights language
query syntax" and its pages per command):

- commands are separated by ``|``; JSON log events' fields are discovered
  and flattened (``detail.Status``; arrays by index, ``detail.FailedModules.0``);
- ``filter`` with ``=``, ``!=``, ``in [..]``, ``and``, ``or``, ``not``;
  ``ispresent(field)``; ``coalesce(a, b, ...)``; ``jsonParse(@message)``;
- ``unnest field into name`` flattens a LIST (from ``jsonParse``); any other
  value is a list of one;
- ``stats`` aggregation functions ``count(*)``, ``count(field)``, ``max``,
  ``min``, ``sum``, ``avg``, ``pct(field, n)``, and the non-aggregation
  ``latest``, ``earliest``, ``sortsFirst``, ``sortsLast``; ``by`` fields may
  be aliased with ``as``;
- at most two ``stats`` a query; with two, ``sort`` and ``limit`` only after
  the second, and the second may refer only to fields the first defined;
- nothing but ``limit`` after ``dedup``; ``limit`` at most 10,000.

``pct`` here is nearest-rank; Logs Insights may approximate on large inputs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

DOCUMENTED_COMMANDS = ("fields", "filter", "stats", "sort", "limit", "unnest", "dedup",
                       "display", "parse", "pattern", "diff", "anomaly", "unmask",
                       "filterIndex", "SOURCE", "lookup")
EVALUATED_COMMANDS = ("fields", "filter", "stats", "sort", "limit", "unnest")
AGGREGATES = ("count", "count_distinct", "max", "min", "sum", "avg", "pct", "stddev",
              "latest", "earliest", "sortsFirst", "sortsLast")
EVALUATED_AGGREGATES = ("count", "max", "min", "sum", "avg", "pct", "latest", "earliest",
                        "sortsFirst", "sortsLast")
FUNCTIONS = ("ispresent", "coalesce", "jsonParse")
MAX_LIMIT = 10000


class QuerySyntaxError(ValueError):
    """What Logs Insights answers with MalformedQueryException."""


class Stamp(int):
    """@timestamp (epoch ms), written as Logs Insights writes it."""

    def __str__(self) -> str:
        when = datetime.fromtimestamp(self / 1000.0, timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{self % 1000:03d}"


# -- tokens and expressions ----------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>!=|=|\(|\)|\[|\]|,|\*|\|)
  | (?P<name>[@A-Za-z_][A-Za-z0-9_@.]*)
)""", re.X)


def tokenize(text: str) -> List[Tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise QuerySyntaxError(f"unexpected text at {pos}: {text[pos:pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


@dataclass
class Expr:
    kind: str  # field, literal, call, compare, in, and, or, not, star, list
    value: Any = None
    args: List[Expr] = field(default_factory=list)


class _Tokens:
    def __init__(self, tokens: Sequence[Tuple[str, str]]) -> None:
        self.tokens, self.pos = list(tokens), 0

    def peek(self, offset: int = 0) -> Tuple[str, str]:
        at = self.pos + offset
        return self.tokens[at] if at < len(self.tokens) else ("end", "")

    def take(self, value: Optional[str] = None) -> Tuple[str, str]:
        token = self.peek()
        if value is not None and token[1].lower() != value.lower():
            raise QuerySyntaxError(f"expected {value!r}, found {token[1]!r}")
        if token[0] == "end":
            raise QuerySyntaxError("the query ends too early")
        self.pos += 1
        return token

    def word(self, value: str) -> bool:
        kind, text = self.peek()
        return kind == "name" and text.lower() == value

    def done(self) -> bool:
        return self.pos >= len(self.tokens)


def _expr(t: _Tokens) -> Expr:
    left = _and(t)
    while t.word("or"):
        t.take()
        left = Expr("or", args=[left, _and(t)])
    return left


def _and(t: _Tokens) -> Expr:
    left = _not(t)
    while t.word("and"):
        t.take()
        left = Expr("and", args=[left, _not(t)])
    return left


def _not(t: _Tokens) -> Expr:
    if t.word("not"):
        t.take()
        return Expr("not", args=[_not(t)])
    return _compare(t)


def _compare(t: _Tokens) -> Expr:
    left = _term(t)
    kind, text = t.peek()
    if kind == "op" and text in ("=", "!="):
        t.take()
        return Expr("compare", text, [left, _term(t)])
    if t.word("in"):
        t.take()
        return Expr("in", args=[left, _term(t)])
    return left


def _term(t: _Tokens) -> Expr:
    kind, text = t.take()
    if kind == "string":
        return Expr("literal", json.loads('"' + text[1:-1].replace('"', '\\"') + '"')
                    if text[0] == "'" else json.loads(text))
    if kind == "number":
        return Expr("literal", float(text) if "." in text else int(text))
    if kind == "op" and text == "(":
        inner = _expr(t)
        t.take(")")
        return inner
    if kind == "op" and text == "[":
        items = []
        while t.peek()[1] != "]":
            items.append(_term(t))
            if t.peek()[1] == ",":
                t.take()
        t.take("]")
        return Expr("list", args=items)
    if kind == "op" and text == "*":
        return Expr("star")
    if kind == "name":
        if t.peek()[1] == "(":
            t.take("(")
            args = []
            while t.peek()[1] != ")":
                args.append(_expr(t))
                if t.peek()[1] == ",":
                    t.take()
            t.take(")")
            return Expr("call", text, args)
        return Expr("field", text)
    raise QuerySyntaxError(f"unexpected {text!r}")


def _named(t: _Tokens) -> Tuple[Expr, str]:
    expr = _expr(t)
    if t.word("as"):
        t.take()
        kind, name = t.take()
        if kind != "name":
            raise QuerySyntaxError(f"expected a name after 'as', found {name!r}")
        return expr, name
    return expr, _display(expr)


def _display(expr: Expr) -> str:
    if expr.kind == "field":
        return str(expr.value)
    if expr.kind == "call":
        return f"{expr.value}({', '.join(_display(a) for a in expr.args)})"
    if expr.kind == "star":
        return "*"
    return json.dumps(expr.value)


def _list(t: _Tokens, stop: Tuple[str, ...] = ()) -> List[Tuple[Expr, str]]:
    items = [_named(t)]
    while t.peek()[1] == "," and not t.done():
        t.take()
        items.append(_named(t))
    if not t.done() and not any(t.word(s) for s in stop):
        raise QuerySyntaxError(f"unexpected {t.peek()[1]!r}")
    return items


# -- commands -------------------------------------------------------------------------------


@dataclass
class Command:
    name: str
    items: List[Tuple[Expr, str]] = field(default_factory=list)  # fields, stats aggregates
    by: List[Tuple[Expr, str]] = field(default_factory=list)  # stats
    expr: Optional[Expr] = None  # filter; unnest's field
    target: str = ""  # unnest into; sort field
    descending: bool = False
    count: int = 0  # limit


def parse(query: str) -> List[Command]:
    """The query's commands, or QuerySyntaxError for what Logs Insights would refuse
    (or what this evaluator cannot run)."""
    commands = []
    for text in _split(query):
        tokens = tokenize(text)
        if not tokens:
            raise QuerySyntaxError("an empty command between pipes")
        kind, word = tokens[0]
        if word not in DOCUMENTED_COMMANDS and word.lower() not in DOCUMENTED_COMMANDS:
            raise QuerySyntaxError(f"{word!r} is not a Logs Insights command")
        name = word.lower() if word.lower() in EVALUATED_COMMANDS else word
        if name not in EVALUATED_COMMANDS:
            raise QuerySyntaxError(f"{word!r} is documented but this evaluator does not run it")
        t = _Tokens(tokens[1:])
        if name == "filter":
            command = Command(name, expr=_expr(t))
        elif name == "fields":
            command = Command(name, items=_list(t))
        elif name == "unnest":
            source = _term(t)
            t.take("into")
            command = Command(name, expr=source, target=t.take()[1])
        elif name == "stats":
            items = _list(t, stop=("by",))
            by: List[Tuple[Expr, str]] = []
            if t.word("by"):
                t.take()
                by = _list(t)
            command = Command(name, items=items, by=by)
        elif name == "sort":
            target = t.take()[1]
            descending = False
            if not t.done():
                descending = t.take()[1].lower() == "desc"
            command = Command(name, target=target, descending=descending)
        else:  # limit
            kind, text = t.take()
            if kind != "number" or not 0 < int(float(text)) <= MAX_LIMIT:
                raise QuerySyntaxError(f"limit must be 1 to {MAX_LIMIT}, not {text}")
            command = Command(name, count=int(text))
        if not t.done():
            raise QuerySyntaxError(f"unexpected {t.peek()[1]!r} in {name}")
        commands.append(command)
    _check_rules(commands)
    return commands


def _split(query: str) -> List[str]:
    parts, current, quote = [], [], ""
    for char in query:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
            current.append(char)
        elif char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip() or len(parts) > 1]


def _calls(expr: Optional[Expr]) -> Iterable[Expr]:
    if expr is None:
        return
    if expr.kind == "call":
        yield expr
    for arg in expr.args:
        yield from _calls(arg)


def _fields(expr: Optional[Expr]) -> Iterable[str]:
    if expr is None:
        return
    if expr.kind == "field":
        yield str(expr.value)
    for arg in expr.args:
        yield from _fields(arg)


def _check_rules(commands: List[Command]) -> None:
    stats = [i for i, c in enumerate(commands) if c.name == "stats"]
    if len(stats) > 2:
        raise QuerySyntaxError("a query can have at most two stats commands")
    if len(stats) == 2:
        for c in commands[: stats[1]]:
            if c.name in ("sort", "limit"):
                raise QuerySyntaxError("with two stats, sort and limit must follow the second")
        defined = {name for _, name in commands[stats[0]].items + commands[stats[0]].by}
        for c in commands[stats[0] + 1:]:
            used = [f for expr, _ in c.items + c.by for f in _fields(expr)]
            used += list(_fields(c.expr)) + ([c.target] if c.name == "sort" else [])
            for name in used:
                if name not in defined and not any(name == n for _, n in c.items):
                    raise QuerySyntaxError(f"{name!r} is not defined by the first stats")
            if c.name == "stats":
                defined = {name for _, name in c.items + c.by}
    for c in commands:
        for expr, _ in c.items + c.by:
            for call in _calls(expr):
                known = AGGREGATES + FUNCTIONS
                if call.value not in known:
                    raise QuerySyntaxError(f"{call.value}() is not a Logs Insights function")
                if call.value in AGGREGATES and c.name != "stats":
                    raise QuerySyntaxError(f"{call.value}() belongs in stats")
                if call.value in AGGREGATES and call.value not in EVALUATED_AGGREGATES:
                    raise QuerySyntaxError(f"{call.value}() is not run by this evaluator")
        for call in _calls(c.expr):
            if call.value not in FUNCTIONS:
                raise QuerySyntaxError(f"{call.value}() cannot be used in {c.name}")
        if c.name == "stats" and (not c.items or any(
                e.kind != "call" or e.value not in AGGREGATES for e, _ in c.items)):
            raise QuerySyntaxError("stats takes aggregation functions")


# -- evaluation -----------------------------------------------------------------------------

Row = Dict[str, Any]


def _lookup(row: Row, path: str) -> Any:
    if path in row:
        return row[path]
    head, _, rest = path.partition(".")
    if head in row and rest:
        return _walk(row[head], rest.split("."), flattened=False)
    data = row.get("\0json")
    if data is None:
        return None
    return _walk(data, path.split("."), flattened=True)


def _walk(value: Any, parts: List[str], flattened: bool) -> Any:
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else None
        else:
            return None
    # Discovered fields are flattened: an object or array is not itself a field.
    if flattened and isinstance(value, (dict, list)):
        return None
    return value


def _eval(expr: Expr, row: Row) -> Any:
    if expr.kind == "literal":
        return expr.value
    if expr.kind == "field":
        return _lookup(row, str(expr.value))
    if expr.kind == "list":
        return [_eval(a, row) for a in expr.args]
    if expr.kind == "compare":
        left, right = _eval(expr.args[0], row), _eval(expr.args[1], row)
        return (left == right) if expr.value == "=" else (left is not None and left != right)
    if expr.kind == "in":
        return _eval(expr.args[0], row) in _eval(expr.args[1], row)
    if expr.kind == "and":
        return bool(_eval(expr.args[0], row)) and bool(_eval(expr.args[1], row))
    if expr.kind == "or":
        return bool(_eval(expr.args[0], row)) or bool(_eval(expr.args[1], row))
    if expr.kind == "not":
        return not _eval(expr.args[0], row)
    if expr.kind == "call":
        if expr.value == "ispresent":
            return _eval(expr.args[0], row) is not None
        if expr.value == "coalesce":
            for arg in expr.args:
                value = _eval(arg, row)
                if value is not None:
                    return value
            return None
        if expr.value == "jsonParse":
            try:
                return json.loads(str(_eval(expr.args[0], row)))
            except ValueError:
                return None
    raise QuerySyntaxError(f"cannot evaluate {_display(expr)}")


def _aggregate(call: Expr, rows: List[Row]) -> Any:
    name, args = call.value, call.args
    if name == "count":
        if not args or args[0].kind == "star":
            return len(rows)
        return sum(1 for r in rows if _eval(args[0], r) is not None)
    values = [(r, _eval(args[0], r)) for r in rows]
    present = [(r, v) for r, v in values if v is not None]
    if not present:
        return None
    if name in ("latest", "earliest"):
        pick = max if name == "latest" else min
        return pick(enumerate(present), key=lambda item: (item[1][0].get("@timestamp", 0),
                                                           item[0]))[1][1]
    only = [v for _, v in present]
    if name in ("sortsFirst", "sortsLast"):
        return min(only) if name == "sortsFirst" else max(only)
    if name in ("max", "min"):
        return max(only) if name == "max" else min(only)
    numbers = sorted(float(v) for v in only if isinstance(v, (int, float)))
    if not numbers:
        return None
    if name == "sum":
        return sum(numbers)
    if name == "avg":
        return sum(numbers) / len(numbers)
    if name == "pct":
        rank = max(1, -(-len(numbers) * float(_eval(args[1], {})) // 100))
        return numbers[int(rank) - 1]
    raise QuerySyntaxError(f"cannot evaluate {name}()")


def evaluate(commands: List[Command], events: Iterable[Tuple[int, str]]) -> Dict[str, Any]:
    """GetQueryResults' answer for ``commands`` over (timestamp ms, message) events."""
    rows: List[Row] = []
    scanned = 0
    for stamp, message in events:
        scanned += len(message)
        try:
            data = json.loads(message)
        except ValueError:
            data = None
        rows.append({"@timestamp": Stamp(stamp), "@message": message,
                     "\0json": data if isinstance(data, dict) else None})
    total = len(rows)
    matched: Optional[int] = None
    for c in commands:
        if c.name == "filter":
            assert c.expr is not None
            rows = [r for r in rows if _eval(c.expr, r)]
        elif c.name == "fields":
            for r in rows:
                for expr, name in c.items:
                    r[name] = _eval(expr, r)
        elif c.name == "unnest":
            assert c.expr is not None
            out = []
            for r in rows:
                value = _eval(c.expr, r)
                for item in (value if isinstance(value, list) else [value]):
                    out.append({**r, c.target: item})
            rows = out
        elif c.name == "stats":
            if matched is None:
                matched = len(rows)
            groups: Dict[Tuple[Any, ...], List[Row]] = {}
            for r in rows:
                key = tuple(_hashable(_eval(expr, r)) for expr, _ in c.by)
                groups.setdefault(key, []).append(r)
            rows = []
            for key, members in groups.items():
                out_row: Row = {name: value for (_, name), value in zip(c.by, key)}
                for call, name in c.items:
                    out_row[name] = _aggregate(call, members)
                rows.append(out_row)
        elif c.name == "sort":
            present = [r for r in rows if _lookup(r, c.target) is not None]
            missing = [r for r in rows if _lookup(r, c.target) is None]
            present.sort(key=lambda r: _lookup(r, c.target), reverse=c.descending)
            rows = present + missing
        elif c.name == "limit":
            rows = rows[: c.count]
    visible = _visible(commands)
    results = []
    for n, r in enumerate(rows[:MAX_LIMIT]):
        cells = [{"field": name, "value": _text(r.get(name) if name in r else _lookup(r, name))}
                 for name in (visible or [k for k in r if not k.startswith("\0")])]
        cells = [c for c in cells if c["value"] is not None]
        cells.append({"field": "@ptr", "value": f"ptr-{n}"})
        results.append(cells)
    return {"results": results,
            "statistics": {"recordsMatched": float(matched if matched is not None else len(rows)),
                           "recordsScanned": float(total), "bytesScanned": float(scanned)}}


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def _visible(commands: List[Command]) -> List[str]:
    last_stats = max((i for i, c in enumerate(commands) if c.name == "stats"), default=None)
    if last_stats is None:
        names = [n for c in commands if c.name == "fields" for _, n in c.items]
        return names or ["@timestamp", "@message"]
    c = commands[last_stats]
    return [name for _, name in c.by + c.items]


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, Stamp):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)

