"""Text that is safe to print: what bosky shows of a message or a log is data."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NEWLINES = re.compile(r"[\r\n]")


def printable(text: str, one_line: bool = True) -> str:
    """``text`` with control characters escaped, so it cannot move the cursor,
    rewrite a terminal line or forge another log line."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", text)
    if one_line:
        out = _NEWLINES.sub(lambda m: "\\n" if m.group() == "\n" else "\\r", out)
    return out
