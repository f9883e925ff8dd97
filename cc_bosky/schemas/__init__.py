"""JSON Schemas shipped with bosky (draft 4, so EventBridge's schema registry accepts them)."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any, Dict

# os.path, not pathlib: this is on the path of every `bosky` call and of the
# module inside cloud-init, where each millisecond of import counts.
_HERE = os.path.dirname(os.path.abspath(__file__))


@cache
def load(name: str) -> Dict[str, Any]:
    """Return the parsed schema ``name`` (``config`` or ``detail``)."""
    with open(os.path.join(_HERE, f"{name}.schema.json"), encoding="utf-8") as f:
        schema: Dict[str, Any] = json.load(f)
    return schema
