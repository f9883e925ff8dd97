"""cloud-init's configuration as cloud-init itself reads it, and its module lists.

cloud-init runs the modules named in ``cloud_init_modules``,
``cloud_config_modules`` and ``cloud_final_modules``. It reads
``/etc/cloud/cloud.cfg`` and then ``cloud.cfg.d/*.cfg`` in lexical order, and
a list set by a later file replaces the earlier list whole:
:func:`effective_lists` computes the lists it will use. ``bosky install``
and ``bosky doctor`` both read through here, so they agree on what
"registered" means.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import UsageError
from .root import in_root

MODULE = "bosky"
INIT_KEY = "cloud_init_modules"
CONFIG_KEY = "cloud_config_modules"
FINAL_KEY = "cloud_final_modules"
LIST_KEYS = (INIT_KEY, CONFIG_KEY, FINAL_KEY)

CLOUD_CFG = "/etc/cloud/cloud.cfg"
MAX_CFG_BYTES = 4 * 1024 * 1024
_JINJA_HEADER = "## template: jinja"


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



def names_at(items: Sequence[Any], module: str) -> Optional[int]:
    """Index of the first item naming ``module``, or None."""
    target = canonical(module)
    for index, item in enumerate(items):
        if item_name(item) == target:
            return index
    return None
