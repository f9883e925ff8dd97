"""``bosky install`` / ``bosky uninstall``: register the module with cloud-init.

install writes a drop-in that re-states cloud-init's effective module lists
with ``bosky`` added (:mod:`cc_bosky.host.dropin` says why it must), and,
under systemd, the boot reporter's own units (:mod:`cc_bosky.host.units`).
Files are recognised as bosky's by a marker on their first line
(:mod:`cc_bosky.host.marked`), so ``uninstall`` never deletes a file someone
else wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import EXIT_OK, UsageError
from ..host.cloudcfg import (
    CLOUD_CFG,
    FINAL_KEY,
    INIT_KEY,
    LIST_KEYS,
    MODULE,
    System,
    effective_lists,
    has_module,
    read_system,
)
from ..host.dropin import CONFIG_NAME, DROPIN_NAME, plan, render_dropin
from ..host.marked import MARKER, is_ours, refuse_foreign, write_file
from ..host.root import in_root
from ..text import printable
from ..version import __version__
from .args import Parser, subcommand


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


# -- the commands ---------------------------------------------------------------------------


def _parser(name: str, description: str) -> Parser:
    p = subcommand(name, description, config=False)
    p.add_argument("--root", default="/", metavar="DIR",
                   help="the system's root directory, e.g. an image being built (default /)")
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
    from ..host.units import install_units

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
    from ..host.units import uninstall_units

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
