"""JSON Schemas shipped with bosky (draft 4, so EventBridge's schema registry accepts them)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Dict

_HERE = Path(__file__).resolve().parent


@cache
def load(name: str) -> Dict[str, Any]:
    """Return the parsed schema ``name`` (``config`` or ``detail``)."""
    with open(_HERE / f"{name}.schema.json", encoding="utf-8") as f:
        schema: Dict[str, Any] = json.load(f)
    return schema
