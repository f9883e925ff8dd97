"""The drop-in ``bosky install`` writes to put bosky in cloud-init's module lists.

A list set by a later config file replaces the earlier list whole, so bosky
cannot add itself with a drop-in that names only ``bosky``: the drop-in
re-states the effective lists, exactly, with ``bosky`` added -- in the init
stage (where the hang watch starts) and in the final stage, before
``power_state_change`` so the verdict is handled before the machine may
power off.

The price is that the drop-in pins the lists it copied: if a cloud-init
upgrade changes them in ``cloud.cfg``, the drop-in still wins with the old
ones. The header says so, and :func:`dropin_state` (used by ``bosky doctor``)
detects the drift by computing the lists again and comparing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import UsageError
from ..version import __version__
from .cloudcfg import (
    FINAL_KEY,
    INIT_KEY,
    LIST_KEYS,
    MODULE,
    Lists,
    System,
    effective_lists,
    has_module,
    names,
    names_at,
)
from .marked import MARKER, is_ours

# The final-stage module bosky must come before: it may power the machine off.
BEFORE_IN_FINAL = "power_state_change"
DROPIN_NAME = "99_bosky.cfg"
CONFIG_NAME = "98_bosky_config.cfg"


# -- planning the drop-in ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """The lists the drop-in must state (none: bosky is already in both)."""

    lists: Dict[str, List[Any]]
    where: Dict[str, str]  # key -> how bosky was placed, for the user
    base: Lists  # the effective lists without bosky's drop-in


def plan(system: System) -> Plan:
    """What ``bosky install`` would write now, from every file but its own drop-in."""
    base = effective_lists(system, skip=(DROPIN_NAME,))
    lists: Dict[str, List[Any]] = {}
    where: Dict[str, str] = {}
    for key in (INIT_KEY, FINAL_KEY):
        items = base.values.get(key, [])
        if has_module(items):
            continue
        _check_read_before(system, base, key)
        lists[key], where[key] = _with_module(key, items)
    return Plan(lists, where, base)


def _with_module(key: str, items: List[Any]) -> Tuple[List[Any], str]:
    if key == FINAL_KEY:
        found = names_at(items, BEFORE_IN_FINAL)
        if found is not None:
            return [*items[:found], MODULE, *items[found:]], f"before {BEFORE_IN_FINAL}"
    return [*items, MODULE], "appended"



def _check_read_before(system: System, base: Lists, key: str) -> None:
    """The drop-in only wins if no file read after it sets the same list."""
    for cfg in system.dropins:
        if cfg.path.name > DROPIN_NAME and cfg.shown == base.origin.get(key):
            raise UsageError(f"{cfg.path} sets {key} and is read after {DROPIN_NAME}, so a "
                             f"drop-in cannot add {MODULE}: add it to that file's list by hand")


# -- rendering it ---------------------------------------------------------------------


def render_dropin(the_plan: Plan) -> str:
    lines = [
        f"{MARKER} module-lists. Written by 'bosky install' (bosky {__version__}); "
        "remove it with 'bosky uninstall'.",
        "#",
        "# cloud-init takes each module list whole from the last file that sets it, so this",
        f"# file re-states the effective lists with '{MODULE}' added. It pins them: if a",
        "# cloud-init upgrade changes the lists in cloud.cfg, this file still wins with the",
        "# old ones. 'bosky doctor' reports that drift; 'bosky install' then rewrites this file.",
    ]
    for key, items in the_plan.lists.items():
        origin = the_plan.base.origin.get(key, "no file (empty)")
        lines += ["", f"# {key} from {origin}, {MODULE} {the_plan.where[key]}", f"{key}:"]
        lines += [f" - {_flow(item)}" for item in items]
    text = "\n".join(lines) + "\n"
    _check_round_trip(text, the_plan.lists)
    return text


def _flow(item: Any) -> str:
    """One list item on one line, as YAML: ``name``, ``[name, freq]`` or ``{name: ...}``."""
    import yaml

    # Dumped inside a one-item flow list, then unwrapped: quoting stays YAML's business.
    text = yaml.safe_dump([item], default_flow_style=True, sort_keys=False, width=10_000)
    return str(text).strip()[1:-1]


def _check_round_trip(text: str, lists: Mapping[str, List[Any]]) -> None:
    """The drop-in must read back as exactly the lists it states."""
    import yaml

    if yaml.safe_load(text) != dict(lists):
        raise RuntimeError("bosky install rendered module lists that do not read back the same")


# -- the drop-in's state, for doctor ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DropinState:
    """bosky's drop-in as it is, against what install would write now."""

    shown: str
    exists: bool
    ours: bool
    stated: Dict[str, List[Any]]
    wanted: Dict[str, List[Any]]
    base_origin: Dict[str, str]

    @property
    def stale(self) -> bool:
        return self.ours and self.stated != self.wanted

    def drift(self) -> List[str]:
        """How the pinned lists differ from the lists they should be now."""
        found: List[str] = []
        for key in sorted(set(self.stated) | set(self.wanted), key=LIST_KEYS.index):
            found += _list_drift(key, self.stated.get(key), self.wanted.get(key),
                                 self.base_origin.get(key, "cloud.cfg"))
        return found


def _list_drift(key: str, stated: Optional[List[Any]], wanted: Optional[List[Any]],
                origin: str) -> List[str]:
    if stated == wanted:
        return []
    if wanted is None:
        return [f"{key}: {origin} already lists {MODULE}, the drop-in's copy is no longer needed"]
    if stated is None:
        return [f"{key}: the drop-in does not add {MODULE} to it"]
    hidden = [n for n in names(wanted) if n not in names(stated)]
    gone = [n for n in names(stated) if n not in names(wanted)]
    parts = []
    if hidden:
        parts.append(f"{origin} now also lists {', '.join(hidden)}, which the drop-in hides")
    if gone:
        parts.append(f"the drop-in still lists {', '.join(gone)}, which {origin} no longer has")
    if not parts:
        parts.append(f"order or arguments differ from {origin}")
    return [f"{key}: {'; '.join(parts)}"]


def dropin_state(system: System) -> DropinState:
    path = system.confd_file(DROPIN_NAME)
    the_plan = plan(system)
    exists = path.is_file()
    ours = exists and is_ours(path)
    stated: Dict[str, List[Any]] = {}
    if ours:
        data = next((f.data for f in system.dropins if f.path == path), {})
        stated = {k: list(data.get(k) or []) for k in LIST_KEYS if k in data}
    return DropinState(str(path), exists, ours, stated, the_plan.lists,
                       the_plan.base.origin)
