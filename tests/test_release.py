"""The release a user downloads: ``./dev release`` builds it in one go.

Built once per module (devtools/release.py, about a minute), with a pyenv-like
``python3`` shim first on ``PATH`` that has no build modules, as on the
machine where Debian's tooling used to pick one up. Then each artifact is
read the way its installer reads it: ``sha256sum -c`` on SHA256SUMS,
``dpkg-deb`` on the .deb, ``rpm -qp`` on the .rpm. lintian and rpmlint ran
inside the build; a finding there fails it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

from cc_bosky.version import __version__
from devtools import release
from tests.conftest import assert_valid_event
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


#: ``pip install bosky`` / ``pip3 install -U bosky==0.1.0``: a name an index resolves.
BARE_NAME = re.compile(r"pip3?\s+install\b[^`\n|]*?"
                       r"(?<![\w./-])bosky(?:[=<>~!]=?[\w.]*)?(?![\w./-])")


def test_no_install_route_asks_an_index_for_the_name() -> None:
    """README, the bake script, Image Builder, Packer and doctor's hints install
    a named file; whoever registered "bosky" on an index would run as root."""
    places = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "infra").iterdir()),
              *sorted((REPO_ROOT / "cc_bosky").rglob("*.py"))]
    found = [f"{p.relative_to(REPO_ROOT)}: {m.group(0)}" for p in places if p.is_file()
             for m in BARE_NAME.finditer(p.read_text(encoding="utf-8"))]
    assert found == []
    assert BARE_NAME.search("then `pip3 install bosky`")
    assert BARE_NAME.search("python3 -m pip install --upgrade bosky==0.1.0")
    assert not BARE_NAME.search("pip3 install --require-hashes -r bosky.txt")


def rpm_builds() -> List[str]:
    """The namespace builds whose Python is the rpm's (3.9): Amazon Linux
    2023's and RHEL 9's bases (22.2.2, 23.4) where the harness has them, else
    whatever release runs on 3.9; narrowed by ``BOSKY_RELEASES``."""
    from tests.harness import releases

    specs = getattr(releases, "ALL_SPECS", releases.RELEASE_SPECS)
    on_39 = [rid for rid, spec in specs.items() if spec.python == release.RPM_PYTHON]
    wanted = [rid for rid in ("22.2.2", "23.4") if rid in on_39] or on_39
    named = {n.strip() for n in os.environ.get("BOSKY_RELEASES", "").split(",") if n.strip()}
    return [rid for rid in wanted if not named or rid in named]


@pytest.mark.cloudinit
@pytest.mark.parametrize("build", rpm_builds())
def test_the_rpm_installed_with_rpm_root_reports_a_boot(
        built: Dict[str, Path], build: str, tmp_path: Path, imds: Any, eventbridge: Any,
        consumer: Any, detail_validator: Any) -> None:
    """The rpm's files as dnf lays them out, imported by cloud-init on its 3.9:
    a failing user-data script's boot is reported as failed."""
    from tests.harness.boot import Instance
    from tests.harness.fixtures import namespace_problem
    from tests.harness.releases import ensure_release
    from tests.test_boot import stanza, verdicts

    problem = namespace_problem()
    if problem:
        needs.unavailable(problem)
    site = install_rpm(built["rpm"], tmp_path / "rpm-root") / RPM_SITE.lstrip("/")
    from_rpm = dataclasses.replace(ensure_release(build), bosky_dir=site)
    imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1")
    env = {"AWS_ENDPOINT_URL_EVENTS": eventbridge.url,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
    machine = Instance(from_rpm, tmp_path / "instance", imds=imds, env=env)
    boot = machine.boot(user_data="#!/bin/sh\necho 'schema migration failed' >&2\nexit 3\n",
                        cloud_cfg_d={"90_bosky.cfg": stanza(consumer)}, wait_reporter=60)
    loaded = {ln.split("from '", 1)[1].split("'", 1)[0]
              for ln in boot.cloud_init_log.splitlines() if "Running module bosky" in ln}
    assert loaded and all(p.startswith(str(site)) for p in loaded), loaded
    (event,) = verdicts(consumer)
    detail = assert_valid_event(event, detail_validator)
    assert (detail["Status"], detail["CloudInitVersion"]) == ("fail", from_rpm.version)
    assert [line for line in detail["LogTail"] if "schema migration failed" in line]


def test_debian_rules_puts_the_distribution_python_first(tmp_path: Path) -> None:
    """dpkg-buildpackage run by hand, pyenv's shim first on PATH: debian/rules
    hands pybuild a PATH where python3.X is Debian's ("No module named build")."""
    make = needs.tool("make", "Debian's build-essential, pulled in by debhelper")
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3").write_text(SHIM)
    (shims / "python3").chmod(0o755)
    done = subprocess.run(
        [make, "-s", "-f", "debian/rules", "--eval", "which-python: ; @command -v python3",
         "which-python"], cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
             "VIRTUAL_ENV": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "/usr/bin/python3"
