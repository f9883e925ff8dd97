"""The Python that runs cloud-init, and what it can import.

cloud-init's Python is the interpreter named by the ``cloud-init`` script's
shebang: the one that will import ``cc_bosky`` at boot, and the one the boot
reporter must run under. On this machine it is asked (a bounded subprocess);
in an image (``--root``) nothing is executed (its Python may not run here),
so the versions are read from its files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .root import in_root, is_live

# Importing botocore takes ~0.3 s; a loaded machine gets a wide margin.
PROBE_TIMEOUT = 20.0
_SCRIPT_DIRS = ("/usr/bin", "/usr/local/bin", "/bin")


@dataclasses.dataclass(frozen=True)
class CloudInit:
    """The ``cloud-init`` script and the interpreter its shebang names (host paths)."""

    script: Path
    python: Tuple[str, ...]  # argv prefix; () when the shebang names no usable program


def find_cloud_init(root: Path, environ: Mapping[str, str]) -> Optional[CloudInit]:
    """The cloud-init script: on PATH (this machine) or in the usual places."""
    script: Optional[Path] = None
    if is_live(root):
        found = shutil.which("cloud-init", path=environ.get("PATH", os.defpath))
        script = Path(found) if found else None
    if script is None:
        script = next((p for p in (in_root(root, d) / "cloud-init" for d in _SCRIPT_DIRS)
                       if p.is_file()), None)
    if script is None:
        return None
    return CloudInit(script, shebang_command(script, root, environ))


def shebang_command(script: Path, root: Path, environ: Mapping[str, str]) -> Tuple[str, ...]:
    """The interpreter argv of ``script``'s ``#!`` line, ``/usr/bin/env NAME`` resolved."""
    try:
        with open(script, "rb") as f:
            first = f.readline(512).decode("utf-8", "replace")
    except OSError:
        return ()
    if not first.startswith("#!"):
        return ()
    words = first[2:].split()
    if not words:
        return ()
    program, args = words[0], words[1:]
    if os.path.basename(program) == "env":
        # env [-S] [NAME=VALUE...] PROGRAM [ARGS...]
        while args and (args[0].startswith("-") or "=" in args[0]):
            args.pop(0)
        if not args:
            return ()
        found = _which(args[0], root, environ)
        return (found, *args[1:]) if found else ()
    return (str(in_root(root, program)), *args)


def _which(name: str, root: Path, environ: Mapping[str, str]) -> Optional[str]:
    if is_live(root):
        return shutil.which(name, path=environ.get("PATH", os.defpath))
    return next((str(p) for p in (in_root(root, d) / name for d in _SCRIPT_DIRS)
                 if os.path.lexists(p)), None)


# What cloud-init's Python is asked; Python 3.6 syntax, it may be an old distribution's.
PROBE = r"""
import json, sys
def find(name):
    try:
        mod = __import__(name)
    except Exception as exc:
        return {"error": "%s: %s" % (type(exc).__name__, exc)}
    where = getattr(mod, "__file__", None) or ", ".join(getattr(mod, "__path__", []))
    return {"where": where, "version": str(getattr(mod, "__version__", "")),
            "handle": hasattr(mod, "handle")}
out = {"python": sys.version.split()[0], "cloudinit": find("cloudinit"),
       "cc_bosky": find("cc_bosky"), "botocore": find("botocore")}
if "error" not in out["cloudinit"]:
    try:
        from cloudinit import version
        out["cloudinit"]["version"] = version.version_string()
    except Exception:
        out["cloudinit"]["version"] = ""
print(json.dumps(out))
"""


def probe_python(python: Sequence[str], environ: Mapping[str, str],
                 timeout: float = PROBE_TIMEOUT) -> Dict[str, Any]:
    """Ask cloud-init's own interpreter what it can import (a subprocess, bounded)."""
    try:
        proc = subprocess.run(
            [*python, "-c", PROBE], env=dict(environ), cwd="/",  # cwd: no stray cc_bosky
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{python[0]} did not answer within {timeout:g} s"}
    except OSError as exc:
        return {"error": f"cannot run {python[0]}: {exc.strerror or exc}"}
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
        if not isinstance(data, dict):
            raise ValueError
    except (ValueError, IndexError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{python[0]} exited with {proc.returncode}: {tail}"}
    return data


def static_probe(root: Path, python: Sequence[str]) -> Dict[str, Any]:
    """The same facts as :func:`probe_python`, read from an image's files."""
    dirs = site_dirs(root, python[0] if python else None)
    out: Dict[str, Any] = {"static": True, "python": _python_version_name(python) or "python3"}
    for name, version_file, pattern in (
        ("cloudinit", "version.py", r"""__VERSION__\s*=\s*['"]([^'"]+)"""),
        ("cc_bosky", "version.py", r"""__version__\s*=\s*['"]([^'"]+)"""),
        ("botocore", "__init__.py", r"""__version__\s*=\s*['"]([^'"]+)"""),
    ):
        out[name] = _find_package(dirs, name, version_file, pattern)
    where = out["cloudinit"].get("where")
    if where:
        out["cloudinit"]["version"] = cloud_init_version_on_disk(Path(where))
    return out


_QUOTED = r"""\s*=\s*['"]([^'"]*)['"]"""


def cloud_init_version_on_disk(package: Path) -> str:
    """What ``cloudinit.version.version_string()`` would say, read without importing.

    It returns the downstream version when a packager filled one in, else the
    upstream one; each comes from ``meson_versions.py`` when the build was
    made with meson, else from ``version.py`` itself. Ubuntu's 26.1 is built
    with setuptools: no ``meson_versions.py``, and ``version.py`` holds only
    ``_DOWNSTREAM_VERSION`` (the package version) beside an unfilled
    ``@MISSING_MESON_BUILD_ARTIFACT@`` placeholder.
    """
    def read(name: str) -> str:
        try:
            return (package / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    meson, version_py = read("meson_versions.py"), read("version.py")
    for text, downstream, upstream in (
        (meson, "DOWNSTREAM_VERSION", "UPSTREAM_VERSION"),
        (version_py, "_DOWNSTREAM_VERSION", "__VERSION__"),
    ):
        for key in (downstream, upstream):
            for value in re.findall(rf"^\s*{key}{_QUOTED}", text, re.MULTILINE):
                if value and "@" not in value and "DOWNSTREAM_VERSION" not in value:
                    return str(value)
    return ""


def site_dirs(root: Path, python: Optional[str]) -> List[Path]:
    """Where the image's Python (``python``, a host path) may find packages."""
    minor = _python_version_name((python,) if python else ()) or "python3.*"
    patterns = ["usr/lib/python3/dist-packages"] + [
        f"{base}/{minor}/{kind}"
        for base in ("usr/local/lib", "usr/lib", "usr/lib64")
        for kind in ("dist-packages", "site-packages")
    ]
    if python:  # a virtualenv: <venv>/bin/python -> <venv>/lib/pythonX.Y/site-packages
        venv = Path(python).parent.parent
        if venv != in_root(root, "/usr"):
            patterns.append(str((venv / "lib" / minor / "site-packages").relative_to(root)))
    found: List[Path] = []
    for pattern in patterns:
        found += sorted(p for p in root.glob(pattern) if p.is_dir())
    return found


def _python_version_name(python: Sequence[str]) -> Optional[str]:
    """``python3.11`` from the interpreter's name or its symlink chain, if it says."""
    if not python:
        return None
    path = Path(python[0])
    for _ in range(8):
        if re.fullmatch(r"python3\.\d+", path.name):
            return path.name
        if not path.is_symlink():
            return None
        path = path.parent / os.readlink(path)
    return None


def _find_package(dirs: Sequence[Path], name: str, version_file: str,
                  pattern: str) -> Dict[str, Any]:
    for directory in dirs:
        package = directory / name
        if package.is_dir() or (directory / f"{name}.py").is_file():
            where = package if package.is_dir() else directory / f"{name}.py"
            try:
                text = (package / version_file).read_text(errors="replace")
            except OSError:
                text = ""
            match = re.search(pattern, text)
            return {"where": str(where), "version": match.group(1) if match else ""}
    return {"error": f"not found in {', '.join(str(d) for d in dirs) or 'any site directory'}"}


def probe_for(found: Optional[CloudInit], root: Path,
              environ: Mapping[str, str]) -> Dict[str, Any]:
    if found is None:
        return {"error": "cloud-init not found"}
    if not found.python:
        return {"error": f"{found.script} has no usable #! line"}
    if not is_live(root):
        return static_probe(root, found.python)
    return probe_python(found.python, environ)


def version_tuple(version: str) -> Optional[Tuple[int, int]]:
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None
