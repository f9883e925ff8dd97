"""``bosky doctor``: is this machine (or an image, with ``--root``) ready to report its boots?

A checklist, one line per check. Each check is a small function returning a
:class:`Check`, so tests can call them one at a time. The checks look where
cloud-init looks: at the Python named by the ``cloud-init`` script's shebang
(the interpreter that will import ``cc_bosky``), at the effective module
lists (through install's reader, so both agree on what "registered" means),
and at the config files and environment bosky itself reads.

With ``--root`` the machine inspected is an image, not this one: nothing of
the image is executed (its Python may not run here), so the cloud-init
version and the packages are found on disk. With ``--root`` or ``--image``
(an image being built, checked from inside) the instance-only checks --
region from the instance identity, credentials, endpoint -- are not made:
they belong to the instances that will boot the image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import config
from ..errors import EXIT_NOT_DELIVERED, EXIT_OK, BoskyError, UsageError
from ..text import printable
from .install import (
    BEFORE_IN_FINAL,
    FINAL_KEY,
    INIT_KEY,
    MODULE,
    ArgParser,
    dropin_state,
    effective_lists,
    has_module,
    in_root,
    names,
    read_system,
)

OK, WARN, FAIL = "ok", "warn", "fail"
_LABELS = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]"}
MIN_CLOUD_INIT = (20, 4)
# Importing boto3 takes ~0.3 s; a loaded machine gets a wide margin.
PROBE_TIMEOUT = 20.0
CONNECT_TIMEOUT = 3.0
SEND_TEST_BUDGET = 15.0
INSTANCE_DATA = "/run/cloud-init/instance-data.json"
_SCRIPT_DIRS = ("/usr/bin", "/usr/local/bin", "/bin")


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{_LABELS[self.status]} {self.name}: {self.detail}"
        if self.fix and self.status != OK:
            text += f" -- fix: {self.fix}"
        return printable(text)


def _live(root: Path) -> bool:
    return root == Path("/")


def _root_flag(root: Path) -> str:
    return "" if _live(root) else f" --root {root}"


# -- finding cloud-init and its Python ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CloudInit:
    """The ``cloud-init`` script and the interpreter its shebang names (host paths)."""

    script: Path
    python: Tuple[str, ...]  # argv prefix; () when the shebang names no usable program


def find_cloud_init(root: Path, environ: Mapping[str, str]) -> Optional[CloudInit]:
    """The cloud-init script: on PATH (this machine) or in the usual places."""
    script: Optional[Path] = None
    if _live(root):
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
    if _live(root):
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
       "cc_bosky": find("cc_bosky"), "boto3": find("boto3")}
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
        ("boto3", "__init__.py", r"""__version__\s*=\s*['"]([^'"]+)"""),
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
    made with meson (Debian's 26.x), else from ``version.py`` itself.
    Ubuntu's 26.1 is built with setuptools: no ``meson_versions.py``, and
    ``version.py`` holds only ``_DOWNSTREAM_VERSION`` (the package version)
    beside an unfilled ``@MISSING_MESON_BUILD_ARTIFACT@`` placeholder.
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
    if not _live(root):
        return static_probe(root, found.python)
    return probe_python(found.python, environ)


# -- the checks ------------------------------------------------------------------------


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


def version_tuple(version: str) -> Optional[Tuple[int, int]]:
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


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


def check_imports(probe: Mapping[str, Any], python: Sequence[str],
                  environ: Mapping[str, str], live: bool = True) -> Check:
    name = "imports"
    if "error" in probe or "error" in (probe.get("cloudinit") or {}):
        return Check(name, WARN, "skipped: cloud-init's Python is not usable")
    interpreter = python[0] if python else "python3"
    missing = [(mod, (probe.get(mod) or {}).get("error", "unknown"))
               for mod in ("cc_bosky", "boto3") if "error" in (probe.get(mod) or {"error": ""})]
    if missing:
        what = "; ".join(f"{mod}: {why}" for mod, why in missing)
        return Check(name, FAIL, f"cloud-init's Python ({interpreter}) cannot import {what}",
                     f"install bosky into that Python: {interpreter} -m pip install bosky")
    bosky, boto3 = probe["cc_bosky"], probe["boto3"]
    if not probe.get("static") and not bosky.get("handle"):
        return Check(name, FAIL, f"cc_bosky at {bosky.get('where')} is not bosky's cloud-init "
                     "module (it has no handle)", "remove the other cc_bosky; reinstall bosky")
    detail = (f"cc_bosky ({bosky.get('where')}) and boto3 {boto3.get('version')} "
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
    fix = f"run 'bosky install{_root_flag(root)}'"
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
    fix = f"run 'bosky install{_root_flag(root)}' to re-state the lists"
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


@dataclasses.dataclass(frozen=True)
class ConfigView:
    """The settings bosky would use, where they came from, and what was wrong."""

    settings: config.Settings
    sources: Tuple[str, ...]
    problems: Tuple[str, ...]
    origin: Mapping[str, str]  # key -> the layer that set it


def check_units(root: Path) -> Check:
    from .units import unit_model, units_state

    ready, detail = units_state(root)
    model = unit_model(root)
    if not ready and model.spares_children:
        return Check("reporter unit", OK, f"not needed: {model.describe()}")
    if model.known:
        detail = f"{detail} ({model.describe()})"
    return Check("reporter unit", OK if ready else WARN, detail,
                 f"bosky install{_root_flag(root)}")


def load_config(root: Path, environ: Mapping[str, str],
                config_file: Optional[str] = None) -> ConfigView:
    """/etc/bosky/config.yaml, the ``bosky:`` stanzas of cloud.cfg(.d), the environment.

    At boot a stanza wins over the file; here the environment comes last, as
    for the ``bosky`` command. Invalid keys are left out and reported.
    """
    layers: List[Tuple[str, Dict[str, Any]]] = []
    problems: List[str] = []
    from_file = _file_layer(root, environ, config_file, problems)
    if from_file is not None:
        layers.append(from_file)
    layers += _stanza_layers(root, problems)
    try:
        env, bad = config.lenient(config.from_env(environ), "environment")
        problems += bad
    except BoskyError as exc:
        env = {}
        problems.append(str(exc))
    if env:
        layers.append(("environment", env))
    origin = {key: where for where, layer in layers for key in layer}
    settings = config.build(*(layer for _, layer in layers))
    return ConfigView(settings, tuple(w for w, _ in layers), tuple(problems), origin)


def _file_layer(root: Path, environ: Mapping[str, str], config_file: Optional[str],
                problems: List[str]) -> Optional[Tuple[str, Dict[str, Any]]]:
    named = config_file or (environ.get("BOSKY_CONFIG") if _live(root) else None)
    path = Path(named) if named else in_root(root, config.DEFAULT_CONFIG_FILE)
    try:
        data = config.read_file(str(path), required=bool(named))
    except BoskyError as exc:
        problems.append(str(exc))
        return None
    if not data and not path.exists():
        return None
    good, bad = config.lenient(data, str(path))
    problems += bad
    return str(path), good


def _stanza_layers(root: Path, problems: List[str]) -> List[Tuple[str, Dict[str, Any]]]:
    try:
        files = read_system(root).files()
    except UsageError:
        return []  # the registered check reports it
    layers = []
    for cfg in files:
        if "bosky" in cfg.data:
            good, bad = config.lenient(cfg.data["bosky"], f"{cfg.shown}: bosky")
            problems += bad
            layers.append((f"{cfg.shown} (bosky:)", good))
    return layers


def check_config(view: ConfigView) -> Check:
    name = "config"
    if view.problems:
        return Check(name, FAIL, "; ".join(view.problems),
                     "correct the named keys ('bosky --generate-config' describes them)")
    s = view.settings
    where = ", ".join(view.sources) or "defaults only"
    if s.project == "unknown":
        return Check(name, WARN, f"project is not set, events will have Source 'unknown' "
                     f"({where})", "set project, e.g. 'bosky install --config --project NAME'")
    return Check(name, OK, f"project {s.project!r}, DetailType {s.detail_type!r}, bus "
                 f"{s.event_bus or 'default'} (from {where})")


def resolve_region(view: ConfigView, ident_region: Optional[str]) -> Tuple[Optional[str], str]:
    if view.settings.region:
        return view.settings.region, view.origin.get("region", "config")
    if ident_region:
        return ident_region, "instance identity"
    return None, ""


def check_region(region: Optional[str], source: str, instance: bool) -> Check:
    name = "region"
    if region:
        return Check(name, OK, f"{region} (from {source})")
    if not instance:
        return Check(name, WARN, "not set in the image: looked up from the instance identity "
                     "at boot")
    return Check(name, FAIL, "no region in config, environment or instance identity",
                 "set region in /etc/bosky/config.yaml or AWS_REGION, or run on EC2")


def check_credentials(environ: Mapping[str, str], instance: bool) -> Check:
    name = "credentials"
    if not instance:
        return Check(name, WARN, "not checked for an image: the instance needs a role "
                     "allowing events:PutEvents (infra/instance-role.yaml)")
    from ..delivery.sender import load_credentials

    try:
        credentials = load_credentials(environ)
    except Exception as exc:  # botocore raises many kinds; never show a secret
        return Check(name, FAIL, f"loading AWS credentials failed ({type(exc).__name__})",
                     "run 'aws sts get-caller-identity' to see why")
    if credentials is None:
        return Check(name, FAIL, "no AWS credentials (environment, profile, container or "
                     "instance role)", "attach an instance profile allowing events:PutEvents "
                     "('bosky --permissions' prints the policy)")
    return Check(name, OK, f"found (provider: {getattr(credentials, 'method', 'unknown')})")


def endpoint_url(view: ConfigView, region: Optional[str]) -> Optional[str]:
    from ..arns import events_endpoint

    return view.settings.endpoint_url or (events_endpoint(region) if region else None)


def check_endpoint(url: Optional[str], environ: Mapping[str, str], instance: bool = True,
                   timeout: float = CONNECT_TIMEOUT) -> Check:
    name = "endpoint"
    if not url:
        return Check(name, WARN, "skipped: no region to derive the endpoint from")
    if not instance:
        return Check(name, WARN, f"{url} not checked for an image")
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    if not parts.hostname or not port:
        return Check(name, FAIL, f"{url!r} is not an http(s) URL", "correct endpoint_url")
    host, via = parts.hostname, ""
    proxy = proxy_for(parts.scheme, host, environ)
    if proxy:
        host, port, via = proxy[0], proxy[1], f" via proxy {proxy[0]}:{proxy[1]}"
    error = tcp_connect(host, port, timeout)
    if error:
        return Check(name, FAIL, f"cannot connect to {host}:{port}{via} ({url}): {error}",
                     "allow outbound HTTPS to EventBridge (security group, network ACL, route, "
                     "proxy) or use a VPC endpoint as endpoint_url")
    return Check(name, OK, f"{host}:{port}{via} accepts connections ({url})")


def proxy_for(scheme: str, host: str, environ: Mapping[str, str]) -> Optional[Tuple[str, int]]:
    """The proxy urllib would use for ``host``, from ``environ`` (not os.environ)."""
    proxy = environ.get(f"{scheme}_proxy") or environ.get(f"{scheme.upper()}_PROXY")
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    if not proxy or _bypassed(host, no_proxy):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = parts.port or 80
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def _bypassed(host: str, no_proxy: str) -> bool:
    """``no_proxy`` as urllib reads it: ``*``, or names matching the host or a parent domain."""
    for entry in (e.strip().lower().lstrip(".") for e in no_proxy.split(",")):
        entry = entry.split(":", 1)[0] if entry.count(":") == 1 else entry
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def tcp_connect(host: str, port: int, timeout: float) -> Optional[str]:
    """None when ``host:port`` accepts a TCP connection within ``timeout``, else why not.

    The attempt runs in a thread so the name lookup, which takes no timeout
    of its own, is bounded too.
    """
    outcome: Dict[str, str] = {}

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome["ok"] = ""
        except OSError as exc:
            outcome["error"] = exc.strerror or str(exc) or type(exc).__name__

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if "ok" in outcome:
        return None
    return outcome.get("error") or f"no answer within {timeout:g} s"


def check_send_test(view: ConfigView, region: Optional[str], ident: Any,
                    environ: Mapping[str, str]) -> Check:
    """Send one event with Status 'test', without spooling it when it fails."""
    name = "send test"
    if not region:
        return Check(name, FAIL, "cannot send: no region", "set region (see the region check)")
    from ..arns import instance_arn
    from ..delivery.outbox import send
    from ..delivery.sender import Target
    from ..event import make_event

    s = view.settings
    event = make_event(
        source=s.project, detail_type=s.detail_type, status="test",
        message="bosky doctor --send-test", identity=ident.detail_fields(), origin="command",
        resources=(instance_arn(ident.instance_id, region, ident.account_id),)
        if ident.instance_id else (),
        event_bus=s.event_bus,
    )
    target = Target(region, s.endpoint_url, min(s.send_timeout, SEND_TEST_BUDGET))
    (result,) = send([event], target, None, environ)
    where = f"Source {s.project!r}, bus {s.event_bus or 'default'} in {region}"
    if result.outcome.delivered:
        return Check(name, OK, f"EventBridge accepted test event {event.event_id} ({where})")
    return Check(name, FAIL, f"test event not accepted ({where}): {result.outcome.reason()}",
                 "see the credentials and endpoint checks; 'bosky --permissions' prints the "
                 "policy the role needs")


# -- running them ------------------------------------------------------------------------


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    """One check's unexpected error is that check's failure, not the end of the list."""
    try:
        return run()
    except BoskyError as exc:
        return Check(name, FAIL, str(exc))
    except Exception as exc:
        return Check(name, FAIL, f"internal error: {type(exc).__name__}: {exc}",
                     "report this as a bosky bug")


def run_checks(root: Path, environ: Mapping[str, str], config_file: Optional[str] = None,
               send_test: bool = False, image: bool = False) -> List[Check]:
    """Every check; ``image``: skip what belongs to the instances (implied by a root)."""
    from ..identity import Identity, resolve

    live = _live(root)
    instance = live and not image
    found = find_cloud_init(root, environ)
    probe = probe_for(found, root, environ)
    python = found.python if found else ()
    version = (probe.get("cloudinit") or {}).get("version") if "error" not in probe else None
    view = load_config(root, environ, config_file)
    # An image's identity is the future instance's, unknown here.
    ident = resolve(None, environ, str(in_root(root, INSTANCE_DATA))) if instance else Identity()
    region, source = resolve_region(view, ident.region)
    checks = [
        _guarded("cloud-init", lambda: check_cloud_init(found, probe)),
        _guarded("cloud-init version", lambda: check_version(version)),
        _guarded("imports", lambda: check_imports(probe, python, environ, live)),
        _guarded("registered", lambda: check_registered(root)),
        _guarded("drop-in", lambda: check_dropin(root)),
        _guarded("reporter unit", lambda: check_units(root)),
        _guarded("config", lambda: check_config(view)),
        _guarded("region", lambda: check_region(region, source, instance)),
        _guarded("credentials", lambda: check_credentials(environ, instance)),
        _guarded("endpoint",
                 lambda: check_endpoint(endpoint_url(view, region), environ, instance)),
    ]
    checks += _action_checks(view, ident, environ, instance, str(in_root(root, INSTANCE_DATA)))
    if send_test:
        checks.append(_guarded("send test",
                               lambda: check_send_test(view, region, ident, environ)))
    return checks


def _action_checks(view: ConfigView, ident: Any, environ: Mapping[str, str], instance: bool,
                   instance_data: str) -> List[Check]:
    """The lifecycle hook and stack signal checks, for what is configured."""
    from ..actions.doctor import action_checks

    try:
        return action_checks(view.settings, ident, environ, instance, instance_data)
    except Exception as exc:
        return [Check("actions", FAIL, f"internal error: {type(exc).__name__}: {exc}",
                      "report this as a bosky bug")]


def doctor_command(argv: List[str], environ: Mapping[str, str]) -> int:
    p = ArgParser(prog="bosky doctor", description="Check that cloud-init will run bosky and "
                  "that its events can reach EventBridge. Exit 0 when no check failed.")
    p.add_argument("--root", default="/", metavar="DIR",
                   help="inspect the system under DIR (an image being built); default /")
    p.add_argument("--image", action="store_true",
                   help="check only what belongs to the image (while baking it): skip the "
                   "region lookup, credentials and endpoint checks")
    p.add_argument("--config", metavar="FILE", help="bosky config file to check")
    p.add_argument("--send-test", action="store_true",
                   help="send an event with Status 'test' (not spooled) and report the answer")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--debug", action="store_true", help="show details of failures")
    args = p.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        raise UsageError(f"--root {root}: not a directory")
    checks = run_checks(root, environ, args.config, args.send_test, args.image)
    failed = sum(c.status == FAIL for c in checks)
    if args.json:
        print(json.dumps({"root": str(root), "ok": not failed,
                          "checks": [dataclasses.asdict(c) for c in checks]}, indent=2))
    else:
        for check in checks:
            print(check.line())
        warned = sum(c.status == WARN for c in checks)
        print(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return EXIT_NOT_DELIVERED if failed else EXIT_OK
