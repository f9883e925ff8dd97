"""``bosky install`` / ``bosky uninstall``: register the module with cloud-init.

cloud-init runs the modules named in ``cloud_init_modules``,
``cloud_config_modules`` and ``cloud_final_modules``. It reads
``/etc/cloud/cloud.cfg`` and then ``cloud.cfg.d/*.cfg`` in lexical order, and
a list set by a later file replaces the earlier list whole. So bosky cannot
add itself with a drop-in that names only ``bosky``: the drop-in re-states the
effective lists, exactly, with ``bosky`` added -- in the init stage (where the
hang watch starts) and in the final stage, before ``power_state_change`` so the
verdict is handled before the machine may power off.

The price is that the drop-in pins the lists it copied: if a cloud-init
upgrade changes them in ``cloud.cfg``, the drop-in still wins with the old
ones. The header says so, and :func:`dropin_state` (used by ``bosky doctor``)
detects the drift by computing the lists again and comparing.

Under systemd it also writes the boot reporter's own units (:mod:`.units`).

Files are recognised as bosky's by a marker on their first line, so
``uninstall`` never deletes a file someone else wrote.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple

from .. import files
from ..errors import EXIT_OK, UsageError
from ..text import printable
from ..version import __version__

MODULE = "bosky"
INIT_KEY = "cloud_init_modules"
CONFIG_KEY = "cloud_config_modules"
FINAL_KEY = "cloud_final_modules"
LIST_KEYS = (INIT_KEY, CONFIG_KEY, FINAL_KEY)
# The final-stage module bosky must come before: it may power the machine off.
BEFORE_IN_FINAL = "power_state_change"

CLOUD_CFG = "/etc/cloud/cloud.cfg"
DROPIN_NAME = "99_bosky.cfg"
CONFIG_NAME = "98_bosky_config.cfg"
MARKER = "# bosky-install-marker:"
FILE_MODE = 0o644
DIR_MODE = 0o755
MAX_CFG_BYTES = 4 * 1024 * 1024
_JINJA_HEADER = "## template: jinja"


class ArgParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (cli.main prints it)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- reading cloud-init's configuration ------------------------------------------


@dataclasses.dataclass(frozen=True)
class CfgFile:
    """One cloud-init config file: where it is on this host and as the system sees it."""

    path: Path  # on this host (under --root)
    shown: str  # as the installed system sees it, e.g. /etc/cloud/cloud.cfg
    data: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class System:
    """cloud-init's config files under a root, in the order cloud-init reads them."""

    root: Path
    cloud_cfg: CfgFile
    confd: Optional[Path]  # None: cloud.cfg turned conf_d off
    dropins: Tuple[CfgFile, ...]

    def files(self, skip: Sequence[str] = ()) -> List[CfgFile]:
        return [self.cloud_cfg, *(f for f in self.dropins if f.path.name not in skip)]

    def confd_file(self, name: str) -> Path:
        if self.confd is None:
            raise UsageError(f"{self.cloud_cfg.path} sets conf_d to nothing, so no drop-in is "
                             "read; add bosky to its module lists by hand")
        return self.confd / name


@dataclasses.dataclass(frozen=True)
class Lists:
    """The effective module lists and, for each, the file that set it (system path)."""

    values: Dict[str, List[Any]]
    origin: Dict[str, str]


def in_root(root: Path, system_path: str) -> Path:
    """``system_path`` (absolute, as the installed system sees it) under ``root``."""
    return root / system_path.lstrip("/")


def read_system(root: Path) -> System:
    """cloud.cfg and its drop-in directory under ``root``; UsageError if cloud.cfg is
    missing or unreadable (without it the effective lists cannot be known)."""
    if not root.is_dir():
        raise UsageError(f"--root {root}: not a directory")
    cfg_path = in_root(root, CLOUD_CFG)
    if not cfg_path.is_file():
        raise UsageError(f"{cfg_path} not found: is cloud-init installed"
                         + (" in this root?" if root != Path("/") else "?"))
    cloud_cfg = CfgFile(cfg_path, CLOUD_CFG, _read_cfg(cfg_path, str(cfg_path)))
    confd_name = _confd_of(cloud_cfg)
    confd = in_root(root, confd_name) if confd_name else None
    dropins: List[CfgFile] = []
    if confd is not None and confd.is_dir():
        # cloud-init: sorted() file names (code point order), '.cfg' files only.
        for name in sorted(os.listdir(confd)):
            path = confd / name
            if name.endswith(".cfg") and path.is_file():
                shown = f"{confd_name.rstrip('/')}/{name}"
                dropins.append(CfgFile(path, shown, _read_cfg(path, str(path))))
    return System(root, cloud_cfg, confd, tuple(dropins))


def _confd_of(cloud_cfg: CfgFile) -> str:
    """The drop-in directory cloud-init uses: cloud.cfg's ``conf_d``, else cloud.cfg.d."""
    if "conf_d" not in cloud_cfg.data:
        return CLOUD_CFG + ".d"
    value = cloud_cfg.data["conf_d"]
    if not value:
        return ""
    if not isinstance(value, str) or not value.strip().startswith("/"):
        raise UsageError(f"{cloud_cfg.path}: conf_d must be an absolute path")
    return value.strip()


def _read_cfg(path: Path, shown: str) -> Dict[str, Any]:
    from ..config import parse_yaml

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CFG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {shown}: {exc.strerror}") from None
    if len(raw) > MAX_CFG_BYTES:
        raise UsageError(f"{shown} is larger than {MAX_CFG_BYTES // (1024 * 1024)} MiB")
    if raw.startswith(_JINJA_HEADER.encode()):
        return _read_template(raw, shown)
    data = parse_yaml(raw, shown)
    _check_merge_override(data, shown)
    return data


def _read_template(raw: bytes, shown: str) -> Dict[str, Any]:
    """A jinja-templated config (cloud-init 24+): its lists are only known at boot.

    Harmless unless it sets a module list; then bosky cannot restate that list.
    """
    text = raw.decode("utf-8", "replace")
    for key in LIST_KEYS:
        if re.search(rf"^\s*{key}\s*:", text, re.MULTILINE):
            raise UsageError(f"{shown} is a jinja template that sets {key}; bosky cannot "
                             f"compute that list: add {MODULE} to it by hand")
    return {}


def _check_merge_override(data: Mapping[str, Any], shown: str) -> None:
    """A file with its own merge rules may append to a list instead of replacing it."""
    if ("merge_how" in data or "merge_type" in data) and any(k in data for k in LIST_KEYS):
        raise UsageError(f"{shown} sets merge_how and a module list; bosky cannot compute the "
                         f"effective lists: add {MODULE} to them by hand")


def effective_lists(system: System, skip: Sequence[str] = ()) -> Lists:
    """The module lists cloud-init will use: the last file that sets a list wins whole."""
    values: Dict[str, List[Any]] = {}
    origin: Dict[str, str] = {}
    for cfg in system.files(skip):
        for key in LIST_KEYS:
            if key not in cfg.data:
                continue
            value = cfg.data[key]
            if value is not None and not isinstance(value, list):
                raise UsageError(f"{cfg.path}: {key} must be a list, got {type(value).__name__}")
            values[key] = list(value or [])
            origin[key] = cfg.shown
    return Lists(values, origin)


# -- module names ---------------------------------------------------------------------


def canonical(name: str) -> str:
    """The module a list entry names, as cloud-init resolves it (form_module_name):
    ``-`` and ``_`` alike, an optional ``.py`` and ``cc_`` prefix dropped."""
    name = name.strip().replace("-", "_")
    if name.lower().endswith(".py"):
        name = name[:-3]
    name = name.strip()
    return name[3:] if name.startswith("cc_") else name


def item_name(item: Any) -> Optional[str]:
    """The canonical module name of a list item: ``name``, ``[name, freq, args...]``
    or ``{name: ..., frequency: ...}``; None for an item cloud-init would skip."""
    raw: Any = None
    if isinstance(item, str):
        raw = item
    elif isinstance(item, list) and item:
        raw = item[0]
    elif isinstance(item, dict):
        raw = item.get("name")
    return canonical(raw) if isinstance(raw, str) and raw.strip() else None


def names(items: Sequence[Any]) -> List[str]:
    return [n for n in (item_name(i) for i in items) if n]


def has_module(items: Sequence[Any], module: str = MODULE) -> bool:
    return canonical(module) in names(items)


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


def names_at(items: Sequence[Any], module: str) -> Optional[int]:
    """Index of the first item naming ``module``, or None."""
    target = canonical(module)
    for index, item in enumerate(items):
        if item_name(item) == target:
            return index
    return None


def _check_read_before(system: System, base: Lists, key: str) -> None:
    """The drop-in only wins if no file read after it sets the same list."""
    for cfg in system.dropins:
        if cfg.path.name > DROPIN_NAME and cfg.shown == base.origin.get(key):
            raise UsageError(f"{cfg.path} sets {key} and is read after {DROPIN_NAME}, so a "
                             f"drop-in cannot add {MODULE}: add it to that file's list by hand")


# -- the files install writes -------------------------------------------------------------


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


def render_stanza(stanza: Mapping[str, Any]) -> str:
    import yaml

    header = [
        f"{MARKER} config. Written by 'bosky install --config' (bosky {__version__}); "
        "remove it with 'bosky uninstall'.",
        "# The bosky: stanza takes the keys of /etc/bosky/config.yaml "
        "('bosky --generate-config' lists them).",
        "# cloud-init does not schema-check cloud.cfg.d files, so this stanza causes no warning.",
    ]
    body = yaml.safe_dump({"bosky": dict(stanza)}, default_flow_style=False, sort_keys=False)
    return "\n".join(header) + "\n" + body


def is_ours(path: Path) -> bool:
    """True when ``path`` starts with install's marker line."""
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return False
    return first.startswith(MARKER.encode())


def write_file(path: Path, text: str) -> bool:
    """Write ``text`` atomically with mode 0644; False when it was already so."""
    data = text.encode("utf-8")
    try:
        unchanged = path.read_bytes() == data and (path.stat().st_mode & 0o777) == FILE_MODE
    except OSError:
        unchanged = False
    if unchanged:
        return False
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # Its temporary name does not end in .cfg: cloud-init never reads a half-written file.
    files.write_atomic(str(path), data, FILE_MODE)
    return True


def refuse_foreign(path: Path) -> None:
    """A file of install's that someone else wrote is neither replaced nor removed."""
    if path.exists() and not is_ours(path):
        raise UsageError(f"{path} exists and was not written by bosky install; "
                         "move it away first")


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


# -- the commands ---------------------------------------------------------------------------


def _parser(name: str, description: str) -> ArgParser:
    p = ArgParser(prog=f"bosky {name}", description=description)
    p.add_argument("--root", default="/", metavar="DIR",
                   help="the system's root directory, e.g. an image being built (default /)")
    p.add_argument("--debug", action="store_true", help="show details of failures")
    return p


def install_command(argv: List[str], environ: Mapping[str, str]) -> int:
    p = _parser("install", "Register the bosky module with cloud-init: write "
                f"{DROPIN_NAME} re-stating the effective module lists with bosky added, "
                "and (under systemd) the boot reporter's own units.")
    p.add_argument("--config", action="store_true",
                   help=f"also write a starter 'bosky:' stanza to {CONFIG_NAME}")
    p.add_argument("--project", help="with --config: the event Source")
    p.add_argument("--region", help="with --config: region of the event bus")
    p.add_argument("--event-bus", help="with --config: event bus name or ARN")
    args = p.parse_args(argv)
    stanza = _stanza(args)
    system = read_system(Path(args.root))
    from .units import install_units

    results = [_install_dropin(system), install_units(Path(args.root), environ)]
    if stanza is not None:
        results.append(_install_stanza(system, stanza))
    for line, _ in results:
        if line:
            print(printable(line))
    if not any(changed for _, changed in results):
        print("nothing changed: bosky was already installed")
    return EXIT_OK


def _stanza(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The validated ``bosky:`` stanza from the flags, or None without --config."""
    from ..config import problems

    given = {k: v for k, v in (("project", args.project), ("region", args.region),
                               ("event_bus", args.event_bus)) if v is not None}
    if not args.config:
        if given:
            raise UsageError("--project, --region and --event-bus go with --config")
        return None
    if "project" not in given:
        raise UsageError("--config needs --project NAME (the event Source)")
    found = problems(given, "--config")
    if found:
        raise UsageError("; ".join(found))
    return given


def _install_dropin(system: System) -> Tuple[str, bool]:
    """Write, keep or remove the drop-in; (what happened, whether anything changed)."""
    path = system.confd_file(DROPIN_NAME)
    refuse_foreign(path)
    the_plan = plan(system)
    if not the_plan.lists:
        origins = sorted({the_plan.base.origin[k] for k in (INIT_KEY, FINAL_KEY)})
        if path.exists():
            path.unlink()
            return f"{path}: removed, no longer needed ({MODULE} is listed by " \
                   f"{', '.join(origins)})", True
        return f"{path}: not needed ({MODULE} is already listed by {', '.join(origins)})", False
    if not write_file(path, render_dropin(the_plan)):
        return f"{path}: unchanged (already up to date)", False
    placed = "; ".join(f"{key}: {MODULE} {the_plan.where[key]}" for key in the_plan.lists)
    return f"{path}: written ({placed})", True


def _install_stanza(system: System, stanza: Mapping[str, Any]) -> Tuple[str, bool]:
    path = system.confd_file(CONFIG_NAME)
    refuse_foreign(path)
    existed = path.exists()
    if not write_file(path, render_stanza(stanza)):
        return f"{path}: unchanged (already up to date)", False
    keys = ", ".join(f"{k}: {v}" for k, v in stanza.items())
    return f"{path}: {'replaced' if existed else 'written'} (bosky: {keys})", True


def uninstall_command(argv: List[str], environ: Mapping[str, str]) -> int:
    p = _parser("uninstall", "Remove the files 'bosky install' wrote (and only those).")
    args = p.parse_args(argv)
    root = Path(args.root)
    confd = _confd_for_uninstall(root)
    for name in (DROPIN_NAME, CONFIG_NAME):
        print(printable(_remove(confd / name)))
    from .units import uninstall_units

    for line in uninstall_units(root):
        print(printable(line))
    note = _still_listed(root)
    if note:
        print(printable(note))
    return EXIT_OK


def _confd_for_uninstall(root: Path) -> Path:
    """The drop-in directory, even when cloud.cfg is broken: removal must still work."""
    if not root.is_dir():
        raise UsageError(f"--root {root}: not a directory")
    try:
        system = read_system(root)
    except UsageError:
        return in_root(root, CLOUD_CFG + ".d")
    return system.confd if system.confd is not None else in_root(root, CLOUD_CFG + ".d")


def _remove(path: Path) -> str:
    if not path.exists():
        return f"{path}: not present"
    if not is_ours(path):
        return f"{path}: kept, it was not written by bosky install"
    path.unlink()
    return f"{path}: removed"


def _still_listed(root: Path) -> Optional[str]:
    """After removal: say so if another file still runs bosky."""
    try:
        lists = effective_lists(read_system(root))
    except UsageError:
        return None
    where = [f"{key} ({lists.origin[key]})" for key in LIST_KEYS
             if has_module(lists.values.get(key, []))]
    if not where:
        return None
    return f"note: {MODULE} is still listed in {', '.join(where)}"
