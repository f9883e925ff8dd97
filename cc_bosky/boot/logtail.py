"""The last lines of cloud-init's output log, redacted, for a verdict event."""

from __future__ import annotations

import os
import re
from typing import List

from ..redact import redact
from ..text import printable

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
    all_lines = body.split("\n")
    # cloud-init 25.x and 26.x (one process, --all-stages) write ~50 lines of
    # the init stage's ssh-keygen output after their "finished at" line (seen
    # on whole-machine trixie and sid boots); a plain tail then showed only
    # key fingerprints, not the failing script. The boot's own output ends at
    # that line.
    end = _last_finished(all_lines)
    kept = all_lines[:end][-lines:]
    return [_clip(printable(line.rstrip("\r"), one_line=True)) for line in kept]


_FINISHED = re.compile(r"Cloud-init v\. \S+ finished at ")
_STARTED = re.compile(r"Cloud-init v\. \S+ running 'init")


def _last_finished(lines: List[str]) -> int:
    """One past this boot's "Cloud-init v. X finished at" line, or the end.

    The log spans boots: a finished line before this boot's first "running
    'init..." line is an earlier boot's, and a boot still running (a timeout
    verdict) has none yet: then nothing is cut."""
    for index in range(len(lines) - 1, -1, -1):
        if _STARTED.search(lines[index]):
            return len(lines)
        if _FINISHED.search(lines[index]):
            return index + 1
    return len(lines)


def _clip(line: str) -> str:
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."
