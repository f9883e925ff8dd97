"""The event contract: one model for every event bosky sends.

An event is one PutEvents entry. Its Detail keeps the original bosky's
``Status`` and ``Message`` keys, so rules written for it keep matching, and
adds PascalCase fields that are absent when they cannot be known. Every event
is kept within one 64 KiB billing unit by :func:`fit`.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .alert import alert
from .version import __version__

SCHEMA_VERSION = "1.0"
DEFAULT_DETAIL_TYPE = "User Data"
# One billing unit; EventBridge itself would accept up to 256 KB.
MAX_EVENT_BYTES = 64 * 1024
# Size of an error string kept in Errors before the list itself is shortened.
_ERROR_KEEP = 2048


@dataclasses.dataclass(frozen=True)
class Event:
    """One PutEvents entry, ready to send or to spool."""

    source: str
    detail_type: str
    detail: Mapping[str, Any]
    resources: Tuple[str, ...] = ()
    event_bus: Optional[str] = None

    @property
    def event_id(self) -> str:
        return str(self.detail["EventId"])

    @property
    def status(self) -> str:
        return str(self.detail["Status"])

    def entry(self) -> Dict[str, Any]:
        """The PutEvents entry, exactly as it goes on the wire."""
        entry: Dict[str, Any] = {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": dumps(self.detail),
        }
        if self.resources:
            entry["Resources"] = list(self.resources)
        if self.event_bus:
            entry["EventBusName"] = self.event_bus
        return entry

    def size(self) -> int:
        return entry_size(self.entry())

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Event:
        """The event a spooled entry describes (raises ValueError if it is not one)."""
        detail = json.loads(entry["Detail"])
        if not isinstance(detail, dict) or "EventId" not in detail or "Status" not in detail:
            raise ValueError("entry detail is not a bosky detail")
        return cls(
            source=str(entry["Source"]),
            detail_type=str(entry["DetailType"]),
            detail=detail,
            resources=tuple(str(r) for r in entry.get("Resources", ())),
            event_bus=entry.get("EventBusName"),
        )


def dumps(detail: Mapping[str, Any]) -> str:
    return json.dumps(detail, ensure_ascii=False, separators=(",", ":"))


def entry_size(entry: Mapping[str, Any]) -> int:
    """AWS's documented PutEvents entry size: UTF-8 bytes of Source, DetailType,
    Detail and each resource, plus 14 when Time is set."""
    size = sum(len(str(entry.get(k, "")).encode("utf-8")) for k in ("Source", "DetailType"))
    size += len(entry.get("Detail", "").encode("utf-8"))
    size += sum(len(r.encode("utf-8")) for r in entry.get("Resources", ()))
    if entry.get("Time") is not None:
        size += 14
    return size


def billing_units(size: int) -> int:
    """Custom events are billed per started 64 KB chunk."""
    return max(1, -(-size // MAX_EVENT_BYTES))


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: undecodable bytes and lone surrogates become U+FFFD.

    Command-line arguments with bytes that are not UTF-8 arrive as lone
    surrogates, which JSON encoding would otherwise reject.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_event_id() -> str:
    return str(uuid.uuid4())


def stable_event_id(*parts: str) -> str:
    """An id that is the same whenever the same thing is reported again.

    The boot reporter derives its ids from instance, boot and verdict, so a
    reporter restarted mid-send re-sends under the same id, never a new one.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "bosky:" + "/".join(parts)))


def make_event(
    *,
    source: str,
    detail_type: str,
    status: str,
    message: str,
    identity: Mapping[str, Any],
    origin: str,
    resources: Tuple[str, ...] = (),
    event_bus: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
    event_id: Optional[str] = None,
) -> Event:
    """Build the one event model, fitted to :data:`MAX_EVENT_BYTES`.

    ``identity`` holds PascalCase instance fields already filtered to the
    known ones; ``extra`` holds verdict fields such as Errors and LogTail.
    """
    detail: Dict[str, Any] = {
        "Status": clean_text(status),
        "Message": clean_text(message),
        "EventId": event_id or new_event_id(),
        "Time": now_rfc3339(),
        "Origin": origin,
    }
    # Every string, not only the message: a lone surrogate anywhere (an
    # argument that is not UTF-8, a "\ud800" escape in cloud-init's JSON
    # records) makes the entry unencodable, and the verdict would be lost.
    detail.update(_clean(dict(identity)))
    detail["BoskyVersion"] = __version__
    detail["SchemaVersion"] = SCHEMA_VERSION
    if extra:
        detail.update(_clean(dict(extra)))
    detail["Alert"] = alert(clean_text(source), detail)
    event = Event(clean_text(source), clean_text(detail_type), detail,
                  tuple(clean_text(r) for r in resources),
                  clean_text(event_bus) if event_bus else event_bus)
    return fit(event)


def _clean(value: Any) -> Any:
    """``value`` with every string in it (keys too) passed through :func:`clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def fit(event: Event, limit: int = MAX_EVENT_BYTES) -> Event:
    """``event`` cut down to ``limit`` bytes, marked ``Truncated`` if anything was cut.

    What is cut first is what matters least: the oldest log lines, then long
    error strings and the end of the error list, then recoverable errors and
    config warnings, then the fastest of the slowest modules, then the
    message's tail. SlowestModules (at most 10 short entries, under 2 KB) goes
    after the log tail and the errors because the fleet report and the
    consumer's dashboard count on it, and before the message, the headline.
    ``Alert`` (bounded, about 1.5 KB at most) goes only when a limit far below
    EventBridge's leaves no room even for an empty message.
    """
    overhead = event.size() - len(dumps(event.detail).encode("utf-8"))
    budget = limit - overhead
    detail: Dict[str, Any] = dict(event.detail)
    if _size(detail) <= budget:
        return event
    detail["Truncated"] = True
    for shrink in (_shrink_log_tail, _shrink_errors, _drop_recoverable,
                   _shrink_config_warnings, _shrink_slowest_modules, _shrink_message,
                   _drop_alert):
        excess = _size(detail) - budget
        if excess <= 0:
            break
        shrink(detail, excess)
    if _size(detail) > budget:
        raise ValueError("event does not fit in one billing unit even with an empty message")
    return dataclasses.replace(event, detail=detail)


def _size(detail: Mapping[str, Any]) -> int:
    return len(dumps(detail).encode("utf-8"))


def _encoded(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _shrink_log_tail(detail: Dict[str, Any], excess: int) -> None:
    lines: List[str] = list(detail.get("LogTail") or [])
    freed = 0
    while lines and freed < excess:
        # A line frees its comma too, unless it was the last one.
        freed += _encoded(lines.pop(0)) + (1 if lines else 0)
    if "LogTail" in detail:
        detail["LogTail"] = lines


def _shrink_errors(detail: Dict[str, Any], excess: int) -> None:
    if "Errors" not in detail:
        return
    before = _size(detail)
    errors: List[str] = [e[:_ERROR_KEEP] for e in detail["Errors"]]
    detail["Errors"] = errors
    excess -= before - _size(detail)
    while errors and excess > 0:
        excess -= _encoded(errors.pop()) + (1 if errors else 0)


def _drop_recoverable(detail: Dict[str, Any], excess: int) -> None:
    detail.pop("RecoverableErrors", None)


def _shrink_config_warnings(detail: Dict[str, Any], excess: int) -> None:
    # A stanza with thousands of unknown keys has as many warnings; without
    # this the event could not be fitted at all.
    warnings: List[str] = list(detail.get("ConfigWarnings") or [])
    while warnings and excess > 0:
        excess -= _encoded(warnings.pop()) + (1 if warnings else 0)
    if "ConfigWarnings" in detail:
        detail["ConfigWarnings"] = warnings


def _shrink_slowest_modules(detail: Dict[str, Any], excess: int) -> None:
    modules: List[Any] = list(detail.get("SlowestModules") or [])
    while modules and excess > 0:  # slowest first: the fastest goes first
        excess -= _encoded(modules.pop()) + (1 if modules else 0)
    if "SlowestModules" in detail:
        detail["SlowestModules"] = modules


def _drop_alert(detail: Dict[str, Any], excess: int) -> None:
    """Only for limits far below EventBridge's (the alert is at most ~1.5 KB)."""
    detail.pop("Alert", None)


def _shrink_message(detail: Dict[str, Any], excess: int) -> None:
    message: str = detail["Message"]
    target = _encoded(message) - excess
    lo, hi = 0, len(message)
    while lo < hi:  # longest prefix whose JSON encoding fits
        mid = (lo + hi + 1) // 2
        if _encoded(message[:mid]) <= target:
            lo = mid
        else:
            hi = mid - 1
    detail["Message"] = message[:lo]
