"""The boot's verdict, read from what cloud-init itself records.

cloud-init rewrites ``status.json`` at the start and end of every stage and
writes ``result.json`` once, after the final stage, with every stage's
errors. The verdict is ``fail`` when cloud-init recorded errors, ``degraded``
when it recorded only recoverable ones, ``pass`` otherwise; ``timeout`` and
the "cloud-init vanished" ``fail`` are decided by the reporter from time and
process state. A record that cannot be read is itself a ``fail``: a verdict
that says so beats silence.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

STAGES = ("init-local", "init", "modules-config", "modules-final")
_MAX_RECORD = 8 * 1024 * 1024
_MAX_ERRORS = 50
_MODULE_ERROR = re.compile(r"^\(\s*'([A-Za-z0-9_-]+)'\s*,")


@dataclasses.dataclass
class Records:
    """cloud-init's two records, and what was wrong with each if unreadable."""

    status: Optional[Dict[str, Any]] = None
    status_problem: Optional[str] = None
    result: Optional[Dict[str, Any]] = None
    result_problem: Optional[str] = None

    @property
    def finished(self) -> bool:
        return self.result is not None or self.result_problem is not None


@dataclasses.dataclass
class Verdict:
    status: str
    message: str
    fields: Dict[str, Any]


def read_records(cloud_run_dir: str) -> Records:
    records = Records()
    records.status, records.status_problem = _read(os.path.join(cloud_run_dir, "status.json"))
    records.result, records.result_problem = _read(os.path.join(cloud_run_dir, "result.json"))
    return records


def _read(path: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(the record's ``v1`` mapping, None), (None, problem), or (None, None) if absent."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_RECORD + 1)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{os.path.basename(path)} cannot be read: {exc.strerror}"
    name = os.path.basename(path)
    if len(raw) > _MAX_RECORD:
        return None, f"{name} is larger than {_MAX_RECORD // (1024 * 1024)} MiB"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, f"{name} is not UTF-8"
    except (ValueError, RecursionError):
        return None, f"{name} is not valid JSON (truncated or corrupted)"
    v1 = data.get("v1") if isinstance(data, dict) else None
    if not isinstance(v1, dict):
        return None, f"{name} has no 'v1' object"
    return v1, None


def first_start(status: Optional[Dict[str, Any]]) -> Optional[float]:
    """When cloud-init began this boot: its earliest stage start."""
    starts = [s for s in (time_value(stage_record(status, name).get("start"))
                          for name in STAGES) if s]
    return min(starts) if starts else None


def elapsed(status: Optional[Dict[str, Any]], now: float,
            uptime: Optional[float]) -> Optional[float]:
    """Seconds since cloud-init began this boot, or None if unknown.

    Releases up to 22.x record stage times as epoch seconds, later ones as
    seconds of uptime; a value that small is uptime.
    """
    start = first_start(status)
    if start is None:
        return None
    if start < 1e9:
        return None if uptime is None else max(0.0, uptime - start)
    return max(0.0, now - start)


def read_uptime(path: str = "/proc/uptime") -> Optional[float]:
    try:
        with open(path, encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stage_durations(status: Optional[Dict[str, Any]]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for name in STAGES:
        stage = stage_record(status, name)
        start, end = time_value(stage.get("start")), time_value(stage.get("finished"))
        if start and end and end >= start:
            out[name] = round(end - start, 3)
    return out


def current_stage(status: Optional[Dict[str, Any]]) -> Optional[str]:
    stage = status.get("stage") if status else None
    if isinstance(stage, str) and stage:
        return _trim(stage, 100)  # a stage name; anything longer is not one
    for name in reversed(STAGES):
        s = stage_record(status, name)
        if time_value(s.get("start")) and not time_value(s.get("finished")):
            return name
    return None


def final_verdict(
    records: Records,
    degraded_is: str = "degraded",
    ignore_recoverable: Callable[[str, str], bool] = lambda level, message: False,
) -> Verdict:
    """The verdict once cloud-init has finished (``result.json`` exists)."""
    fields = _common_fields(records)
    if records.result_problem or records.result is None:
        problem = records.result_problem or "result.json is missing"
        fields["Errors"] = [problem]
        return Verdict("fail", f"cloud-init's record is unreadable: {problem}", fields)
    errors = _strings(records.result.get("errors"))
    recoverable = _recoverable(records, ignore_recoverable)
    if recoverable:
        fields["RecoverableErrors"] = recoverable
    if errors:
        modules = failed_modules(errors)
        fields["FailedModules"] = modules
        fields["Errors"] = [_trim(e) for e in errors[:_MAX_ERRORS]]
        where = f" in {', '.join(modules)}" if modules else ""
        return Verdict("fail", f"cloud-init recorded {_count(len(errors), 'error')}{where}", fields)
    if recoverable and degraded_is == "degraded":
        total = sum(len(v) for v in recoverable.values())
        levels = ", ".join(sorted(recoverable))
        return Verdict("degraded",
                       f"cloud-init finished with {_count(total, 'recoverable error')} ({levels})",
                       fields)
    return Verdict("pass", "cloud-init finished with no errors", fields)


def timeout_verdict(records: Records, deadline: float, elapsed: float) -> Verdict:
    fields = _common_fields(records)
    stage = current_stage(records.status)
    if stage:
        fields["CurrentStage"] = stage
    fields["Deadline"] = deadline
    fields["Elapsed"] = round(elapsed, 3)
    running = f"; stage {stage} is still running" if stage else ""
    return Verdict("timeout", f"cloud-init has not finished {elapsed:.0f} s after it started "
                   f"(deadline {deadline:g} s){running}", fields)


def vanished_verdict(records: Records, why: str) -> Verdict:
    fields = _common_fields(records)
    stage = current_stage(records.status)
    if stage:
        fields["CurrentStage"] = stage
    fields["Errors"] = [why]
    return Verdict("fail", f"cloud-init ended without writing result.json: {why}", fields)


def failed_modules(errors: List[str]) -> List[str]:
    """Module names in cloud-init's ``('scripts_user', RuntimeError(...))`` error strings."""
    names: List[str] = []
    for error in errors:
        match = _MODULE_ERROR.match(error)
        # Bounded like Errors: cloud-init has some 60 modules, and a list
        # fit() cannot shorten must not be able to outgrow the event.
        # An error names the module as the module list spells it, and Debian's
        # cloud.cfg spells it `scripts-user`; cloud-init imports both as
        # cc_scripts_user, so the event always says `scripts_user` and a rule
        # written against one boot matches every other.
        name = _trim(match.group(1).replace("-", "_"), 100) if match else None
        if name and name not in names:
            names.append(name)
            if len(names) == _MAX_ERRORS:
                break
    return names


def _common_fields(records: Records) -> Dict[str, Any]:
    fields: Dict[str, Any] = {}
    stages = stage_durations(records.status)
    if stages:
        fields["Stages"] = stages
    datasource = (records.result or {}).get("datasource") or (records.status or {}).get(
        "datasource")
    if isinstance(datasource, str) and datasource:
        fields["Datasource"] = _trim(datasource, 200)
    if records.status_problem:
        fields.setdefault("Errors", []).append(records.status_problem)
    return fields


def _recoverable(records: Records,
                 ignore: Callable[[str, str], bool]) -> Dict[str, List[str]]:
    """Recoverable errors (cloud-init 23.4+) of result.json and every stage, de-duplicated."""
    sources = [(records.result or {}).get("recoverable_errors")]
    sources += [stage_record(records.status, name).get("recoverable_errors") for name in STAGES]
    merged: Dict[str, List[str]] = {}
    for source in sources:
        if not isinstance(source, dict):
            continue
        for level, messages in source.items():
            for message in _strings(messages):
                if ignore(str(level), message):
                    continue
                bucket = merged.setdefault(str(level), [])
                trimmed = _trim(message)  # compared trimmed: the bucket holds trimmed ones
                if trimmed not in bucket and len(bucket) < _MAX_ERRORS:
                    bucket.append(trimmed)
    return merged


def stage_record(status: Optional[Dict[str, Any]], name: str) -> Dict[str, Any]:
    stage = (status or {}).get(name)
    return stage if isinstance(stage, dict) else {}


def _strings(value: Any) -> List[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [_string(item) for item in items]


def _string(item: Any) -> str:
    if isinstance(item, str):
        return item
    try:
        return json.dumps(item, default=str)
    except (RecursionError, ValueError):  # nested as deep as json.loads allows
        return f"({type(item).__name__} nested too deeply to show)"


def time_value(value: Any) -> Optional[float]:
    """A positive, finite time; None for anything else.

    JSON from disk may hold ``Infinity`` or ``NaN`` (Python's json accepts
    them) and integers too large for a float: a duration of inf would make the
    event's Detail invalid JSON, and float(10**400) raises.
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _trim(text: str, limit: int = 2048) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
