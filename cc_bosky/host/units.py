"""The systemd units ``bosky install`` writes: the reporter's own unit.

Where cloud-init's init stage runs in ``cloud-init.service`` (up to 24.2) a
reporter left in that unit's cgroup dies with it when the stage fails, so the
stage hands it to systemd instead (:mod:`cc_bosky.boot.handoff`). These units
make that hand-off a file write: ``bosky-reporter.path``, enabled in
``sysinit.target`` and ordered before ``cloud-init.service``, watches for the
stage's request and starts ``bosky-reporter.service``. Without them the stage
falls back to ``systemd-run``, which costs the stage far more.

Both are plain files and one link (what ``systemctl enable`` would make), so
they can be written into an image being built (``--root``) without running
systemd there.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

from ..boot import handoff
from ..version import __version__
from .marked import MARKER, is_ours, refuse_foreign, write_file
from .root import in_root

UNIT_DIR = "/etc/systemd/system"
DEFAULT_PYTHON = "/usr/bin/python3"
SYSTEMCTL_TIMEOUT = 30.0


#: The reporter's sandbox (``systemd-analyze security`` rates the unit 2.4 on
#: systemd 252; README "The reporter's unit and the install"). It reads
#: cloud-init's records, writes only its spool, its run directory and its log,
#: and talks only to AWS endpoints. Every directive is known to bullseye's
#: systemd 247 except PrivateIPC (248), which 247 ignores with a warning.
HARDENING: Tuple[str, ...] = (
    "# The sandbox: read-only system, its own directories writable, no privilege",
    "# but renicing itself (CAP_SYS_NICE, back to 0 to send) and reading cloud-init's",
    "# logs where they are another user's (CAP_DAC_READ_SEARCH: Ubuntu's syslog:adm).",
    "UMask=0077",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=CAP_SYS_NICE CAP_DAC_READ_SEARCH",
    "ProtectSystem=strict",
    "StateDirectory=bosky",
    "StateDirectoryMode=0700",
    # /var/log, not /var/log/bosky.log: a bind mount of one file fails when
    # the file is not there yet, and would follow a symlink planted in its place.
    "ReadWritePaths=/run/bosky /var/log",
    # Read-only, not hidden: root's ~/.aws may hold the profile the job names.
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "PrivateMounts=yes",
    "PrivateIPC=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    # No ProtectProc=invisible: it hides cloud-init's processes (they hold
    # capabilities the reporter lacks), and the liveness check looks for them.
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged",
    "SystemCallErrorNumber=EPERM",
    "KeyringMode=private",
    "DevicePolicy=closed",
)


def has_systemd(root: Path) -> bool:
    """Whether the system under ``root`` is managed by systemd."""
    return in_root(root, UNIT_DIR).is_dir()


def reporter_python(root: Path, environ: Mapping[str, str]) -> str:
    """The Python that runs cloud-init (its script's ``#!``), as a path on that
    system: the reporter must import what the module imported."""
    from .python import find_cloud_init

    found = find_cloud_init(root, environ)
    if found is None or not found.python:
        return DEFAULT_PYTHON
    program = Path(found.python[0])
    try:
        return "/" + str(program.relative_to(root))
    except ValueError:
        return str(program)


def render_service(python: str) -> str:
    return "\n".join([
        f"{MARKER} systemd unit. Written by 'bosky install' (bosky {__version__}); "
        "remove it with 'bosky uninstall'.",
        "# Started by bosky-reporter.path when cloud-init's init stage asks for its boot",
        "# reporter; a unit of its own, so a failing cloud-init.service cannot kill it.",
        "[Unit]",
        "Description=bosky boot reporter",
        "DefaultDependencies=no",
        "Conflicts=shutdown.target",
        "Before=shutdown.target",
        "",
        "[Service]",
        "Type=simple",
        "Environment=BOSKY_REPORTER_UNIT=1",
        "# It waits sharing the boot's CPU with cloud-init: at the lowest priority",
        "# it does not delay the boot it watches (it returns to 0 to send).",
        f"Nice={handoff.REPORTER_NICE}",
        f"ExecStart={python} -m cc_bosky.boot.reporter --request {handoff.REQUEST_FILE}",
        *HARDENING,
        "",
    ])


def render_path() -> str:
    return "\n".join([
        f"{MARKER} systemd unit. Written by 'bosky install' (bosky {__version__}); "
        "remove it with 'bosky uninstall'.",
        "# Watches for the request cloud-init's init stage writes, from the first moment",
        "# it could: no default dependencies, before cloud-init.service.",
        "[Unit]",
        "Description=bosky: start the boot reporter when cloud-init asks for it",
        "DefaultDependencies=no",
        f"Before={handoff.WANTED_BY} cloud-init.service shutdown.target",
        "Conflicts=shutdown.target",
        "",
        "[Path]",
        f"PathExists={handoff.REQUEST_FILE}",
        f"Unit={handoff.SERVICE_UNIT}",
        "",
        "[Install]",
        f"WantedBy={handoff.WANTED_BY}",
        "",
    ])


def _paths(root: Path) -> Tuple[Path, Path, Path]:
    unit_dir = in_root(root, UNIT_DIR)
    return (unit_dir / handoff.SERVICE_UNIT, unit_dir / handoff.PATH_UNIT,
            in_root(root, handoff.ENABLED_LINK))


def install_units(root: Path, environ: Mapping[str, str]) -> Tuple[str, bool]:
    """Write and enable the units; (what happened, whether anything changed)."""
    if not has_systemd(root):  # a container or chroot without systemd: nothing to say
        return "", False
    service, path, link = _paths(root)
    for unit in (service, path):
        refuse_foreign(unit)
    python = reporter_python(root, environ)
    changed = write_file(service, render_service(python))
    changed = write_file(path, render_path()) or changed
    target = f"{UNIT_DIR}/{handoff.PATH_UNIT}"
    if not (link.is_symlink() and os.readlink(link) == target):
        link.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
        changed = True
    if not changed:
        return f"{path}: unchanged (already up to date)", False
    note = _load_now(root)
    return f"{path}, {service.name}: written and enabled (reporter Python {python}){note}", True


def uninstall_units(root: Path) -> List[str]:
    if not has_systemd(root):
        return []
    service, path, link = _paths(root)
    said = []
    if link.is_symlink() and os.readlink(link).endswith("/" + handoff.PATH_UNIT):
        link.unlink()
        said.append(f"{link}: removed")
    for unit in (path, service):
        if not unit.exists():
            said.append(f"{unit}: not present")
        elif not is_ours(unit):
            said.append(f"{unit}: kept, it was not written by bosky install")
        else:
            unit.unlink()
            said.append(f"{unit}: removed")
    return said


def _load_now(root: Path) -> str:
    """On a running systemd, load and start the path unit now: a stage run by
    hand (from a shell, not a unit) would otherwise write a request nobody sees."""
    if root != Path("/") or not os.path.isdir("/run/systemd/system"):
        return ""
    for argv in (["systemctl", "daemon-reload"], ["systemctl", "start", handoff.PATH_UNIT]):
        problem = _run(argv)
        if problem:
            return f"; {' '.join(argv)} failed ({problem}): it takes effect at the next boot"
    return "; started"


def _run(argv: List[str]) -> Optional[str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


#: Where distributions put cloud-init's unit files; /etc overrides them.
_CLOUD_INIT_UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


@dataclass(frozen=True)
class UnitModel:
    """How cloud-init's stages run under systemd on a system, from its unit files.

    Upstream 24.3+ runs every stage in ``cloud-init-main.service``
    (``KillMode=process``); earlier releases, and Ubuntu's 26.1 (its
    ``no-single-process.patch``), run the init stage in ``cloud-init.service``
    with systemd's default ``KillMode=control-group``, which kills what the
    stage leaves behind when it fails. The version alone cannot tell them apart.
    """

    init_unit: str  # the unit the init stage runs in, "" when no unit file was found
    kill_mode: str

    @property
    def known(self) -> bool:
        return bool(self.init_unit)

    @property
    def spares_children(self) -> bool:
        """Whether a reporter left in the init stage's unit survives the stage."""
        return self.kill_mode in ("process", "none")

    def describe(self) -> str:
        return f"cloud-init's init stage runs in {self.init_unit} (KillMode={self.kill_mode})"


def unit_model(root: Path) -> UnitModel:
    """Read cloud-init's unit files under *root*: which unit runs the init stage, how killed."""
    for name in ("cloud-init-main.service", "cloud-init.service"):
        for directory in _CLOUD_INIT_UNIT_DIRS:
            unit = in_root(root, directory) / name
            try:
                text = unit.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            modes = [line.split("=", 1)[1].strip() for line in text.splitlines()
                     if line.strip().startswith("KillMode=")]
            return UnitModel(name, modes[-1] if modes else "control-group")
    return UnitModel("", "")


def units_state(root: Path) -> Tuple[bool, str]:
    """(ready, what doctor says): the path unit enabled and its service's Python there."""
    if not has_systemd(root):
        return True, "no systemd here: the reporter runs in its own session"
    service, path, link = _paths(root)
    if not (path.is_file() and service.is_file()):
        return False, f"{handoff.PATH_UNIT} not installed: where the init stage runs in " \
            "cloud-init.service, it hands the reporter to systemd with systemd-run, which " \
            "costs the stage ~0.5 s"
    # An absolute link names a path on that system, not on this one (--root).
    if not (link.is_symlink() and in_root(root, os.readlink(link)).is_file()):
        return False, f"{handoff.PATH_UNIT} is not enabled ({link} missing)"
    python = _exec_python(service)
    if python is None or not in_root(root, python).exists():
        return False, f"{service} runs {python or 'no ExecStart'}, which is not there"
    return True, f"{handoff.PATH_UNIT} enabled; {handoff.SERVICE_UNIT} runs {python}"


def _exec_python(service: Path) -> Optional[str]:
    for line in service.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("ExecStart="):
            words = line[len("ExecStart="):].split()
            return words[0] if words else None
    return None


__all__ = ["UnitModel", "install_units", "render_path", "render_service", "uninstall_units",
           "unit_model", "units_state"]
