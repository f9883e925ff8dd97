"""A small validator for the subset of JSON Schema that bosky's own schemas use.

jsonschema is not a runtime dependency (it is not always on the Python that
runs cloud-init, and importing it costs more than the whole module may spend
inside a boot), so the config schema is checked by this interpreter. The test
suite checks with the real jsonschema that both agree.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, Iterable, List

from .text import printable

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def has_type(value: Any, kind: str) -> bool:
    """Whether ``value`` is of JSON Schema type ``kind`` (a bool is no integer)."""
    return _TYPES[kind](value)


def errors(value: Any, schema: Dict[str, Any], path: str = "") -> List[str]:
    """Return one message per problem, each naming the key it is about."""
    where = path or "(top level)"
    if isinstance(value, float) and math.isnan(value):
        # YAML's .nan and float("nan") from the environment: not a JSON value,
        # and every comparison with minimum/maximum is False, so it would pass.
        return [f"{where}: NaN is not a number"]
    expected = schema.get("type")
    if expected is not None:
        kinds = expected if isinstance(expected, list) else [expected]
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, got {_kind(value)}"]
    found: List[str] = []
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(str(v) for v in schema["enum"])
        found.append(f"{where}: {_short(value)} is not one of: {allowed}")
    if isinstance(value, str):
        found += _string_errors(value, schema, where)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: {value} is less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: {value} is more than {schema['maximum']}")
    if isinstance(value, list):
        found += _array_errors(value, schema, path)
    if isinstance(value, dict):
        found += _object_errors(value, schema, path)
    return found


def _string_errors(value: str, schema: Dict[str, Any], where: str) -> List[str]:
    found = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        found.append(f"{where}: must not be empty" if schema["minLength"] == 1 and not value
                     else f"{where}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append(f"{where}: longer than {schema['maxLength']} characters")
    # JSON Schema applies a pattern to the empty string too ("" is not a
    # region); only a string already reported as too short is not re-reported.
    too_short = "minLength" in schema and len(value) < schema["minLength"]
    if "pattern" in schema and not too_short and not re.search(schema["pattern"], value):
        found.append(f"{where}: {_short(value)} does not match {schema['pattern']}")
    return found


# Past this many bad items an array's problems are counted, not listed: a
# 1 MiB file can hold a list of 200,000 of them, all in one line of stderr.
_MAX_ITEM_ERRORS = 5


def _array_errors(value: List[Any], schema: Dict[str, Any], path: str) -> List[str]:
    found: List[str] = []
    items = schema.get("items")
    bad_items = 0
    if isinstance(items, dict):
        for i, item in enumerate(value):
            item_errors = errors(item, items, f"{path}[{i}]")
            if item_errors:
                bad_items += 1
                if bad_items <= _MAX_ITEM_ERRORS:
                    found += item_errors
    if bad_items > _MAX_ITEM_ERRORS:
        found.append(f"{path or '(top level)'}: {bad_items - _MAX_ITEM_ERRORS} more bad items")
    if schema.get("uniqueItems") and not bad_items:
        found += [f"{path or '(top level)'}: {_short(item)} is listed twice"
                  for item in _repeated(value)]
    return found


def _repeated(value: List[Any]) -> List[Any]:
    """Items equal to an earlier one, by JSON equality (true is not 1).

    Hashable items go through a set: comparing each with all before it is
    quadratic, minutes for a list that fits in a 1 MiB file.
    """
    seen = set()
    unhashable: List[Any] = []
    repeated: List[Any] = []
    for item in value:
        key = (isinstance(item, bool), item)
        try:
            if key in seen and item not in repeated:
                repeated.append(item)
            seen.add(key)
        except TypeError:  # a list or a mapping
            if key in unhashable and item not in repeated:
                repeated.append(item)
            unhashable.append(key)
        if len(repeated) > _MAX_ITEM_ERRORS:
            break
    return repeated


def _object_errors(value: Dict[Any, Any], schema: Dict[str, Any], path: str) -> List[str]:
    found = []
    props: Dict[str, Any] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            found.append(f"{_join(path, key)}: is required")
    for key, item in value.items():
        if key in props:
            found += errors(item, props[key], _join(path, str(key)))
        elif schema.get("additionalProperties") is False:
            found.append(f"{_join(path, str(key))}: unknown key{did_you_mean(key, props)}")
    return found


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """``; did you mean 'deadline'?`` for a word close to one of ``choices``, else ''."""
    if not isinstance(word, str):
        return ""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f"; did you mean '{printable(close[0])}'?" if close else ""


def _join(path: str, key: str) -> str:
    # A key is user data: escaped, it cannot put a line of its own into
    # cloud-init's log or the event's ConfigWarnings.
    key = printable(key)
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _short(value: Any) -> str:
    # Bounded: a YAML file of nested aliases ("billion laughs") is small on
    # disk and has an exponential repr. Made here, only for a bad value.
    import reprlib

    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxstring, bounded.maxother, bounded.maxlong = 3, 60, 60, 60
    text = bounded.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
