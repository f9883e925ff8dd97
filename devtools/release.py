"""``./dev release``: every artifact a user installs, from one command.

Builds, from the files git knows (a clean copy, so nothing stray in the
checkout ends up in a package):

- the wheel and the sdist (the distribution's ``python3 -m build``),
- ``bosky_VERSION_all.deb`` (``dpkg-buildpackage``; for Debian and Ubuntu),
- ``bosky-VERSION-1.noarch.rpm`` (``rpmbuild`` on ``packaging/bosky.spec``,
  from the sdist; for Amazon Linux 2023 and RHEL 9, whose Python is 3.9),

checks the two packages with their distributions' linters (``lintian``,
``rpmlint``) and writes ``SHA256SUMS``: the hashes README's install routes
check before anything runs as root.

Every tool runs in a plain system environment: the distribution's Python
builds the packages even when a pyenv shim or a virtualenv comes first on
the caller's ``PATH`` (pybuild would otherwise find a ``python3.X`` without
Debian's build modules). ``SOURCE_DATE_EPOCH`` is the last commit's time, so
the packages' timestamps do not depend on when they were built.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = Path("packaging/bosky.spec")
RPMLINT_CONFIG = Path("packaging/rpmlint.toml")
#: Amazon Linux 2023 and RHEL 9 run cloud-init with their /usr/bin/python3, 3.9:
#: the rpm's files go where that Python looks, whatever Python builds it.
RPM_PYTHON = "3.9"
STEP_TIMEOUT = 600.0



class ReleaseError(RuntimeError):
    """A build or lint step failed; the message carries its output."""


def system_env(epoch: str) -> dict[str, str]:
    """The environment of a root shell on a fresh Debian machine, nothing inherited."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive", "SOURCE_DATE_EPOCH": epoch}


def run(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Optional[Path] = None,
        what: str = "") -> str:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd,
                              env=dict(env), stdin=subprocess.DEVNULL,
                              timeout=STEP_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise ReleaseError(f"{what or cmd[0]}: {exc.filename} is not installed "
                           "(./dev release installs the build host's packages)") from exc
    except subprocess.TimeoutExpired as exc:
        raise ReleaseError(f"{what or cmd[0]}: timed out after {STEP_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise ReleaseError(f"{what or ' '.join(cmd)} failed (exit {done.returncode}):\n"
                           f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout + done.stderr


def source_files(repo: Path = REPO_ROOT) -> list[Path]:
    """What git knows (tracked, and new files not ignored), relative to ``repo``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=repo, capture_output=True, check=True).stdout
    return sorted(Path(n) for n in listed.decode().split("\0") if n and (repo / n).is_file())


def copy_tree(repo: Path, dest: Path) -> Path:
    for rel in source_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)
    return dest


def version(repo: Path = REPO_ROOT) -> str:
    text = (repo / "cc_bosky" / "version.py").read_text(encoding="utf-8")
    found = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if not found:
        raise ReleaseError("cc_bosky/version.py names no __version__")
    return found.group(1)


def check_versions(repo: Path, want: str) -> None:
    """The three places a version is written agree: a package that says 0.1.0
    around a 0.2.0 module would be a lie apt or dnf could not see."""
    first = (repo / "debian" / "changelog").read_text(encoding="utf-8").split("\n", 1)[0]
    deb = re.match(r"\S+ \(([^)-]+)", first)
    spec = re.search(r"^Version:\s*(\S+)", (repo / SPEC).read_text(encoding="utf-8"), re.M)
    got = {"debian/changelog": deb.group(1) if deb else "?",
           str(SPEC): spec.group(1) if spec else "?"}
    wrong = [f"{where} says {v}" for where, v in got.items() if v != want]
    if wrong:
        raise ReleaseError(f"cc_bosky/version.py says {want}, but {'; '.join(wrong)}")


def commit_epoch(repo: Path) -> str:
    done = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=repo, capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or "0"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def write_sums(out: Path, files: Sequence[Path]) -> Path:
    """``sha256sum``'s format, so ``sha256sum -c SHA256SUMS`` checks a download."""
    sums = out / "SHA256SUMS"
    sums.write_text("".join(f"{sha256(p)}  {p.name}\n" for p in sorted(files)), encoding="utf-8")
    return sums


def build_python(src: Path, out: Path, env: Mapping[str, str]) -> tuple[Path, Path]:
    run(["python3", "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out),
         str(src)], env=env, what="python3 -m build")
    ver = version(src)
    return out / f"bosky-{ver}-py3-none-any.whl", out / f"bosky-{ver}.tar.gz"


def build_deb(src: Path, out: Path, env: Mapping[str, str]) -> Path:
    """``dpkg-buildpackage`` in ``src`` (it writes beside it), then ``lintian``."""
    run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env, what="dpkg-buildpackage")
    debs = sorted(src.parent.glob("bosky_*_all.deb"))
    if not debs:
        raise ReleaseError("dpkg-buildpackage made no bosky_*_all.deb")
    lint = run(["lintian", "--fail-on", "error,warning", str(debs[0])], env=env, what="lintian")
    if re.search(r"^[EW]: ", lint, re.M):
        raise ReleaseError(f"lintian:\n{lint}")
    return Path(shutil.copy2(debs[0], out / debs[0].name))


def build_rpm(src: Path, sdist: Path, out: Path, env: Mapping[str, str]) -> Path:
    """``rpmbuild`` from the sdist, then ``rpmlint``. ``--nodeps``: the
    BuildRequires name Red Hat's packages, which a Debian host's empty rpm
    database cannot know (Debian's own build tools, installed by ./dev, stand in)."""
    top = src.parent / "rpmbuild"
    (top / "SOURCES").mkdir(parents=True)
    shutil.copy2(sdist, top / "SOURCES" / sdist.name)
    run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}",
         "--define", f"python3_version {RPM_PYTHON}", str(src / SPEC)],
        env=env, what="rpmbuild")
    rpms = sorted((top / "RPMS" / "noarch").glob("bosky-*.noarch.rpm"))
    if not rpms:
        raise ReleaseError("rpmbuild made no bosky-*.noarch.rpm")
    run(["rpmlint", "-c", str(src / RPMLINT_CONFIG), str(rpms[0])], env=env, what="rpmlint")
    return Path(shutil.copy2(rpms[0], out / rpms[0].name))


def build(out: Path, repo: Path = REPO_ROOT) -> dict[str, Path]:
    """Build every artifact into ``out``; return them by kind (``wheel``,
    ``sdist``, ``deb``, ``rpm``, ``sums``). Raises :class:`ReleaseError`."""
    ver = version(repo)
    check_versions(repo, ver)
    out.mkdir(parents=True, exist_ok=True)
    env = system_env(commit_epoch(repo))
    with tempfile.TemporaryDirectory(prefix="bosky-release-") as tmp:
        work = Path(tmp)
        # Three copies: setuptools and dpkg-buildpackage each leave files in
        # the tree they build, which must not end up in the other's package.
        wheel, sdist = build_python(copy_tree(repo, work / "py" / "bosky"), out, env)
        deb = build_deb(copy_tree(repo, work / "deb" / "bosky"), out, env)
        rpm = build_rpm(copy_tree(repo, work / "rpm" / "bosky"), sdist, out, env)
    built = {"wheel": wheel, "sdist": sdist, "deb": deb, "rpm": rpm}
    built["sums"] = write_sums(out, list(built.values()))
    return built


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev release", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist",
                        help="where the artifacts go (default: dist/)")
    args = parser.parse_args(argv)
    try:
        built = build(args.out)
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    for kind, path in built.items():
        print(f"{kind:6} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
