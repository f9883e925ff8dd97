"""Fetch, unpack and provision the real cloud-init releases the tests boot.

bosky must work with the cloud-init that distributions actually ship, so the
harness does not pip-install an upstream cloud-init:

* Debian's releases: Debian's own ``cloud-init`` package for each suite,
  fetched with ``apt-get download`` (signature checked against the machine's
  archive keyring) and unpacked with ``dpkg -x``.
* The other builds EC2 users run (Ubuntu 22.04/24.04, the upstream bases of
  Amazon Linux 2023 and RHEL 9): built from the source archives in
  ``../shared/cloud-init-src/`` beside the repository (checked against its
  ``SHA256SUMS``) the way each distribution builds them: Ubuntu's quilt
  series applied in order, then ``setup.py install`` with the distribution's
  template variant, init system and library layout (see :func:`build_from_source`).

Each gets a virtualenv with the Python version its distribution runs it on.

Everything lives under a cache directory (``$BOSKY_TEST_CACHE``, default
``<repo>/.cache/harness``) and is built once. A per-release file lock makes
concurrent pytest processes (xdist workers, parallel CI jobs) wait for one
another instead of racing, and a stamp file written last (atomically) marks a
finished build, so a second run only reads the stamp.

No registry host name is written anywhere: the Debian mirror URI is read at
run time from the machine's own apt configuration.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The keyring apt checks the suites' Release files with. Debian 12's
#: debian-archive-keyring (2023.3+deb12u1 and later) already carries the
#: trixie (13) archive keys, so every suite is verified; we never fall back
#: to ``[trusted=yes]`` because this code later runs as root.
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

#: Python packages cloud-init imports at run time (Debian's Depends:
#: python3-configobj, -jinja2, -jsonpatch, -jsonschema, -oauthlib, -requests,
#: -yaml), plus bosky's own runtime requirements (boto3, PyYAML).
COMMON_REQUIREMENTS: tuple[str, ...] = (
    "jinja2",
    "PyYAML",
    "jsonschema",
    "requests",
    "configobj",
    "jsonpatch",
    "oauthlib",
    "boto3",
)

APT_TIMEOUT = 600.0
PIP_TIMEOUT = 1200.0
LOCK_TIMEOUT = 3600.0


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


@dataclass(frozen=True)
class SourceBuild:
    """How a distribution builds cloud-init from a source archive.

    ``variant`` is the template variant its build host renders ``cloud.cfg``
    with (``setup.py --distro``); ``site`` the library directory its Python
    reads (Debian layout or the interpreter's own site-packages);
    ``downstream_version`` what Ubuntu's rules write into ``version.py``.
    """

    archive: str
    variant: str
    site: str
    distribution: str
    downstream_version: str = ""
    quilt: bool = False


@dataclass(frozen=True)
class ReleaseSpec:
    """What one supported release is built from.

    ``requirements`` are pip requirement strings; one naming a package of
    :data:`COMMON_REQUIREMENTS` (``jsonschema==4.26.0``) replaces that entry.
    ``release_id`` names it in ``BOSKY_RELEASES`` and test ids (the version,
    unless two builds share one); ``source`` is set for the builds made from
    source archives instead of Debian's packages.
    """

    def pip_requirements(self) -> list[str]:
        """What to pip-install: the common names, pinned where the spec pins them."""
        pinned = {_requirement_name(r): r for r in self.requirements}
        common = [pinned.pop(name.lower(), name) for name in COMMON_REQUIREMENTS]
        return common + list(pinned.values())

    version: str
    suite: str
    python: str
    requirements: tuple[str, ...] = ()
    source: Optional[SourceBuild] = None
    release_id: str = ""

    @property
    def id(self) -> str:
        return self.release_id or self.version


#: Versions known to work with every release (each booted with them: no
#: release needed an older library, not even 20.4.1 with jsonschema 4.x);
#: pinned so a new upstream release cannot break old cloud-init silently.
#: 20.4.1's Python 3.9 caps boto3 at 1.42.x. Changing a pin rebuilds the venv.
_PINS_PY39 = (
    "Jinja2==3.1.6",
    "PyYAML==6.0.3",
    "jsonschema==4.25.1",
    "requests==2.32.5",
    "configobj==5.0.9",
    "jsonpatch==1.33",
    "oauthlib==4.0.1",
    "boto3==1.42.97",
)
_PINS_MODERN = (
    "Jinja2==3.1.6",
    "PyYAML==6.0.4",
    "jsonschema==4.26.0",
    "requests==2.34.2",
    "configobj==5.0.9",
    "jsonpatch==1.48",
    "oauthlib==4.0.1",
    "boto3==1.44.8",
)

#: The releases Debian ships, with the Python its suite ships (20.4.1 breaks
#: on 3.10+: ``collections.Iterable`` and friends were removed).
RELEASE_SPECS: dict[str, ReleaseSpec] = {
    spec.version: spec
    for spec in (
        ReleaseSpec("20.4.1", "bullseye", "3.9", _PINS_PY39),
        ReleaseSpec("22.4.2", "bookworm", "3.11", _PINS_MODERN),
        ReleaseSpec("25.1.4", "trixie", "3.13", _PINS_MODERN),
        # forky (testing) and sid both carry 26.2; forky moves the slower.
        # sid/forky ship Python 3.14, which pyenv here lacks: booted on 3.13.
        ReleaseSpec("26.2", "forky", "3.13", _PINS_MODERN),
    )
}

RELEASE_IDS: tuple[str, ...] = tuple(RELEASE_SPECS)

#: setup.py's own need when building from source (cloud-init's 22.x-26.x
#: setup.py still uses ``setup.py install``, which setuptools 75 keeps).
_BUILD_PINS = ("setuptools==75.8.0",)

_DEBIAN_SITE = "usr/lib/python3/dist-packages"
_RHEL_SITE = "usr/lib/python3.9/site-packages"

#: The builds the other EC2 distributions run, from ``../shared/cloud-init-src``.
#: Amazon's and Red Hat's own patches are not public in source-archive form:
#: 22.2.2, 23.4 and 24.4 are their upstream bases, built as their spec files
#: build them (``setup.py install --init-system=systemd``, rpm layout).
BUILD_SPECS: dict[str, ReleaseSpec] = {
    spec.id: spec
    for spec in (
        ReleaseSpec("26.1", "noble", "3.12", _PINS_MODERN + _BUILD_PINS, SourceBuild(
            "cloud-init-ubuntu_26.1-0ubuntu1_24.04.1.tar.gz", "ubuntu", _DEBIAN_SITE,
            "Ubuntu 24.04", "26.1-0ubuntu1~24.04.1", quilt=True), "ubuntu-24.04"),
        # The local index has no jsonpatch 1.48 for 3.10: the 3.9 pins serve it.
        ReleaseSpec("26.1", "jammy", "3.10", _PINS_PY39 + _BUILD_PINS, SourceBuild(
            "cloud-init-ubuntu_26.1-0ubuntu1_22.04.1.tar.gz", "ubuntu", _DEBIAN_SITE,
            "Ubuntu 22.04", "26.1-0ubuntu1~22.04.1", quilt=True), "ubuntu-22.04"),
        ReleaseSpec("22.2.2", "al2023", "3.9", _PINS_PY39 + _BUILD_PINS, SourceBuild(
            "cloud-init-22.2.2.tar.gz", "amazon", _RHEL_SITE, "Amazon Linux 2023")),
        ReleaseSpec("23.4", "rhel9.4", "3.9", _PINS_PY39 + _BUILD_PINS, SourceBuild(
            "cloud-init-23.4.tar.gz", "rhel", _RHEL_SITE, "RHEL 9.4/9.5")),
        ReleaseSpec("24.4", "rhel9.6", "3.9", _PINS_PY39 + _BUILD_PINS, SourceBuild(
            "cloud-init-24.4.tar.gz", "rhel", _RHEL_SITE, "RHEL 9.6")),
    )
}

BUILD_IDS: tuple[str, ...] = tuple(BUILD_SPECS)

#: The builds that run every boot scenario (the rest run the one-boot
#: scenarios marked ``every_build``): Ubuntu 24.04 is the newest code in the
#: classic four units, on the newest Python. One build, not two: the whole
#: boot suite costs CI minutes per build.
FULL_BUILD_IDS: tuple[str, ...] = ("ubuntu-24.04",)

ALL_SPECS: dict[str, ReleaseSpec] = {**RELEASE_SPECS, **BUILD_SPECS}
ALL_IDS: tuple[str, ...] = tuple(ALL_SPECS)


def release_key(release_id: str) -> tuple[int, ...]:
    """Sort key of a release id by its cloud-init version (newest last)."""
    return _numbers(ALL_SPECS[release_id].version)


@dataclass(frozen=True)
class Release:
    """A provisioned cloud-init release, ready to boot.

    ``site_dir`` holds the ``cloudinit`` package; put it (and the repo root,
    for ``cc_bosky``) on ``PYTHONPATH`` of ``python``.
    """

    version: str
    #: The package version (Debian's, or Ubuntu's downstream one); for the
    #: upstream bases, the upstream version.
    debian_version: str
    suite: str
    python: Path
    root: Path
    site_dir: Path
    etc_cloud_template: Path
    #: Where the stages import ``cc_bosky`` from: the checkout, or None when
    #: bosky is installed into ``python`` (see :func:`with_installed_wheel`).
    bosky_dir: Optional[Path] = REPO_ROOT
    #: ``BOSKY_RELEASES`` name and test id; ``distribution`` says whose build it is.
    id: str = ""
    distribution: str = "Debian"
    #: cloud-init's distro class, as the distribution's own cloud.cfg names it.
    distro: str = "debian"
    #: Whether the instance has a DHCP client (a stub that gets no lease):
    #: these distributions' packages depend on one, and 23.4 logs a WARNING
    #: (a recoverable error: a degraded boot) for each client it cannot find.
    dhcp_client: bool = False

    @property
    def units(self) -> dict[str, str]:
        """The systemd unit files the release installs: name -> text."""
        found: dict[str, str] = {}
        for directory in ("lib/systemd/system", "usr/lib/systemd/system"):
            for unit in sorted((self.root / directory).glob("cloud-*.service")):
                found[unit.name] = unit.read_text()
        return found

    @property
    def python_minor(self) -> str:
        """``3.12``: the Python version the distribution runs this release on."""
        return ALL_SPECS[self.id or self.version].python

    @property
    def label(self) -> str:
        """``cloud-init 26.1 (Ubuntu 24.04)`` for messages."""
        return f"cloud-init {self.version} ({self.distribution} {self.suite})"

    def at_least(self, version: str) -> bool:
        """Whether this release is *version* (``"23.4"``) or newer."""
        return _numbers(self.version) >= _numbers(version)

    def pythonpath(self, *extra: Path) -> str:
        """PYTHONPATH for the stages: the checkout (``cc_bosky``), then cloud-init."""
        paths = (self.bosky_dir, self.site_dir, *extra)
        return os.pathsep.join(str(p) for p in paths if p is not None)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


class HarnessSetupError(RuntimeError):
    """The harness could not provision a release (network, apt, pip ...)."""


def cache_dir() -> Path:
    """Root of all cached downloads and venvs (gitignored under ``.cache``)."""
    return Path(os.environ.get("BOSKY_TEST_CACHE", REPO_ROOT / ".cache" / "harness")).resolve()


def _progress(message: str) -> None:
    """First-time setup is slow; say what is happening on stderr (pytest shows it with -s)."""
    print(f"[bosky-harness] {message}", file=sys.stderr, flush=True)


def _run(cmd: Sequence[str], *, timeout: float, cwd: Optional[Path] = None) -> str:
    """Run a setup command, returning stdout; raise with its output when it fails."""
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessSetupError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise HarnessSetupError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


@contextmanager
def file_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive ``flock`` on *path*, waiting at most *timeout* seconds.

    Polls with LOCK_NB so a stuck holder becomes a clear error, not a hang.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                raise HarnessSetupError(f"could not lock {path} within {timeout:.0f}s")
            if not announced:
                _progress(f"waiting for another process holding {path}")
                announced = True
            time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- apt


def _deb822_uris(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) pairs of the enabled ``Types: deb`` stanzas of a .sources file."""
    found: list[tuple[str, list[str]]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        found.extend((uri, suites) for uri in fields.get("uris", "").split())
    return found


def _one_line_uris(text: str) -> list[tuple[str, list[str]]]:
    """(URI, [suite]) pairs of the ``deb`` lines of a classic sources.list."""
    found: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # drop [options]
        parts = line.split()
        if len(parts) >= 3:
            found.append((parts[1], [parts[2]]))
    return found


def debian_mirror_uri(etc_apt: Path = Path("/etc/apt")) -> str:
    """The machine's Debian archive URI (not the security archive).

    Read from apt's configuration at run time so no registry host is ever
    written into the repository. ``$BOSKY_DEBIAN_MIRROR`` overrides it.
    """
    override = os.environ.get("BOSKY_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    candidates: list[tuple[str, list[str]]] = []
    parts_dir = etc_apt / "sources.list.d"
    for path in sorted(parts_dir.glob("*.sources")) if parts_dir.is_dir() else []:
        candidates += _deb822_uris(path.read_text(errors="replace"))
    classic = [etc_apt / "sources.list"]
    classic += sorted(parts_dir.glob("*.list")) if parts_dir.is_dir() else []
    for path in classic:
        if path.is_file():
            candidates += _one_line_uris(path.read_text(errors="replace"))
    for uri, suites in candidates:
        if uri.rstrip("/").endswith("-security") or not uri.startswith(("http", "file", "ftp")):
            continue
        if any(s and "security" not in s for s in suites):
            return uri.rstrip("/")
    raise HarnessSetupError(f"no Debian archive URI found in {etc_apt}'s sources")


class _Apt:
    """apt-get/apt-cache confined to a private sources list, lists and cache.

    Nothing of the machine's own apt state is read or changed except its
    configuration fragments (apt.conf.d) and keyring.
    """

    def __init__(self, workdir: Path, suite: str, uri: str) -> None:
        self.workdir = workdir
        self.sources = workdir / "sources.list"
        self.lists = workdir / "lists"
        self.cache = workdir / "cache"
        for sub in (self.lists / "partial", self.cache / "archives" / "partial"):
            sub.mkdir(parents=True, exist_ok=True)
        self.sources.write_text(f"deb [signed-by={DEBIAN_KEYRING}] {uri} {suite} main\n")

    def options(self) -> list[str]:
        """The -o flags that point apt at the private state."""
        opts = {
            "Dir::Etc::SourceList": str(self.sources),
            "Dir::Etc::SourceParts": "/dev/null",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": "/dev/null",
            "Dir::State::Lists": str(self.lists),
            "Dir::Cache": str(self.cache),
            "Acquire::Languages": "none",
            "APT::Sandbox::User": "root",
        }
        return [f"-o{key}={value}" for key, value in opts.items()]

    def update(self) -> None:
        _run(["apt-get", "-q", *self.options(), "update"], timeout=APT_TIMEOUT)

    def versions(self, package: str) -> list[str]:
        out = _run(["apt-cache", *self.options(), "madison", package], timeout=APT_TIMEOUT)
        return [line.split("|")[1].strip() for line in out.splitlines() if line.count("|") >= 2]

    def download(self, package: str, version: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        _run(
            ["apt-get", "-q", *self.options(), "download", f"{package}={version}"],
            timeout=APT_TIMEOUT,
            cwd=dest,
        )
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if not debs:
            raise HarnessSetupError(f"apt-get download left no {package} .deb in {dest}")
        return debs[-1]


def upstream_version(debian_version: str) -> str:
    """``1:20.4.1-2+deb11u1`` -> ``20.4.1`` (drop epoch and Debian revision)."""
    no_epoch = debian_version.split(":", 1)[-1]
    return no_epoch.rsplit("-", 1)[0] if "-" in no_epoch else no_epoch


def _fetch_deb(spec: ReleaseSpec, workdir: Path) -> tuple[Path, str]:
    """Download Debian's cloud-init package of *spec*'s suite; return (.deb, version)."""
    uri = debian_mirror_uri()
    apt = _Apt(workdir / "apt", spec.suite, uri)
    _progress(f"cloud-init {spec.version}: apt-get update ({spec.suite})")
    apt.update()
    offered = apt.versions("cloud-init")
    matching = [v for v in offered if upstream_version(v) == spec.version]
    if not matching:
        raise HarnessSetupError(
            f"{spec.suite} offers cloud-init {offered}, none is upstream {spec.version}"
        )
    wanted = matching[0]  # madison lists the newest first
    _progress(f"cloud-init {spec.version}: apt-get download cloud-init={wanted}")
    debs = workdir / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    deb = apt.download("cloud-init", wanted, debs)
    got = _run(["dpkg-deb", "-f", str(deb), "Version"], timeout=60).strip()
    if got != wanted:
        raise HarnessSetupError(f"{deb} has version {got}, wanted {wanted}")
    return deb, wanted


def _unpack(deb: Path, root: Path) -> None:
    """``dpkg -x`` into *root*, via a temporary sibling so a crash leaves no half tree."""
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    try:
        _run(["dpkg", "-x", str(deb), str(tmp)], timeout=120)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- python


def _pyenv_executable() -> str:
    """pyenv, from PATH or its usual home (CI's PATH may lack the shims)."""
    found = shutil.which("pyenv")
    if found:
        return found
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidate = root / "bin" / "pyenv"
    if candidate.is_file():
        return str(candidate)
    raise HarnessSetupError("pyenv not found (needed for Python 3.9/3.11/3.13)")


def base_python(minor: str) -> Path:
    """The interpreter for Python *minor* (``"3.9"``), found via ``pyenv prefix``."""
    prefix = _run([_pyenv_executable(), "prefix", minor], timeout=60).strip().split(os.pathsep)[0]
    for name in (f"python{minor}", "python3"):
        candidate = Path(prefix) / "bin" / name
        if candidate.is_file():
            return candidate
    raise HarnessSetupError(f"pyenv prefix {minor} -> {prefix} has no python{minor}")


def _make_venv(spec: ReleaseSpec, venv: Path) -> Path:
    """Create *venv* with the suite's Python and install the runtime requirements."""
    shutil.rmtree(venv, ignore_errors=True)
    interpreter = base_python(spec.python)
    _progress(f"cloud-init {spec.id}: venv with {interpreter}")
    _run([str(interpreter), "-m", "venv", str(venv)], timeout=300)
    python = venv / "bin" / "python"
    requirements = spec.pip_requirements()
    _progress(f"cloud-init {spec.id}: pip install {' '.join(requirements)}")
    _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        timeout=PIP_TIMEOUT,
    )
    return python


# --------------------------------------------------------------------------- source


class SourcesMissing(HarnessSetupError):
    """The source archives beside the repository are not there (a skip, or in
    strict mode a failure, not a broken build)."""


def sources_dir() -> Path:
    """``../shared/cloud-init-src`` beside the repository root (in CI the clone
    has ``shared/`` beside it); ``$BOSKY_CLOUD_INIT_SRC`` overrides it."""
    override = os.environ.get("BOSKY_CLOUD_INIT_SRC")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "cloud-init-src"


def verified_archive(name: str) -> Path:
    """*name* from :func:`sources_dir`, after checking it against its SHA256SUMS."""
    import hashlib

    directory = sources_dir()
    sums = directory / "SHA256SUMS"
    archive = directory / name
    if not sums.is_file() or not archive.is_file():
        raise SourcesMissing(f"cloud-init source archive {archive} (and its SHA256SUMS) not found")
    wanted = {
        parts[1].lstrip("*"): parts[0]
        for parts in (line.split() for line in sums.read_text().splitlines())
        if len(parts) == 2
    }
    if name not in wanted:
        raise HarnessSetupError(f"{sums} lists no sum for {name}")
    digest = hashlib.sha256()
    with open(archive, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != wanted[name]:
        raise HarnessSetupError(f"{archive}: SHA-256 {digest.hexdigest()} is not {wanted[name]}")
    return archive


def _quilt_series(tree: Path) -> list[Path]:
    """The patches of ``debian/patches/series``, in order (``#`` comments dropped)."""
    series = tree / "debian" / "patches" / "series"
    names = [line.split("#", 1)[0].split() for line in series.read_text().splitlines()]
    return [tree / "debian" / "patches" / parts[0] for parts in names if parts]


def _check_changelog(tree: Path, spec: ReleaseSpec, source: SourceBuild) -> None:
    """The archive is the package it claims to be: its changelog's first entry
    names this version and series (an ``*_22.04*`` tag is not always jammy's)."""
    first = (tree / "debian" / "changelog").read_text().splitlines()[0]
    match = re.match(r"\S+ \((?P<version>[^)]+)\) (?P<series>[\w-]+);", first)
    found = (match["version"], match["series"]) if match else None
    if found != (source.downstream_version, spec.suite):
        raise HarnessSetupError(f"{source.archive}: debian/changelog starts {first!r}, "
                                f"not {source.downstream_version} for {spec.suite}")


def build_from_source(spec: ReleaseSpec, source: SourceBuild, python: Path, root: Path) -> None:
    """Build *source* into *root* as its distribution's packaging does.

    Ubuntu (debian/rules, pybuild): the quilt series in order, ``setup.py
    install`` with ``--init-system=systemd`` into the Debian library layout,
    then ``@DOWNSTREAM_VERSION@`` in ``version.py`` replaced by the package
    version (so ``version.py`` has no upstream version, only that one). The
    RPM spec files: ``setup.py install --init-system=systemd`` into the
    interpreter's site-packages. The template variant (``--distro``) is what
    the distribution's build host would render ``cloud.cfg`` with.
    """
    archive = verified_archive(source.archive)
    _progress(f"cloud-init {spec.id}: building from {archive.name}")
    work = Path(tempfile.mkdtemp(prefix=root.name + ".build.", dir=root.parent))
    try:
        _run(["tar", "-xzf", str(archive), "-C", str(work)], timeout=300)
        trees = [p for p in work.iterdir() if (p / "setup.py").is_file() or (p / "debian").is_dir()]
        if len(trees) != 1:
            raise HarnessSetupError(f"{archive.name}: expected one source tree, found {trees}")
        tree = trees[0]
        if source.quilt:
            _check_changelog(tree, spec, source)
            for patch in _quilt_series(tree):
                _run(["patch", "-p1", "-s", "--no-backup-if-mismatch", "-i", str(patch)],
                     timeout=120, cwd=tree)
        staged = work / "root"
        env_version = source.downstream_version or spec.version
        # "install" first and "--distro X" as two words: 22.2.2's setup.py
        # renders templates only when argv[1] is "install" and knows no "=".
        cmd = [
            "env", f"PACKAGED_VERSION={env_version}", str(python), "setup.py", "install",
            "--root", str(staged), "--prefix", "/usr", "--install-lib", "/" + source.site,
            "--install-scripts", "/usr/bin", "--init-system=systemd",
            "--distro", source.variant,
        ]  # fmt: skip
        _run(cmd, timeout=PIP_TIMEOUT, cwd=tree)
        if source.downstream_version:
            version_py = staged / source.site / "cloudinit" / "version.py"
            text = version_py.read_text()
            version_py.write_text(text.replace("@DOWNSTREAM_VERSION@", source.downstream_version))
        shutil.rmtree(root, ignore_errors=True)
        staged.rename(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- public


def _stamp_payload(spec: ReleaseSpec) -> dict[str, object]:
    """What a finished build was made from; a change (e.g. a new pin) rebuilds it."""
    payload: dict[str, object] = {
        "version": spec.version,
        "suite": spec.suite,
        "python": spec.python,
        "requirements": spec.pip_requirements(),
        "layout": 1,
    }
    if spec.source is not None:
        payload["source"] = dataclasses.asdict(spec.source)
        payload["layout"] = 2
    return payload


def _release_from(spec: ReleaseSpec, home: Path, debian_version: str) -> Release:
    root = home / "root"
    return Release(
        version=spec.version,
        debian_version=debian_version,
        suite=spec.suite,
        python=home / "venv" / "bin" / "python",
        root=root,
        site_dir=root / (spec.source.site if spec.source else _DEBIAN_SITE),
        etc_cloud_template=root / "etc" / "cloud",
        id=spec.id,
        distribution=spec.source.distribution if spec.source else "Debian",
        distro=spec.source.variant if spec.source else "debian",
        dhcp_client=spec.source is not None,
    )


def _read_stamp(stamp: Path, spec: ReleaseSpec) -> Optional[str]:
    """The Debian version recorded by a finished, still-valid build, else None."""
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if data.get("spec") != _stamp_payload(spec):
        return None
    version = data.get("debian_version")
    return version if isinstance(version, str) else None


def _write_stamp(stamp: Path, spec: ReleaseSpec, debian_version: str) -> None:
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps({"spec": _stamp_payload(spec), "debian_version": debian_version}))
    tmp.replace(stamp)


def _is_usable(release: Release) -> bool:
    return release.python.exists() and (release.site_dir / "cloudinit" / "version.py").is_file()


def compile_bosky(release: Release) -> None:
    """Byte-compile the working tree's cc_bosky for this release's Python.

    A pip-installed bosky is compiled at install time; a fresh checkout is
    not, and the first boot would otherwise spend tens of milliseconds
    compiling inside cloud-init's stage and misreport bosky's cost there.
    """
    subprocess.run([str(release.python), "-m", "compileall", "-q", str(REPO_ROOT / "cc_bosky")],
                   check=False, timeout=120, capture_output=True)


def with_installed_wheel(release: Release, wheel: Path, home: Path) -> Release:
    """*release* with bosky installed as users install it: *wheel* pip-installed
    (bytecode compiled by pip) into a Python of its own under *home*, whose
    site-packages also sees the release's libraries; no checkout on the path.

    The shared release venv is left alone: other test runs use it at the same time.
    """
    venv = home / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    _run([str(base_python(ALL_SPECS[release.id or release.version].python)), "-m", "venv",
          "--without-pip", str(venv)], timeout=300)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     timeout=60).strip())
    release_site = _run([str(release.python), "-c",
                         "import sysconfig; print(sysconfig.get_path('purelib'))"], timeout=60)
    (site / "release-libraries.pth").write_text(release_site.strip() + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
          "--no-index", str(wheel)], timeout=PIP_TIMEOUT)
    if not list(site.glob("cc_bosky/boot/__pycache__/launcher.*.pyc")):
        raise HarnessSetupError(f"pip compiled no bytecode for bosky in {site}")
    return dataclasses.replace(release, python=python, bosky_dir=None)


def build_wheel(source: Path, dest: Path) -> Path:
    """bosky's wheel built from the tree *source* (a checkout) into *dest*."""
    dest.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(dest), str(source)], timeout=PIP_TIMEOUT)
    (wheel,) = dest.glob("bosky-*.whl")
    return wheel


def ensure_release(version: str) -> Release:
    """Return cloud-init *version* ready to boot, building it into the cache if needed.

    Idempotent and safe to call from several processes at once.
    """
    try:
        spec = ALL_SPECS[version]
    except KeyError:
        raise ValueError(f"unknown cloud-init release {version!r}; have {ALL_IDS}") from None
    home = cache_dir() / "releases" / version
    stamp = home / "stamp.json"
    debian_version = _read_stamp(stamp, spec)
    if debian_version is not None:
        release = _release_from(spec, home, debian_version)
        if _is_usable(release):
            return release
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir() / "locks" / f"{version}.lock"):
        debian_version = _read_stamp(stamp, spec)  # another process may have finished it
        if debian_version is not None:
            release = _release_from(spec, home, debian_version)
            if _is_usable(release):
                return release
        started = time.monotonic()
        stamp.unlink(missing_ok=True)
        if spec.source is not None:
            verified_archive(spec.source.archive)  # missing sources: say so before pip runs
            python = _make_venv(spec, home / "venv")
            debian_version = spec.source.downstream_version or spec.version
            release = _release_from(spec, home, debian_version)
            build_from_source(spec, spec.source, python, release.root)
        else:
            deb, debian_version = _fetch_deb(spec, home)
            release = _release_from(spec, home, debian_version)
            _unpack(deb, release.root)
            _make_venv(spec, home / "venv")
        if not _is_usable(release):
            raise HarnessSetupError(f"cloud-init {version}: build finished but is not usable")
        _write_stamp(stamp, spec, debian_version)
        _progress(
            f"cloud-init {version} ({debian_version}) ready in {time.monotonic() - started:.0f}s"
        )
        return release


# Manual provisioning: python -m tests.harness.releases [VERSION ...]
if __name__ == "__main__":  # pragma: no cover
    for release_id in sys.argv[1:] or ALL_IDS:
        print(ensure_release(release_id))
