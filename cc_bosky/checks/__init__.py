"""``bosky doctor``'s checks: one :class:`Check` each, one line per check.

Each check is a small function returning a :class:`Check`, so tests can call
them one at a time; the modules beside this one hold them by subject, and
``tools/doctor.py`` only runs them. The type lives here, below every check,
so each check module imports it downward.
"""

from __future__ import annotations

import dataclasses

from ..text import printable

OK, WARN, FAIL = "ok", "warn", "fail"
_LABELS = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]"}


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{_LABELS[self.status]} {self.name}: {self.detail}"
        if self.fix and self.status != OK:
            text += f" -- fix: {self.fix}"
        return printable(text)
