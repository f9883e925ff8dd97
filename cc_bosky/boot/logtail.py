"""The last lines of cloud-init's output log, redacted, for a verdict event."""

from __future__ import annotations

import os
from typing import List

from ..text import printable
from .redact import redact

OUTPUT_LOG = "/var/log/cloud-init-output.log"
_MAX_READ = 256 * 1024  # enough for 1000 ordinary lines; the event is cut to 64 KiB anyway
_MAX_LINE = 1000


def tail(path: str = OUTPUT_LOG, lines: int = 50) -> List[str]:
    """Up to ``lines`` last lines of ``path``, secrets redacted; [] if unreadable."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _MAX_READ))
            raw = f.read(_MAX_READ)
    except OSError:
        return []
    text = raw.decode("utf-8", "replace")
    if size > _MAX_READ:  # the first line read is probably partial
        text = text.split("\n", 1)[-1]
    # Redact the whole text first: a private key block spans lines.
    body = redact(text).rstrip("\n")
    if not body:  # an empty log has no lines, not one empty line
        return []
    kept = body.split("\n")[-lines:]
    return [_clip(printable(line.rstrip("\r"), one_line=True)) for line in kept]


def _clip(line: str) -> str:
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."
