"""The release a user downloads: ``./dev release`` builds it in one go.

Built once per module (devtools/release.py, about a minute), with a pyenv-like
``python3`` shim first on ``PATH`` that has no build modules, as on the
machine where Debian's tooling used to pick one up. Then each artifact is
read the way its installer reads it: ``sha256sum -c`` on SHA256SUMS,
``dpkg-deb`` on the .deb, ``rpm -qp`` on the .rpm. lintian and rpmlint ran
inside the build; a finding there fails it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from cc_bosky.version import __version__
from devtools import release
from tests.harness.releases import base_python
from tests.support import needs
from tests.support.fixtures import REPO_ROOT

TOOLS = ("dpkg-buildpackage", "lintian", "rpmbuild", "rpmlint")
RPM_SITE = f"/usr/lib/python{release.RPM_PYTHON}/site-packages"

SHIM = """#!/bin/sh
echo "a pyenv shim: this python has no build modules" >&2
exit 97
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    for name in TOOLS:
        needs.tool(name, "./dev release installs Debian's packaging tools, rpm and rpmlint")
    shims = tmp_path_factory.mktemp("shims")
    for name in ("python3", "python3.11", "python3.13", "python"):
        (shims / name).write_text(SHIM)
        (shims / name).chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
        return release.build(tmp_path_factory.mktemp("dist"))


def run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_one_command_builds_every_artifact_and_sums_them(built: Dict[str, Path]) -> None:
    assert {p.name for k, p in built.items() if k != "sums"} == {
        f"bosky-{__version__}-py3-none-any.whl", f"bosky-{__version__}.tar.gz",
        f"bosky_{__version__}_all.deb", f"bosky-{__version__}-1.noarch.rpm"}
    out = built["sums"].parent
    checked = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=out,
                             capture_output=True, text=True, check=True).stdout
    assert sorted(checked.split()) == sorted(
        [f"{p.name}:" for k, p in built.items() if k != "sums"] + ["OK"] * 4)


def test_a_tampered_artifact_fails_its_sum(built: Dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / built["wheel"].name
    copy.write_bytes(built["wheel"].read_bytes() + b"\0")
    (tmp_path / "SHA256SUMS").write_text(built["sums"].read_text())
    done = subprocess.run(["sha256sum", "--ignore-missing", "-c", "SHA256SUMS"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "FAILED" in done.stdout


def test_the_sdist_carries_what_the_packages_are_built_from(built: Dict[str, Path]) -> None:
    names = run("tar", "tzf", str(built["sdist"])).split()
    top = f"bosky-{__version__}/"
    for needed in ("man/bosky.1", "packaging/bosky.spec", "debian/control", "debian/rules",
                   "LICENSE", "cc_bosky/schemas/config.schema.json"):
        assert top + needed in names, needed
    assert not [n for n in names if "/debian/bosky/" in n or "/.debhelper/" in n]


def test_the_deb_names_its_maintainer_dependencies_and_manual(built: Dict[str, Path]) -> None:
    deb = str(built["deb"])
    fields = {f: run("dpkg-deb", "-f", deb, f).strip() for f in ("Maintainer", "Depends")}
    assert "localhost" not in fields["Maintainer"]
    depends = {d.strip().split()[0] for d in fields["Depends"].split(",")}
    # Names Ubuntu 22.04 and 24.04 have too (their cloud-init's debian/control
    # depends on cloud-init's python3 modules the same way; README "Install").
    assert {"cloud-init", "python3-botocore", "python3-yaml", "python3:any"} <= depends
    files = run("dpkg-deb", "-c", deb)
    for path in ("./usr/bin/bosky", "./usr/share/man/man1/bosky.1.gz",
                 "./usr/share/doc/bosky/copyright",
                 "./usr/lib/python3/dist-packages/cc_bosky/__init__.py"):
        assert re.search(rf" {re.escape(path)}$", files, re.M), path
    copyright_text = subprocess.run(
        f"dpkg-deb --fsys-tarfile {deb} | tar -xOf - ./usr/share/doc/bosky/copyright",
        shell=True, capture_output=True, text=True, check=True).stdout
    assert "Copyright: 2026 The bosky authors" in copyright_text
    assert "Permission is hereby granted" in copyright_text


def rpm_query(rpm: Path, *flags: str) -> List[str]:
    return run("rpm", "-qp", *flags, str(rpm)).splitlines()


def test_the_rpm_is_noarch_for_the_python_that_runs_cloud_init(built: Dict[str, Path]) -> None:
    info = dict(line.split(":", 1) for line in rpm_query(built["rpm"], "-i")
                if re.match(r"^\w[\w ]*\s*:", line))
    info = {k.strip(): v.strip() for k, v in info.items()}
    assert (info["Name"], info["Version"], info["Architecture"], info["License"]) == (
        "bosky", __version__, "noarch", "MIT")
    requires = {r.strip() for r in rpm_query(built["rpm"], "-R")}
    assert {"cloud-init", "python3-botocore", "python3-pyyaml",
            f"python(abi) = {release.RPM_PYTHON}"} <= requires
    # bosky imports botocore only: nothing may pull in boto3.
    assert not [r for r in requires if "boto3" in r]


def test_the_rpm_installs_the_module_the_command_and_its_manual(built: Dict[str, Path]) -> None:
    files = set(rpm_query(built["rpm"], "-l"))
    for path in ("/usr/bin/bosky", "/usr/share/man/man1/bosky.1.gz",
                 f"{RPM_SITE}/cc_bosky/__init__.py", f"{RPM_SITE}/cc_bosky/boot/reporter.py",
                 f"{RPM_SITE}/cc_bosky/schemas/config.schema.json",
                 f"{RPM_SITE}/bosky-{__version__}.dist-info/METADATA"):
        assert path in files, path
    assert not [f for f in files if "/usr/local/" in f or "dist-packages" in f]
    shipped = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "cc_bosky").rglob("*.py")}
    in_rpm = {f[len(RPM_SITE) + 1:] for f in files if f.endswith(".py")}
    assert shipped == in_rpm


def test_the_rpm_installed_into_a_root_runs_its_command(built: Dict[str, Path],
                                                        tmp_path: Path) -> None:
    root = install_rpm(built["rpm"], tmp_path / "root")
    script = (root / "usr/bin/bosky").read_text()
    assert script.startswith("#!/usr/bin/python3 -s\n")
    python = base_python(release.RPM_PYTHON)
    done = subprocess.run([str(python), str(root / "usr/bin/bosky"), "--version"],
                          env={"PATH": "/usr/bin:/bin",
                               "PYTHONPATH": str(root / RPM_SITE.lstrip("/"))},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and __version__ in done.stdout, done.stderr


def install_rpm(rpm: Path, root: Path) -> Path:
    """``rpm --root``: the package's files as dnf would lay them out (its
    dependencies are the distribution's, not in this root's empty database)."""
    root.mkdir(parents=True, exist_ok=True)
    run("rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "--initdb")
    run("rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", str(rpm))
    return root


def test_versions_disagreeing_stop_the_release(tmp_path: Path) -> None:
    tree = release.copy_tree(REPO_ROOT, tmp_path / "bosky")
    spec = tree / release.SPEC
    spec.write_text(re.sub(r"^Version:.*$", "Version:        9.9.9", spec.read_text(), flags=re.M))
    with pytest.raises(release.ReleaseError, match=r"packaging/bosky.spec says 9.9.9"):
        release.check_versions(tree, release.version(tree))
