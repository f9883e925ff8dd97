"""Text that is safe to print: what bosky shows of a message or a log is data."""

from __future__ import annotations

import json
import re
from typing import Any

# C0 and C1 controls but tab and newline, the Unicode line and paragraph
# separators, the bidi embeddings, overrides and isolates (they reorder what
# a terminal shows, "Trojan Source"), and lone surrogates (not encodable:
# printing one to a UTF-8 stdout raises).
# Patterns, not compiled ones: re compiles (and caches) them on first use, so
# importing this inside cloud-init's stage costs nothing.
_CONTROL = (r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
            r"\ud800-\udfff]")
_ONE_LINE = r"[\t\n]"


def printable(text: str, one_line: bool = True) -> str:
    """``text`` with control characters escaped, so it cannot move the cursor,
    rewrite a terminal line or forge another log line.

    With ``one_line`` (the default) tab and newline are escaped too; without,
    they are kept for text that is meant to span lines.
    """
    if text.isprintable():  # every character escaped below is one str.isprintable refuses
        return text
    out = re.sub(_CONTROL, lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                 else f"\\u{ord(m.group()):04x}", text)
    if one_line:
        out = re.sub(_ONE_LINE, lambda m: "\\n" if m.group() == "\n" else "\\t", out)
    return out


def safe_json(data: Any) -> str:
    """Indented JSON with non-ASCII text kept readable but every character a
    terminal would act on escaped (still valid JSON, the same values): the
    characters :func:`printable` escapes, as JSON's ``\\uXXXX``."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return re.sub(_CONTROL, lambda m: f"\\u{ord(m.group()):04x}", text)
