"""A small validator for the subset of JSON Schema that bosky's own schemas use.

jsonschema is not a runtime dependency (it is not always on the Python that
runs cloud-init, and importing it costs more than the whole module may spend
inside a boot), so the config schema is checked by this interpreter. The test
suite checks with the real jsonschema that both agree.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def errors(value: Any, schema: Dict[str, Any], path: str = "") -> List[str]:
    """Return one message per problem, each naming the key it is about."""
    where = path or "(top level)"
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
    if "pattern" in schema and value and not re.search(schema["pattern"], value):
        found.append(f"{where}: {_short(value)} does not match {schema['pattern']}")
    return found


def _array_errors(value: List[Any], schema: Dict[str, Any], path: str) -> List[str]:
    found = []
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            found += errors(item, items, f"{path}[{i}]")
    if schema.get("uniqueItems"):
        seen: List[Any] = []
        for item in value:
            if item in seen:
                found.append(f"{path or '(top level)'}: {_short(item)} is listed twice")
            seen.append(item)
    return found


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
            found.append(f"{_join(path, str(key))}: unknown key")
    return found


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
