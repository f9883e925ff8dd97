"""How long the boot and its slowest modules took, from cloud-init's own records.

``BootSeconds`` comes from ``status.json``: the final stage's ``finished``
minus the earliest stage ``start``. It is written before ``result.json``, so
it is there when the verdict is made; cloud-init's log is not (its
``finish: modules-final`` line follows result.json), and from 24.x the log no
longer carries the ``Cloud-init v. ... running 'init-local'`` banner that
``cloud-init analyze show`` times stages by.

``SlowestModules`` comes from the reporting events cloud-init writes to
``/var/log/cloud-init.log`` in every release (20.4 to 26.x)::

    2026-12-01 21:27:36,293 - handlers.py[DEBUG]: start: modules-final/config-scripts_user: ...
    2026-12-01 21:27:36,602 - handlers.py[DEBUG]: finish: modules-final/config-scripts_user:
        SUCCESS: config-scripts_user ran successfully and took 0.309 seconds

(one line each; "and took N seconds" in 25.1.4, not in 22.4.2 or 20.4.1, and
from 26.1 " (duration: N.NNNs)" after every finish line, both measured on a
monotonic clock; before that only the millisecond log timestamps tell).

``cloudinit.analyze.dump`` parses exactly these lines, but importing it pulls
in ``cloudinit.util`` (requests, urllib3, distros): 0.2-0.4 s and 22-28 MB of
the reporter's memory (measured on 20.4.1, 22.4.2, 25.1.4). This module reads
the same lines, as that parser reads them, from a bounded tail of the log;
tests/test_timings.py checks it against cloudinit.analyze on real boots.
Anything it cannot read leaves the field out; it never raises.
"""

from __future__ import annotations

import math
import os
import re
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

# The verdict's own readers of status.json: one notion of a usable time.
from .verdict import STAGES, stage_record, time_value

CLOUD_INIT_LOG = "/var/log/cloud-init.log"
MAX_MODULES = 10
# A boot appends 60-500 KB at cloud-init's default DEBUG level (every boot
# to the same file). Reading 1 MiB costs the reporter ~12 ms and ~1.7 MB at
# most (4 MiB: 67 ms, 4.7 MB); a boot that logged more gets no SlowestModules.
MAX_READ = 1024 * 1024
_MAX_NAME = 100
# The stages in boot order, as their events are named (the init stage's
# events say init-network).
_STAGE_ORDER = ("init-local", "init-network", "modules-config", "modules-final")
_STAGE_NAMES = {"init-local": "init-local", "init-network": "init",
                "modules-config": "modules-config", "modules-final": "modules-final"}
_EVENT = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d),(\d{3}) - [^\s\[]+\[[A-Z]+\]: "
    r"(start|finish): ([a-z-]+)(/config-([A-Za-z0-9_-]+))?: ([^\n]*)$",
    re.MULTILINE)
# cloud-init's own figure, measured on a monotonic clock: 25.x ends a module's
# finish line with "and took N seconds", 26.1 and later every finish line
# with "(duration: N.NNNs)" (canonical/cloud-init#6552).
_TOOK = re.compile(r"(?: and took (\d{1,9}(?:\.\d{1,9})?) seconds)?"
                   r"(?: \(duration: (\d{1,9}(?:\.\d{1,9})?)s\))?$")

Timing = Dict[str, Any]


def fields(status: Optional[Dict[str, Any]], log_path: str = CLOUD_INIT_LOG) -> Dict[str, Any]:
    """``BootSeconds`` and ``SlowestModules`` for the verdict, each only if known."""
    out: Dict[str, Any] = {}
    seconds = boot_seconds(status)
    if seconds is not None:
        out["BootSeconds"] = seconds
    modules = slowest_modules(read_log(log_path))
    if modules:
        out["SlowestModules"] = modules
    return out


def boot_seconds(status: Optional[Dict[str, Any]]) -> Optional[float]:
    """From the earliest stage start to the end of modules-final, or None."""
    stages = [stage_record(status, name) for name in STAGES]
    starts = [t for t in (time_value(s.get("start")) for s in stages) if t is not None]
    end = time_value(stages[-1].get("finished"))
    if not starts or end is None or end < min(starts):
        return None
    return round(end - min(starts), 3)


def read_log(path: str, limit: int = MAX_READ) -> Optional[str]:
    """The log's last ``limit`` bytes as text, or None if it cannot be read or
    is so large that this boot's start may lie before them."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            raw = f.read(limit)
    except OSError:
        return None
    text = raw.decode("utf-8", "replace")
    if size > limit:
        text = text.split("\n", 1)[-1]  # the first line read is probably partial
        if not _has_boot_start(text):
            return None
    return text


def slowest_modules(log: Optional[str], limit: int = MAX_MODULES) -> List[Timing]:
    """This boot's finished modules, slowest first, at most ``limit``."""
    if not log:
        return []
    timings = _this_boot(log)
    timings.sort(key=lambda t: -t["Seconds"])
    return timings[:limit]


def _this_boot(log: str) -> List[Timing]:
    """Module timings after the last point where the stages start over."""
    starts: Dict[Tuple[str, str], datetime] = {}
    done: List[Timing] = []
    rank = -1
    for match in _EVENT.finditer(log):
        kind, stage, module, rest = match.group(8), match.group(9), match.group(11), match.group(12)
        if stage not in _STAGE_NAMES:
            continue  # `cloud-init single`, or not an event line
        when = _when(match)
        if when is None:
            continue
        new_rank = _STAGE_ORDER.index(stage)
        if new_rank < rank:  # a later boot begins
            starts.clear()
            done.clear()
        rank = new_rank
        if not module:
            continue
        key = (stage, module)
        if kind == "start":
            starts[key] = when
            continue
        began = starts.pop(key, None)
        if began is None:
            continue
        took = _TOOK.search(rest)
        figure = took and (took.group(2) or took.group(1))
        seconds = float(figure) if figure else (when - began).total_seconds()
        if not math.isfinite(seconds) or seconds < 0:
            continue
        done.append({"Module": module[:_MAX_NAME], "Stage": _STAGE_NAMES[stage],
                     "Seconds": round(seconds, 3)})
    return done


def _has_boot_start(text: str) -> bool:
    """Whether ``text`` holds a point where the stages start over (a boot's start)."""
    rank = -1
    for match in _EVENT.finditer(text):
        stage = match.group(9)
        if stage in _STAGE_NAMES:
            new_rank = _STAGE_ORDER.index(stage)
            if new_rank < rank:
                return True
            rank = new_rank
    return False


def _when(match: re.Match[str]) -> Optional[datetime]:
    try:
        year, month, day, hour, minute, second, ms = (int(match.group(i)) for i in range(1, 8))
        return datetime(year, month, day, hour, minute, second, ms * 1000)
    except ValueError:  # 2026-13-45 in a hostile or corrupted line
        return None
