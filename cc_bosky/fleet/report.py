"""The fleet report: which boots count, how they collapse, and what is shown.

The log group (infra/consumer.yaml's HistoryRule target) holds every event of
a project as EventBridge wrote it: the envelope, with bosky's Detail under
``detail``. Each Detail field used here is looked up, with its type, in
cc_bosky/schemas/detail.schema.json (the definition the sender's events are
tested against), so a field renamed there breaks this report's tests, and a
value of the wrong type in the log (an old or hand-made event) is ignored
rather than trusted.

The rules both engines follow (the Insights queries in :mod:`.insights` say
the same in Logs Insights' language, and tests hold the two to one answer):

- only boot verdicts count: ``Origin`` ``boot``, a ``Status`` of
  pass/fail/degraded/timeout and an ``EventId``;
- a boot is (project, ``InstanceId``, ``BootId``, or the ``EventId`` when an
  event has no ``BootId``). Its events collapse into one: re-sends of the
  same verdict count once, and its status is the one that sorts first
  (Insights' ``sortsFirst``): a final verdict (``degraded``, ``fail``,
  ``pass``) outranks ``timeout`` whichever arrived first;
- a boot's ``BootSeconds`` is the largest it reported (a ``timeout`` has none);
- a module counts once per boot that reported it in a ``fail`` verdict;
- a latest failure is a boot whose status is ``fail`` or ``timeout``, dated
  and described by its latest event.

Memory is bounded for a month of a large fleet (the scan path reads every
verdict): a boot costs one dictionary entry of two small integers (a 64-bit
digest of its key, and its packed state: status, group, failed-module set,
BootSeconds), about 180 bytes (benchmarks/fleet.py); only the latest
failures keep text, at most ``failures + _SLACK`` of them at a time.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from array import array
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..alert import own_lines
from ..schemas import load
from ..validation import has_type

OUTCOMES = ("pass", "fail", "degraded", "timeout")
FAILED = ("fail", "timeout")
# The Detail fields this report reads; their types come from the detail schema.
FIELDS = ("Status", "Message", "EventId", "Time", "Origin", "InstanceId", "ImageId",
          "InstanceType", "BootId", "BootSeconds", "FailedModules", "LogTail")
NONE = "-"  # the table's word for an event without ImageId or InstanceType
MAX_TEXT = 500  # characters of a message or log line kept per listed failure
# Latest-failure candidates kept beyond the number listed: a timed-out boot
# whose final verdict arrives later leaves the list, and one of the spare
# candidates takes its place. The list is exact unless more than this many
# listed timeouts are later outranked within one report.
_SLACK = 256
# Packed per-boot state: status (2 bits), group (22), failed-module set (22),
# then BootSeconds in milliseconds plus one (0: none).
_GROUP_SHIFT, _COMBO_SHIFT, _SECONDS_SHIFT = 2, 24, 46
_FIELD_MASK = (1 << 22) - 1

Group = Tuple[str, str, str]


def properties() -> Dict[str, str]:
    """Each used field's JSON type, from the detail schema."""
    schema = load("detail")
    defs = schema.get("definitions", {})
    out = {}
    for name in FIELDS:
        spec = schema["properties"][name]
        if "$ref" in spec:
            spec = defs[spec["$ref"].rsplit("/", 1)[-1]]
        out[name] = spec["type"]
    return out


_TYPES: Dict[str, str] = {}


def read_detail(message: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """(project, the Detail fields this report uses) of a logged envelope, or None
    when it is not a boot verdict. Each field is kept only if its value has the
    type the detail schema gives it."""
    try:
        envelope = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("detail"), dict):
        return None
    detail, source = envelope["detail"], envelope.get("source")
    if not isinstance(source, str):
        return None
    if not _TYPES:
        _TYPES.update(properties())
    kept = {}
    for name in FIELDS:
        value = detail.get(name)
        if value is not None and _typed(value, _TYPES[name]):
            kept[name] = value
    if (kept.get("Origin") != "boot" or kept.get("Status") not in OUTCOMES
            or "EventId" not in kept):
        return None
    kept["FailedModules"] = [m for m in kept.get("FailedModules", []) if isinstance(m, str)]
    return source, kept


def _typed(value: Any, kind: str) -> bool:
    """Of the schema's type, and (a number) finite: JSON has no NaN or infinity."""
    return has_type(value, kind) and (kind != "number" or math.isfinite(value))


def listed(source: str, detail: Dict[str, Any]) -> Dict[str, Any]:
    """What a latest failure shows of its latest event, bounded in size."""
    last = last_line(detail.get("LogTail"))
    return {"Project": source, "InstanceId": detail.get("InstanceId"),
            "ImageId": detail.get("ImageId"),
            "Message": clip(detail.get("Message", ""), MAX_TEXT),
            "LastLogLine": None if last is None else clip(last, MAX_TEXT),
            "EventId": detail.get("EventId")}


def boot_key(source: str, detail: Dict[str, Any]) -> Tuple[str, str, str]:
    return (source, detail.get("InstanceId", ""), detail.get("BootId") or detail["EventId"])


class Aggregates:
    """What either engine found: per group, its boots by status and its
    BootSeconds p50/p95; boots per failing module; the latest failures."""

    def __init__(self) -> None:
        self.counts: Dict[Group, Dict[str, int]] = {}
        self.seconds: Dict[Group, Tuple[Optional[float], Optional[float]]] = {}
        self.modules: Dict[str, int] = {}
        self.latest: List[Dict[str, Any]] = []


class Tally:
    """The report's state, fed one logged event at a time (the scan engine)."""

    def __init__(self, failures: int, project: Optional[str] = None) -> None:
        self.failures, self.project = failures, project
        self.read = self.skipped = 0
        self._groups: Dict[Group, int] = {}
        self._combos: Dict[Tuple[str, ...], int] = {(): 0}
        self._boots: Dict[int, int] = {}
        # boot digest -> (latest event's ms, its listing) while the boot's status is a failure
        self._latest: Dict[int, Tuple[int, Dict[str, Any]]] = {}

    def add(self, stamp_ms: int, message: str) -> None:
        self.read += 1
        parsed = read_detail(message)
        if parsed is None or (self.project is not None and parsed[0] != self.project):
            self.skipped += 1
            return
        source, d = parsed
        digest = int.from_bytes(hashlib.blake2b(
            "\0".join(boot_key(source, d)).encode("utf-8", "surrogatepass"),
            digest_size=8).digest(), "big")
        status = OUTCOMES.index(d["Status"])
        ms = round(float(d["BootSeconds"]) * 1000) + 1 if "BootSeconds" in d else 0
        modules = tuple(sorted(set(d["FailedModules"]))) if d["Status"] == "fail" else ()
        state = self._boots.get(digest)
        if state is None:
            group = (source, d.get("ImageId", NONE), d.get("InstanceType", NONE))
            gid = self._groups.setdefault(group, len(self._groups))
            combo = self._combo(modules)
        else:
            old = OUTCOMES[state & 3]
            if OUTCOMES[status] > old:  # sortsFirst: the earlier-sorting status stays
                status = OUTCOMES.index(old)
            gid = (state >> _GROUP_SHIFT) & _FIELD_MASK
            combo = (state >> _COMBO_SHIFT) & _FIELD_MASK
            if modules:
                combo = self._combo(tuple(sorted(set(self._combo_list()[combo]) | set(modules))))
            ms = max(ms, state >> _SECONDS_SHIFT)
        self._boots[digest] = (status | gid << _GROUP_SHIFT | combo << _COMBO_SHIFT
                               | ms << _SECONDS_SHIFT)
        if OUTCOMES[status] in FAILED:
            held = self._latest.get(digest)
            if held is None or stamp_ms >= held[0]:
                self._latest[digest] = (stamp_ms, listed(source, d))
                if len(self._latest) > 2 * (self.failures + _SLACK):
                    keep = heapq.nlargest(self.failures + _SLACK, self._latest.items(),
                                          key=lambda item: item[1][0])
                    self._latest = dict(keep)
        else:
            self._latest.pop(digest, None)

    def _combo(self, modules: Tuple[str, ...]) -> int:
        found = self._combos.get(modules)
        if found is None:
            found = self._combos[modules] = len(self._combos)
            self._list = None
        return found

    _list: Optional[List[Tuple[str, ...]]] = None

    def _combo_list(self) -> List[Tuple[str, ...]]:
        if self._list is None:
            self._list = [()] * len(self._combos)
            for combo, n in self._combos.items():
                self._list[n] = combo
        return self._list

    def aggregates(self) -> Aggregates:
        groups = list(self._groups)
        counts = [dict.fromkeys(OUTCOMES, 0) for _ in groups]
        seconds = [array("d") for _ in groups]
        combo_boots = [0] * len(self._combos)
        for state in self._boots.values():
            gid = (state >> _GROUP_SHIFT) & _FIELD_MASK
            counts[gid][OUTCOMES[state & 3]] += 1
            ms = state >> _SECONDS_SHIFT
            if ms:
                seconds[gid].append((ms - 1) / 1000.0)
            combo_boots[(state >> _COMBO_SHIFT) & _FIELD_MASK] += 1
        modules: Dict[str, int] = {}
        for combo, n in zip(self._combo_list(), combo_boots):
            for module in combo:
                modules[module] = modules.get(module, 0) + n
        agg = Aggregates()
        for gid, group in enumerate(groups):
            ordered = sorted(seconds[gid])
            agg.counts[group] = counts[gid]
            agg.seconds[group] = (percentile(ordered, 50), percentile(ordered, 95))
        agg.modules = {m: n for m, n in modules.items() if n}
        latest = []
        for digest, (stamp, item) in self._latest.items():
            status = OUTCOMES[self._boots[digest] & 3]
            latest.append((stamp, {"Time": iso(stamp / 1000.0), "Status": status, **item}))
        latest.sort(key=lambda pair: (-pair[0], pair[1]["EventId"] or ""))
        agg.latest = [item for _, item in latest[: self.failures]]
        return agg


def assemble(agg: Aggregates) -> Dict[str, Any]:
    """The report's data: groups worst first, by failed boots (a group of four
    boots with one failure does not outrank one of a thousand with fifty)."""
    rows: List[Dict[str, Any]] = []
    for (source, image, itype), counts in agg.counts.items():
        total = sum(counts.values())
        if not total:
            continue
        failed = counts["fail"] + counts["timeout"]
        p50, p95 = agg.seconds.get((source, image, itype), (None, None))
        rows.append({"Project": source, "ImageId": image, "InstanceType": itype,
                     "Boots": total, **{s.capitalize(): counts[s] for s in OUTCOMES},
                     "Failed": failed, "FailPercent": round(100.0 * failed / total, 1),
                     "BootSecondsP50": p50, "BootSecondsP95": p95})
    rows.sort(key=lambda r: (-r["Failed"], -r["FailPercent"], -r["Boots"], r["Project"],
                             r["ImageId"], r["InstanceType"]))
    return {"Boots": sum(r["Boots"] for r in rows), "Groups": rows,
            "FailingModules": [{"Module": m, "Failures": n} for m, n in
                               sorted(agg.modules.items(), key=lambda i: (-i[1], i[0]))],
            "Failures": sum(r["Failed"] for r in rows), "LatestFailures": agg.latest}


def build_report(events: Iterable[Tuple[int, str]], failures: int,
                 project: Optional[str] = None) -> Dict[str, Any]:
    """The report's data from (timestamp ms, message) pairs (of ``project`` only, if given:
    the server's filter narrows, this decides)."""
    tally = Tally(failures, project)
    for stamp, message in events:
        tally.add(stamp, message)
    report = assemble(tally.aggregates())
    report.update({"EventsRead": tally.read, "EventsSkipped": tally.skipped})
    return report


def percentile(values: List[float], pct: float) -> Optional[float]:
    """Nearest-rank percentile of sorted ``values``; None when there are none."""
    if not values:
        return None
    rank = max(1, -(-len(values) * pct // 100))
    return round(values[int(rank) - 1], 3)


def last_line(tail: Any) -> Optional[str]:
    """What the user's script said last (cloud-init's own lines skipped)."""
    lines = own_lines(tail)
    return lines[-1] if lines else None


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
