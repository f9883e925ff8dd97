"""What bosky reads from each distribution's cloud-init, without booting it.

Every build the harness provisions (Debian's four releases, Ubuntu 24.04 and
22.04, the upstream bases of Amazon Linux 2023 and RHEL 9) installs its own
``/etc/cloud`` and systemd units. A user runs ``bosky install --root`` on
that ``cloud.cfg`` while building an image, and ``bosky doctor`` to see
whether the image is ready: both must read each build as it is, Ubuntu's
26.1 (a ``version.py`` without an upstream version; the init stage in
``cloud-init.service`` although the code is newer than 24.3) included.
The boots themselves are in test_boot.py and its neighbours.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict, NamedTuple

import pytest

from cc_bosky.checks import OK, WARN
from cc_bosky.checks.cloudinit import check_units, check_version
from cc_bosky.host.cloudcfg import FINAL_KEY, INIT_KEY, effective_lists, names, read_system
from cc_bosky.host.python import cloud_init_version_on_disk
from cc_bosky.host.units import unit_model
from cc_bosky.tools.doctor import run_checks
from tests.harness.fixtures import booted_releases, load_release
from tests.harness.releases import Release
from tests.support.fixtures import run_bosky


class Expected(NamedTuple):
    version: str  # what cloudinit.version.version_string() says
    init_unit: str  # where the init stage runs under systemd
    kill_mode: str


EXPECTED: Dict[str, Expected] = {
    "20.4.1": Expected("20.4.1", "cloud-init.service", "control-group"),
    "22.4.2": Expected("22.4.2", "cloud-init.service", "control-group"),
    "25.1.4": Expected("25.1.4", "cloud-init-main.service", "process"),
    "26.2": Expected("26.2", "cloud-init-main.service", "process"),
    # no-single-process.patch: the newest code, in the four classic units
    "ubuntu-24.04": Expected("26.1-0ubuntu1~24.04.1", "cloud-init.service", "control-group"),
    "ubuntu-22.04": Expected("26.1-0ubuntu1~22.04.1", "cloud-init.service", "control-group"),
    "22.2.2": Expected("22.2.2", "cloud-init.service", "control-group"),
    "23.4": Expected("23.4", "cloud-init.service", "control-group"),
    "24.4": Expected("24.4", "cloud-init-main.service", "process"),
}


@pytest.fixture(scope="module", params=booted_releases())
def build(request: pytest.FixtureRequest) -> Release:
    """A provisioned build: its files and its Python (no boot, so no namespaces)."""
    return load_release(request.param)


def image_of(build: Release, root: Path) -> Path:
    """An image root as the distribution's package leaves it: its /etc/cloud,
    its cloud-init units, an empty /etc/systemd/system, and a ``cloud-init``
    script whose ``#!`` names the build's own Python."""
    release = build
    shutil.copytree(release.etc_cloud_template, root / "etc" / "cloud")
    (root / "etc" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    for directory in ("lib/systemd/system", "usr/lib/systemd/system"):
        for unit in (release.root / directory).glob("cloud-*.service"):
            (root / directory).mkdir(parents=True, exist_ok=True)
            shutil.copy(unit, root / directory / unit.name)
    shutil.copytree(release.site_dir / "cloudinit",
                    root / release.site_dir.relative_to(release.root) / "cloudinit")
    bindir = root / "usr" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "cloud-init").write_text(
        "#!/usr/bin/python3\nfrom cloudinit.cmd.main import main\nmain()\n")
    # The image's interpreter, named as its distribution names it (never run: --root)
    (bindir / f"python{build.python_minor}").write_text("")
    (bindir / "python3").symlink_to(f"python{build.python_minor}")
    return root


def test_doctor_reads_the_version_each_build_reports(build: Release) -> None:
    """From the files (an image, --root) and from the build's own Python: the same string."""
    expected = EXPECTED[build.id].version
    on_disk = cloud_init_version_on_disk(build.site_dir / "cloudinit")
    live = subprocess.run(
        [str(build.python), "-c", "from cloudinit import version; print(version.version_string())"],
        env={"PYTHONPATH": str(build.site_dir), "PATH": "/usr/bin:/bin"}, cwd="/",
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert (on_disk, live) == (expected, expected)
    assert check_version(on_disk).status == OK


def test_doctor_knows_where_each_build_runs_its_init_stage(build: Release, tmp_path: Path) -> None:
    """Four classic units (KillMode=control-group): the reporter needs its unit until
    ``bosky install`` writes it. One cloud-init-main.service: no unit needed."""
    root = image_of(build, tmp_path / "image")
    model = unit_model(root)
    wanted = EXPECTED[build.id]
    assert (model.init_unit, model.kill_mode) == (wanted.init_unit, wanted.kill_mode)
    check = check_units(root)
    if model.spares_children:
        assert check.status == OK and "not needed" in check.detail, check
    else:
        assert check.status == WARN and wanted.init_unit in check.detail, check
    proc = run_bosky(["install", "--root", str(root)])
    assert proc.returncode == 0, proc.stderr
    after = check_units(root)
    assert after.status == OK, after


def test_install_root_on_the_distributions_own_cloud_cfg(build: Release, tmp_path: Path) -> None:
    """The image builder's step, on the cloud.cfg the distribution ships: bosky joins
    the init list and the final list (before power_state_change), nothing else moves,
    and doctor reading the image agrees."""
    root = image_of(build, tmp_path / "image")
    before = effective_lists(read_system(root)).values
    proc = run_bosky(["install", "--root", str(root)])
    assert proc.returncode == 0, proc.stderr
    after = effective_lists(read_system(root)).values
    for key in (INIT_KEY, FINAL_KEY):
        assert [n for n in names(after[key]) if n != "bosky"] == names(before[key]), key
        assert names(after[key]).count("bosky") == 1, after[key]
    final = names(after[FINAL_KEY])
    if "power_state_change" in final:
        assert final.index("bosky") < final.index("power_state_change"), final
    checks = {c.name: c for c in run_checks(root, {}, image=True)}
    assert checks["cloud-init version"].status == OK, checks["cloud-init version"]
    assert EXPECTED[build.id].version in checks["cloud-init"].detail, checks["cloud-init"]
    for name in ("registered", "drop-in", "reporter unit"):
        assert checks[name].status == OK, checks[name]
