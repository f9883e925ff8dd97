"""Disk images baked the way a golden AMI is: Debian's own packages, then bosky as README says.

Three cached layers, each built once and reused (under ``$BOSKY_TEST_CACHE/vm``):

1. the *base* root file system of a suite: ``mmdebstrap`` from the machine's
   own Debian mirror (read from apt's configuration at run time) with the
   cloud kernel, systemd, Debian's cloud-init, python3-boto3 and python3-yaml.
   Keyed by suite and package list. About a minute a suite, mostly CPU.
2. the *baked* root file system: a copy of the base into which bosky is
   installed by the README's route for that suite (the ``.deb`` with apt, or
   pip on bullseye), then ``bosky install`` and ``bosky doctor --image`` run
   inside it, as an image pipeline would. Keyed also by a hash of bosky's
   package (the .deb and the wheel are built from the checkout).
   One image is not Debian's cloud-init: ``ubuntu-24.04-on-trixie`` is
   Ubuntu 24.04's cloud-init 26.1 (its quilt series applied, built as its
   debian/rules builds it, see :func:`swap_in_cloud_init`) with its own
   systemd units, on a Debian trixie userland (Debian's Python 3.13 and
   systemd 257, not Ubuntu's 3.12 and 255). It is the case Ubuntu's
   ``no-single-process.patch`` makes: the newest cloud-init code with the init
   stage in ``cloud-init.service`` (``KillMode=control-group``).
3. *disks*: ``mkfs.ext4 -d`` turns a baked tree plus a few variant files (the
   golden-AMI stanza, or none) into a raw disk in seconds, with no loop mount.

A layer not used for two days is removed the next time a layer of its kind is.

A bake step that fails raises :class:`BakeError` with its output: the test
fails, because an image pipeline would fail there too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tests.harness.releases import cache_dir, debian_mirror_uri, file_lock

REPO_ROOT = Path(__file__).resolve().parents[2]

#: What every image holds besides bosky: the distribution's own kernel,
#: systemd, cloud-init and the Python libraries bosky imports, plus what
#: cloud-init's default modules need to finish cleanly (e2fsprogs for
#: resizefs, openssh-server for its keys, passwd/sudo for the default user)
#: and ifupdown + a DHCP client for the network cloud-init renders.
BASE_PACKAGES: tuple[str, ...] = (
    "linux-image-cloud-amd64", "systemd-sysv", "udev", "initramfs-tools", "cloud-init",
    "python3-boto3", "python3-yaml", "ifupdown", "iproute2", "procps", "e2fsprogs",
    "openssh-server", "sudo", "passwd", "netcat-openbsd",
)


@dataclass(frozen=True)
class Suite:
    """One Debian suite the tier boots, and how README tells its users to install bosky.

    ``cloud_init_build`` names a harness build (tests/harness/releases.py) that
    replaces Debian's cloud-init in the image; ``debian`` is then the suite
    whose userland it runs on.
    """

    name: str
    cloud_init: str  # the version the boot reports (asserted from the boot)
    python: str
    route: str  # "deb" (apt installs the .deb) or "pip" (the README's pip route)
    dhcp_client: str = "isc-dhcp-client"
    debian: str = ""
    cloud_init_build: str = ""

    @property
    def debian_suite(self) -> str:
        return self.debian or self.name

    def packages(self) -> tuple[str, ...]:
        extra = ("python3-pip",) if self.route == "pip" else ()
        return (*BASE_PACKAGES, self.dhcp_client, *extra)


#: Ubuntu's cloud-init on a Debian userland (see the module doc).
UBUNTU_ON_DEBIAN = "ubuntu-24.04-on-trixie"


SUITES: Mapping[str, Suite] = {
    s.name: s for s in (
        Suite("bullseye", "20.4.1", "3.9", "pip"),
        Suite("bookworm", "22.4.2", "3.11", "deb"),
        Suite("trixie", "25.1.4", "3.13", "deb"),
        # sid has no isc-dhcp-client any more.
        Suite("sid", "26.2", "3.14", "deb", dhcp_client="dhcpcd-base"),
        Suite(UBUNTU_ON_DEBIAN, "26.1-0ubuntu1~24.04.1", "3.13", "deb", debian="trixie",
              cloud_init_build="ubuntu-24.04"),
    )
}

BUILD_TIMEOUT = 1200.0
BAKE_STEP_TIMEOUT = 300.0


class BakeError(RuntimeError):
    """A step of building or baking an image failed."""


def vm_cache() -> Path:
    return cache_dir() / "vm"


def _log(message: str) -> None:
    print(f"[bosky-vm] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], *, timeout: float = BAKE_STEP_TIMEOUT, what: str = "",
        env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None) -> str:
    """Run one build step; raise :class:`BakeError` with its output if it fails."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False, cwd=cwd,
                              env=None if env is None else dict(env))
    except subprocess.TimeoutExpired as exc:
        raise BakeError(f"{what or cmd[0]}: timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise BakeError(f"{what or ' '.join(cmd)} failed (exit {proc.returncode}):\n"
                        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


#: A cached layer nobody has used for this long is removed when a sibling is
#: used: every change to bosky makes new baked images and disks (~1 GB a suite).
STALE_AFTER = 2 * 86400.0


def _used(layer: Path) -> Path:
    """Mark a cached layer used now; remove same-kind layers unused for STALE_AFTER
    (the baseline image of benchmarks/vm_boot.py stays while it is used)."""
    os.utime(layer)
    kind = layer.name.split("-", 1)[0]  # base, baked, disk or artifacts
    now = time.time()
    for other in vm_cache().glob(f"{kind}-*"):
        try:
            stale = other.is_dir() and other != layer and \
                now - other.stat().st_mtime > STALE_AFTER
        except OSError:
            continue
        if stale:
            _log(f"removing {other.name}: unused for {STALE_AFTER / 86400:.0f} days")
            shutil.rmtree(other, ignore_errors=True)
    return layer


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _system_env() -> dict[str, str]:
    """A plain system environment: Debian's tools must not pick up pyenv's or the venv's Python."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive"}


# -- layer 1: the suite's base root file system ---------------------------------------------


def base_rootfs(suite: Suite) -> Path:
    """The suite's root file system from its own packages (built once, then cached)."""
    debian = suite.debian_suite  # images on the same userland share their base
    key = _digest(debian, suite.packages(), 1)
    done = vm_cache() / f"base-{debian}-{key}"
    with file_lock(vm_cache() / f"base-{debian}.lock"):
        if (done / "etc" / "os-release").exists():
            return _used(done)
        archives = vm_cache() / "archives" / debian
        archives.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"base-{debian}-", dir=vm_cache()))
        aptopt = work.with_suffix(".aptopt")
        # sid's InRelease can be past its Valid-Until on a mirror snapshot.
        aptopt.write_text('Acquire::Check-Valid-Until "false";\n')
        began = time.monotonic()
        _log(f"building the {debian} root file system with mmdebstrap (about a minute)")
        try:
            run(["mmdebstrap", "--variant=apt", "--include=" + ",".join(suite.packages()),
                 f"--aptopt={aptopt}", "--skip=download/empty",
                 # Keep the downloaded packages: a rebuild then needs no network.
                 '--setup-hook=mkdir -p "$1"/var/cache/apt/archives',
                 f"--setup-hook=sync-in {archives} /var/cache/apt/archives/",
                 f"--customize-hook=sync-out /var/cache/apt/archives {archives}",
                 debian, str(work / "root"), debian_mirror_uri()],
                timeout=BUILD_TIMEOUT, what=f"mmdebstrap {debian}", env=_system_env())
            os.rename(work / "root", done)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            aptopt.unlink(missing_ok=True)
        _log(f"{debian} root file system built in {time.monotonic() - began:.0f} s")
        return _used(done)


# -- bosky's own packages, from the checkout ------------------------------------------------


def _source_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return sorted(REPO_ROOT / n for n in listed.decode().split("\0") if n)


@dataclass(frozen=True)
class Artifacts:
    deb: Path
    wheel: Path
    key: str  # hash of what went into them: an image baked from them is keyed by it


def source_key() -> str:
    """Hash of the files bosky's packages are built from (not of the packages: a
    wheel's timestamps make every build's bytes differ)."""
    h = hashlib.sha256()
    for path in _source_files():
        rel = path.relative_to(REPO_ROOT).as_posix()
        packaged = rel.startswith(("cc_bosky/", "debian/")) or rel in (
            "setup.cfg", "pyproject.toml", "README.md", "LICENSE")
        if packaged and path.is_file():
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_artifacts() -> Artifacts:
    """``bosky_VERSION_all.deb`` (Debian's own tooling) and the wheel, from the checkout."""
    key = source_key()
    out = vm_cache() / f"artifacts-{key}"
    with file_lock(vm_cache() / "artifacts.lock"):
        debs, wheels = sorted(out.glob("bosky_*_all.deb")), sorted(out.glob("bosky-*.whl"))
        if debs and wheels:
            _used(out)
            return Artifacts(debs[0], wheels[0], key)
        work = Path(tempfile.mkdtemp(prefix="artifacts-", dir=vm_cache()))
        try:
            src = work / "bosky"
            for path in _source_files():
                if path.is_file():
                    target = src / path.relative_to(REPO_ROOT)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
            deb = build_deb(src)
            run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "-q", "-w", str(work / "wheel"), str(src)], what="building the wheel")
            wheel = next((work / "wheel").glob("bosky-*.whl"))
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(deb, out / deb.name)
            shutil.copy2(wheel, out / wheel.name)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _used(out)
        return Artifacts(out / deb.name, out / wheel.name, key)


def build_deb(source: Path) -> Path:
    """Build the .deb in ``source`` (a copy of the checkout); it lands beside it."""
    run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=source, env=_system_env(),
        what="dpkg-buildpackage")
    found = sorted(source.parent.glob("bosky_*_all.deb"))
    if not found:
        raise BakeError("dpkg-buildpackage made no bosky_*_all.deb")
    return found[0]


# -- layer 2: bosky baked in ------------------------------------------------------------------

#: Test instrumentation, not part of bosky: once cloud-init has finished, the
#: probe writes what the test reads back to the second serial port, a channel
#: that nothing else in the guest writes to.
PROBE_UNIT = """\
[Unit]
Description=bosky VM tier: report the boot on ttyS1
After=local-fs.target
DefaultDependencies=no

[Service]
Type=simple
ExecStart=/usr/local/sbin/bosky-vm-probe
StandardOutput=null
"""

PROBE_SCRIPT = Path(__file__).with_name("probe.sh")

#: cloud.cfg.d settings of every test image. The Debian images' cloud.cfg
#: asks for locale en_US.UTF-8, which needs locale-gen (about 40 s under
#: TCG); C.UTF-8 is built in and needs no generation.
IMAGE_CLOUD_CFG = "locale: C.UTF-8\n"


#: A bake step runs as it would on a build instance: /proc, /dev and /dev/pts
#: mounted, in a private mount namespace so nothing outlives the step.
_CHROOT = ('mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && '
           'mount -t tmpfs tmpfs "$0/run" && exec chroot "$0" "$@"')


def chroot(root: Path, *cmd: str, what: str = "") -> str:
    # A root shell's PATH: pip puts the bosky command in /usr/local/bin.
    env = dict(_system_env(), PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", _CHROOT,
                str(root), *cmd], env=env, what=what or " ".join(cmd))


def baked_rootfs(suite: Suite, artifacts: Artifacts, with_bosky: bool = True) -> Path:
    """The suite's base with bosky installed the README's way and registered
    (``with_bosky=False``: the same image without it, the benchmark's baseline)."""
    base = base_rootfs(suite)
    key = _digest(base.name, artifacts.key if with_bosky else "no-bosky", PROBE_UNIT,
                  PROBE_SCRIPT.read_text(), IMAGE_CLOUD_CFG, suite.cloud_init_build,
                  SWAP_LAYOUT if suite.cloud_init_build else 0)
    done = vm_cache() / f"baked-{suite.name}-{key}"
    with file_lock(vm_cache() / f"baked-{suite.name}.lock"):
        if (done / "etc" / "bosky-vm-baked").exists():
            return _used(done)
        began = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f"baked-{suite.name}-", dir=vm_cache()))
        root = work / "root"
        try:
            run(["cp", "-a", "--reflink=auto", str(base), str(root)], what="copying the base")
            if with_bosky:
                install_bosky(suite, root, artifacts)
            if suite.cloud_init_build:
                swap_in_cloud_init(root, suite.cloud_init_build)
                if with_bosky:  # cloud.cfg changed: the drop-in follows it, as after an upgrade
                    chroot(root, "bosky", "install", what="bosky install (new cloud-init)")
                    chroot(root, "bosky", "doctor", "--image", what="bosky doctor --image")
            _add_instrumentation(root)
            (root / "etc" / "bosky-vm-baked").write_text(artifacts.key + "\n")
            os.rename(root, done)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _log(f"{suite.name}: bosky baked in in {time.monotonic() - began:.0f} s")
        return _used(done)


def install_bosky(suite: Suite, root: Path, artifacts: Artifacts) -> None:
    """README's install route for the suite, then ``bosky install`` and ``bosky doctor --image``."""
    tmp = root / "tmp"
    if suite.route == "deb":
        shutil.copy2(artifacts.deb, tmp / artifacts.deb.name)
        # Every dependency is already in the image, so apt needs no package lists.
        chroot(root, "apt-get", "install", "-y", f"/tmp/{artifacts.deb.name}",
               what=f"apt-get install ./{artifacts.deb.name}")
        (tmp / artifacts.deb.name).unlink()
    else:
        shutil.copy2(artifacts.wheel, tmp / artifacts.wheel.name)
        # README's route: the wheel by its hash, alone (--no-deps: the
        # distribution's botocore and PyYAML, already in the image), no index.
        digest = hashlib.sha256(artifacts.wheel.read_bytes()).hexdigest()
        (tmp / "bosky.txt").write_text(f"/tmp/{artifacts.wheel.name} --hash=sha256:{digest}\n")
        chroot(root, "pip3", "install", "--no-deps", "--no-index", "--require-hashes",
               "-r", "/tmp/bosky.txt", what=f"pip3 install --require-hashes {artifacts.wheel.name}")
        (tmp / artifacts.wheel.name).unlink()
        (tmp / "bosky.txt").unlink()
    chroot(root, "bosky", "install", what="bosky install")
    chroot(root, "bosky", "doctor", "--image", what="bosky doctor --image")


#: Bump to rebuild images whose cloud-init :func:`swap_in_cloud_init` replaced.
SWAP_LAYOUT = 1


def swap_in_cloud_init(root: Path, build_id: str) -> None:
    """Replace the image's Debian cloud-init with harness build *build_id*, as its
    own package would lay it out: Debian's package purged (``--force-depends``:
    bosky's package stays), then the build's library, commands, ``/etc/cloud``
    and systemd units, and its four services enabled as its postinst does.

    The build is made again here, from the same source archive, by the image's
    own rules: the library in ``/usr/lib/python3/dist-packages`` (any Python 3
    reads it; the image's is Debian's 3.13) and ``cloud.cfg`` rendered with
    the ``debian`` template variant, as Ubuntu's debian/rules renders it on a
    Debian build host: an ``ubuntu`` cloud.cfg would have cloud-init manage a
    default ``ubuntu`` user in groups (``lxd``) and apt sources that this
    userland does not have, which is not what the test is about.
    """
    from tests.harness import releases

    spec = releases.ALL_SPECS[build_id]
    assert spec.source is not None, f"{build_id} is not built from source"
    harness_build = releases.ensure_release(build_id)  # its Python has setuptools and jinja2
    source = dataclasses.replace(spec.source, variant="debian")
    staged = Path(tempfile.mkdtemp(prefix="swap-", dir=vm_cache())) / "root"
    try:
        releases.build_from_source(spec, source, harness_build.python, staged)
        chroot(root, "dpkg", "--purge", "--force-depends", "cloud-init",
               what="dpkg --purge cloud-init (Debian's)")
        for link in (root / "etc/systemd/system").rglob("cloud-*"):
            if link.is_symlink():  # enablement links of Debian's units, if any are left
                link.unlink()
        for script in (staged / "usr/bin").iterdir():
            text = script.read_text()
            if text.startswith("#!"):  # setup.py wrote the harness venv's Python there
                script.write_text("#!/usr/bin/python3\n" + text.split("\n", 1)[1])
        for top in ("lib", "bin", "sbin"):  # merged /usr: /lib is a link to usr/lib
            if (root / top).is_symlink() and (staged / top).is_dir():
                run(["cp", "-a", "-T", str(staged / top), str(staged / "usr" / top)],
                    what=f"merging /{top} into /usr/{top}")
                shutil.rmtree(staged / top)
        run(["cp", "-a", "--no-preserve=ownership", "-T", str(staged), str(root)],
            what=f"copying the {build_id} build into the image")
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)
    chroot(root, "systemctl", "enable", "cloud-init-local.service", "cloud-init.service",
           "cloud-config.service", "cloud-final.service", what="enabling its units")


def _add_instrumentation(root: Path) -> None:
    probe = root / "usr/local/sbin/bosky-vm-probe"
    probe.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROBE_SCRIPT, probe)
    probe.chmod(0o755)
    (root / "etc/systemd/system/bosky-vm-probe.service").write_text(PROBE_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "bosky-vm-probe.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/bosky-vm-probe.service")
    (root / "etc/cloud/cloud.cfg.d/05_bosky_vm.cfg").write_text(IMAGE_CLOUD_CFG)
    # The console is a log, not a login prompt; the root file system is the whole disk.
    (root / "etc/fstab").write_text("LABEL=root / ext4 defaults 0 1\n")


# -- layer 3: disks ---------------------------------------------------------------------------

ENDPOINT_ADDRESS = "169.254.0.4"
ENDPOINT_PORT = 4566
ENDPOINT_URL = f"http://{ENDPOINT_ADDRESS}:{ENDPOINT_PORT}"
PROJECT = "bosky-vm"

#: What the golden AMI says about bosky: the stanza in cloud.cfg.d (files there
#: are not schema-checked at boot, so user data stays the user's).
GOLDEN_STANZA = f"bosky:\n  project: {PROJECT}\n"
#: The command's settings, in every image: a user-data script just runs `bosky --fail ...`.
COMMAND_CONFIG = f"project: {PROJECT}\nendpoint_url: {ENDPOINT_URL}\n"


@dataclass(frozen=True)
class Disk:
    suite: Suite
    raw: Path
    kernel: Path
    initrd: Path
    variant: str


def disk(suite: Suite, artifacts: Artifacts, golden: bool = True,
         with_bosky: bool = True) -> Disk:
    """A raw disk of the baked image; ``golden`` adds the cloud.cfg.d stanza."""
    baked = baked_rootfs(suite, artifacts, with_bosky)
    variant = "golden" if golden and with_bosky else "plain"
    out = vm_cache() / f"disk-{baked.name}-{variant}"
    with file_lock(vm_cache() / f"disk-{suite.name}.lock"):
        raw = out / "disk.raw"
        if not raw.exists():
            work = Path(tempfile.mkdtemp(prefix="disk-", dir=vm_cache()))
            try:
                tree = work / "root"
                run(["cp", "-a", "--reflink=auto", str(baked), str(tree)], what="copying")
                (tree / "etc/bosky").mkdir(exist_ok=True)
                (tree / "etc/bosky/config.yaml").write_text(COMMAND_CONFIG)
                if golden and with_bosky:
                    (tree / "etc/cloud/cloud.cfg.d/90_bosky.cfg").write_text(GOLDEN_STANZA)
                work_raw = work / "disk.raw"
                run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(tree), str(work_raw), "3G"],
                    what="mkfs.ext4 -d", env=_system_env())
                out.mkdir(parents=True, exist_ok=True)
                for name in ("vmlinuz", "initrd.img"):
                    found = sorted((baked / "boot").glob(f"{name}-*"))
                    if not found:
                        raise BakeError(f"no /boot/{name}-* in the {suite.name} image")
                    shutil.copy2(found[-1], out / name)
                os.rename(work_raw, raw)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        _used(out)
        return Disk(suite, raw, out / "vmlinuz", out / "initrd.img", variant)
