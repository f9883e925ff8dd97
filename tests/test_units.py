"""``bosky install`` under systemd: the reporter's own units.

A golden AMI is baked with ``bosky install`` (often into a mounted image,
``--root``); at every boot after that, the init stage of cloud-init up to 24.2
hands the reporter to ``bosky-reporter.path`` with a file write. These tests
check the files and link install writes, that systemd's own parser accepts
them, and what doctor says; the VM tier boots them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, List

import pytest

from cc_bosky.boot import handoff
from cc_bosky.checks import OK, WARN
from cc_bosky.host import units
from cc_bosky.tools import cli, doctor
from tests.test_install import make_root

UNITS = Path("etc/systemd/system")


def systemd_root(tmp_path: Path, python: str = "/usr/bin/python3.11") -> Path:
    """An image with cloud-init (its script's #! naming ``python``) and systemd."""
    root = make_root(tmp_path)
    (root / UNITS).mkdir(parents=True)
    script = root / "usr" / "bin" / "cloud-init"
    script.parent.mkdir(parents=True)
    script.write_text(f"#!{python}\nimport sys\n")
    (root / python.lstrip("/")).touch()
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> List[str]:
    assert cli.main(list(args), environ={}) == 0
    return capsys.readouterr().out.splitlines()


def test_install_writes_and_enables_the_reporter_units_with_cloud_init_python(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = systemd_root(tmp_path)

    out = run(capsys, "install", "--root", str(root))

    service = root / UNITS / handoff.SERVICE_UNIT
    path = root / UNITS / handoff.PATH_UNIT
    link = root / handoff.ENABLED_LINK.lstrip("/")
    assert any(f"{path}, {handoff.SERVICE_UNIT}: written and enabled" in line for line in out)
    assert ("ExecStart=/usr/bin/python3.11 -m cc_bosky.boot.reporter --request "
            f"{handoff.REQUEST_FILE}") in service.read_text()
    assert f"Nice={handoff.REPORTER_NICE}" in service.read_text()
    assert f"PathExists={handoff.REQUEST_FILE}" in path.read_text()
    # What `systemctl enable` would make: an absolute link inside the image.
    assert link.is_symlink() and str(link.readlink()) == f"/{UNITS}/{handoff.PATH_UNIT}"
    assert (service.stat().st_mode & 0o777) == 0o644

    again = run(capsys, "install", "--root", str(root))
    assert again[-1] == "nothing changed: bosky was already installed"


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    python = shutil.which("python3") or "/usr/bin/python3"
    (unit_dir / handoff.SERVICE_UNIT).write_text(units.render_service(python))
    (unit_dir / handoff.PATH_UNIT).write_text(units.render_path())
    done = subprocess.run([analyze, "verify", "--man=no", str(unit_dir / handoff.PATH_UNIT),
                           str(unit_dir / handoff.SERVICE_UNIT)],
                          capture_output=True, text=True, timeout=60)
    # Only complaints about our own files count; the host's other units are not ours.
    ours = [line for line in done.stderr.splitlines() if "bosky-reporter" in line]
    assert ours == [], done.stderr


#: README's figure for the reporter's unit ("The reporter's unit and the install").
EXPOSURE = 2.3
#: Issue #16's aim: a security review reads 5.0 or below as acceptable.
EXPOSURE_AIM = 5.0


def test_the_reporter_unit_is_sandboxed_as_readme_says(tmp_path: Path) -> None:
    """``systemd-analyze security`` on the unit file (offline: this host's
    systemd does not run it): the exposure README gives, and below the aim."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    service = tmp_path / handoff.SERVICE_UNIT
    service.write_text(units.render_service("/usr/bin/python3"))
    done = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(service)],
                          capture_output=True, text=True, timeout=60, check=False)
    if "--offline" in done.stderr:  # systemd before 250 cannot rate a file
        pytest.skip(f"this systemd-analyze has no --offline: {done.stderr.strip()}")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) == EXPOSURE <= EXPOSURE_AIM
    rated = {line.split()[1]: line for line in done.stdout.splitlines()
             if line.startswith(("\u2713", "\u2717"))}
    # What the reporter needs, and only that: its own directories writable,
    # inet and unix sockets, renicing itself and reading cloud-init's logs.
    for directive in ("NoNewPrivileges=", "MemoryDenyWriteExecute=", "ProtectKernelModules=",
                      "RestrictNamespaces=~user", "UMask=",
                      "CapabilityBoundingSet=~CAP_SYS_ADMIN", "SystemCallFilter=~@privileged",
                      "RestrictAddressFamilies=~AF_PACKET", "LockPersonality="):
        assert rated[directive].startswith("\u2713"), rated.get(directive)
    # Not rated for a unit without default dependencies (it may start before
    # /home or /tmp are mounted), but in force all the same.
    text = service.read_text()
    for directive in ("ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes"):
        assert f"\n{directive}\n" in text
    assert "ReadWritePaths=/run/bosky /var/log\n" in text and "StateDirectory=bosky\n" in text
    assert "CapabilityBoundingSet=CAP_SYS_NICE CAP_DAC_READ_SEARCH\n" in text


def test_uninstall_removes_the_units_and_the_link(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = systemd_root(tmp_path)
    run(capsys, "install", "--root", str(root))

    out = run(capsys, "uninstall", "--root", str(root))

    assert f"{root / handoff.ENABLED_LINK.lstrip('/')}: removed" in out
    assert not (root / UNITS / handoff.SERVICE_UNIT).exists()
    assert not (root / UNITS / handoff.PATH_UNIT).exists()
    assert not (root / handoff.ENABLED_LINK.lstrip("/")).is_symlink()


def test_a_unit_someone_else_wrote_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = systemd_root(tmp_path)
    (root / UNITS / handoff.SERVICE_UNIT).write_text("[Service]\nExecStart=/bin/true\n")

    code = cli.main(["install", "--root", str(root)], environ={})

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "was not written by bosky install" in err
    assert (root / UNITS / handoff.SERVICE_UNIT).read_text().startswith("[Service]")


def test_without_systemd_install_writes_no_units(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root(tmp_path)
    out = run(capsys, "install", "--root", str(root))
    assert not (root / "etc" / "systemd").exists()
    assert not any("bosky-reporter" in line for line in out)


def check(root: Path) -> Any:
    return next(c for c in doctor.run_checks(root, {}) if c.name == "reporter unit")


def test_doctor_says_when_the_reporter_unit_is_missing_or_broken(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = systemd_root(tmp_path)
    missing = check(root)
    assert missing.status == WARN and "systemd-run" in missing.detail
    assert missing.fix == f"bosky install --root {root}"

    run(capsys, "install", "--root", str(root))
    assert check(root).status == OK

    (root / "usr/bin/python3.11").unlink()  # the image's Python was replaced
    broken = check(root)
    assert broken.status == WARN and "/usr/bin/python3.11" in broken.detail
