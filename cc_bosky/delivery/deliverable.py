"""What the outbox delivers: events and actions, through one small protocol.

Each kind of record says, in one row of :data:`WAYS`, how it is spooled; the
functions below say how it is sent, settled, described and counted.
The spool, the outbox and ``bosky status`` go through here and never ask a
record what it is: an event is not made to look like an action, nor an
action like an event.

- sent: events many to one PutEvents call (the dropped counter rides on the
  first of them), an action alone, one AWS call each (:func:`events_of`,
  :func:`actions_of`), each to :func:`service` in its :func:`home_region`;
- settled: :func:`settle` says DONE, GONE (nothing was pending: counts as
  done), REJECTED (refused for good: set aside) or RETRY;
- described and counted: :func:`listing`, one line per record in
  ``bosky status`` and in the logs, whatever its kind; a GONE action counts
  as delivered (nothing is left to do).
"""

from __future__ import annotations

import dataclasses
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from ..arns import bus_region
from ..event import Event
from .action import DONE, REJECTED, RETRY, Action

if TYPE_CHECKING:  # the spool reads records without loading the sender
    from .sender import Outcome

Item = Union[Event, Action]
T = TypeVar("T")

# Entry errors that no retry can fix: EventBridge will refuse the same entry again.
REJECTED_CODES = frozenset({
    "MalformedDetail", "InvalidArgument", "ValidationException", "SerializationException",
})


@dataclasses.dataclass(frozen=True)
class Way:
    """How one kind of record is spooled."""

    key: str  # the key of its body in a spool record
    suffix: str  # its spool file's suffix: an older bosky reads only ``.event`` files


EVENT = Way("entry", ".event")
ACTION = Way("action", ".action")
WAYS: Tuple[Way, ...] = (EVENT, ACTION)
_LOADERS: Dict[str, Callable[[Any], Item]] = {
    EVENT.key: Event.from_entry, ACTION.key: Action.from_body}


@dataclasses.dataclass(frozen=True)
class Listing:
    """How ``bosky status`` and the logs name one record, whatever its kind."""

    id: str  # its EventId (an action's stable id)
    kind: str  # "event", or the action's kind ("lifecycle", "signal")
    status: str  # an event's Status; the answer an action carries
    source: str  # an event's Source; ``service:Operation`` for an action
    what: str  # one phrase for a person: "event", "lifecycle hook H of group G: CONTINUE"

    def fields(self) -> Dict[str, str]:
        """Its fields in ``bosky status --json``, the same for every kind."""
        return {"EventId": self.id, "Kind": self.kind, "Status": self.status,
                "Source": self.source}


def way(item: Item) -> Way:
    return EVENT if isinstance(item, Event) else ACTION


def delivery_id(item: Item) -> str:
    """The id the spool files a record under (one file per id)."""
    return item.event_id if isinstance(item, Event) else item.action_id


def dump(item: Item) -> Dict[str, Any]:
    """The record's part of a spool body: ``{key: body}``."""
    body = item.entry() if isinstance(item, Event) else item.body()
    return {way(item).key: body}


def load(body: Mapping[str, Any]) -> Item:
    """The record a spool body holds (raises LookupError, ValueError or TypeError if none)."""
    for key, loader in _LOADERS.items():
        if key in body:
            return loader(body[key])
    raise LookupError("a spool body with no record")


def settle(item: Item, outcome: Outcome) -> str:
    """DONE, GONE, REJECTED or RETRY, whatever the kind of record."""
    if isinstance(item, Action):
        return item.settle(outcome)
    if outcome.delivered:
        return DONE
    return REJECTED if outcome.error_code in REJECTED_CODES else RETRY


def listing(item: Item) -> Listing:
    if isinstance(item, Event):
        return Listing(item.event_id, "event", item.status, item.source, "event")
    return Listing(item.action_id, item.kind, item.answer, f"{item.service}:{item.operation}",
                   item.describe())


def service(item: Item) -> str:
    """The AWS service a record is sent to (the key of ``Settings.endpoints()``)."""
    return "events" if isinstance(item, Event) else item.service


def home_region(item: Item) -> Optional[str]:
    """A region the record itself names (an event bus ARN's), which always wins."""
    return bus_region(item.event_bus) if isinstance(item, Event) else None


def events_of(pairs: Sequence[Tuple[T, Item]]) -> List[Tuple[T, Event]]:
    """The batched records of ``pairs`` (events), each beside what it came with."""
    return [(tag, item) for tag, item in pairs if isinstance(item, Event)]


def actions_of(pairs: Sequence[Tuple[T, Item]]) -> List[Tuple[T, Action]]:
    """The records of ``pairs`` sent one call each (actions)."""
    return [(tag, item) for tag, item in pairs if isinstance(item, Action)]
