"""Checks of cloud-init itself: found, recent enough, able to import bosky, running
it in the right stages (read where cloud-init reads), and the reporter's units."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..errors import UsageError
from ..host.cloudcfg import (
    FINAL_KEY,
    INIT_KEY,
    MODULE,
    effective_lists,
    has_module,
    names,
    read_system,
)
from ..host.dropin import BEFORE_IN_FINAL, dropin_state
from ..host.python import CloudInit, version_tuple
from ..host.root import root_flag
from . import FAIL, OK, WARN, Check

MIN_CLOUD_INIT = (20, 4)


def check_cloud_init(found: Optional[CloudInit], probe: Mapping[str, Any]) -> Check:
    name = "cloud-init"
    if found is None:
        return Check(name, FAIL, "not found on PATH or in /usr/bin",
                     "install cloud-init (e.g. apt-get install cloud-init)")
    if "error" in probe:
        return Check(name, FAIL, f"{found.script}: {probe['error']}",
                     f"check the interpreter on the first line of {found.script}")
    info = probe.get("cloudinit") or {}
    if "error" in info:
        return Check(name, FAIL, f"{found.python[0]} (from {found.script}) cannot import "
                     f"cloudinit: {info['error']}", "reinstall cloud-init")
    how = " (read from the image's files)" if probe.get("static") else ""
    return Check(name, OK, f"{info.get('version') or 'unknown version'} at {found.script}, "
                 f"Python {probe.get('python')} ({found.python[0]}){how}")


def check_version(version: Optional[str]) -> Check:
    name = "cloud-init version"
    if not version:
        return Check(name, WARN, "skipped: cloud-init's version is not known")
    parsed = version_tuple(version)
    wanted = ".".join(map(str, MIN_CLOUD_INIT))
    if parsed is None:
        return Check(name, WARN, f"cannot read version {version!r}; bosky needs {wanted}+")
    if parsed < MIN_CLOUD_INIT:
        return Check(name, FAIL, f"{version} is older than {wanted}",
                     f"upgrade cloud-init to {wanted} or later")
    return Check(name, OK, f"{version} (bosky needs {wanted} or later)")


def install_hint(interpreter: str) -> str:
    """How to install bosky into *interpreter*: a file of its release, by hash.
    Never a bare name: no index carries bosky, so whoever registered it there
    would run as root."""
    return (f"install bosky's release into that Python by file, its SHA-256 checked against "
            f"SHA256SUMS (README 'Install'): the .deb with apt-get, the .rpm with dnf, or the "
            f"wheel with {interpreter} -m pip install --no-deps --require-hashes -r FILE")


def check_imports(probe: Mapping[str, Any], python: Sequence[str],
                  environ: Mapping[str, str], live: bool = True) -> Check:
    name = "imports"
    if "error" in probe or "error" in (probe.get("cloudinit") or {}):
        return Check(name, WARN, "skipped: cloud-init's Python is not usable")
    interpreter = python[0] if python else "python3"
    missing = [(mod, (probe.get(mod) or {}).get("error", "unknown"))
               for mod in ("cc_bosky", "botocore") if "error" in (probe.get(mod) or {"error": ""})]
    if missing:
        what = "; ".join(f"{mod}: {why}" for mod, why in missing)
        return Check(name, FAIL, f"cloud-init's Python ({interpreter}) cannot import {what}",
                     install_hint(interpreter))
    # botocore, not boto3: it is all bosky imports, and all the rpm depends on.
    bosky, botocore = probe["cc_bosky"], probe["botocore"]
    if not probe.get("static") and not bosky.get("handle"):
        return Check(name, FAIL, f"cc_bosky at {bosky.get('where')} is not bosky's cloud-init "
                     "module (it has no handle)", "remove the other cc_bosky; reinstall bosky")
    detail = (f"cc_bosky ({bosky.get('where')}) and botocore {botocore.get('version')} "
              f"for {interpreter}")
    if probe.get("static"):
        return Check(name, OK, detail + " (found on disk, not imported)")
    if live and environ.get("PYTHONPATH"):
        return Check(name, WARN, detail + ", but only with this shell's PYTHONPATH, which "
                     "cloud-init's service does not have", f"install bosky into {interpreter}")
    return Check(name, OK, detail)


def check_registered(root: Path) -> Check:
    name = "registered"
    try:
        lists = effective_lists(read_system(root))
    except UsageError as exc:
        return Check(name, FAIL, str(exc), "repair cloud-init's configuration")
    fix = f"run 'bosky install{root_flag(root)}'"
    missing = [f"{k} (from {lists.origin.get(k, 'no file')})" for k in (INIT_KEY, FINAL_KEY)
               if not has_module(lists.values.get(k, []))]
    if missing:
        return Check(name, FAIL, f"{MODULE} is not in {' and '.join(missing)}", fix)
    final = names(lists.values[FINAL_KEY])
    if BEFORE_IN_FINAL in final and final.index(BEFORE_IN_FINAL) < final.index(MODULE):
        return Check(name, WARN, f"{MODULE} runs after {BEFORE_IN_FINAL} in {FINAL_KEY}: a "
                     "shutdown may come before the verdict is sent", fix)
    return Check(name, OK, f"{MODULE} runs in the init and final stages ({INIT_KEY} from "
                 f"{lists.origin[INIT_KEY]}, {FINAL_KEY} from {lists.origin[FINAL_KEY]})")


def check_dropin(root: Path) -> Check:
    """bosky's drop-in pins the lists it copied; they drift when cloud.cfg changes."""
    name = "drop-in"
    fix = f"run 'bosky install{root_flag(root)}' to re-state the lists"
    try:
        system = read_system(root)
    except UsageError:
        return Check(name, WARN, "skipped: cloud-init's configuration is unreadable "
                     "(see the registered check)")
    try:
        state = dropin_state(system)
    except UsageError as exc:
        return Check(name, FAIL, str(exc), "repair cloud-init's configuration")
    if not state.exists:
        if state.wanted:
            return Check(name, WARN, f"{state.shown} is not installed")
        return Check(name, OK, "none needed: cloud-init's own files list bosky")
    if not state.ours:
        return Check(name, WARN, f"{state.shown} was not written by bosky install; "
                     "cannot tell whether it is current")
    if state.stale:
        return Check(name, FAIL, f"{state.shown} is stale: " + "; ".join(state.drift()), fix)
    return Check(name, OK, f"{state.shown} matches cloud-init's current lists")


def check_units(root: Path) -> Check:
    from ..host.units import unit_model, units_state

    ready, detail = units_state(root)
    model = unit_model(root)
    if not ready and model.spares_children:
        return Check("reporter unit", OK, f"not needed: {model.describe()}")
    if model.known:
        detail = f"{detail} ({model.describe()})"
    return Check("reporter unit", OK if ready else WARN, detail,
                 f"bosky install{root_flag(root)}")
