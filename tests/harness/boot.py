"""A simulated EC2 instance that boots a real cloud-init release, once or many times.

Each boot runs the four cloud-init stages exactly as systemd would
(``init --local``, ``init``, ``modules --mode=config``, ``modules
--mode=final``) inside fresh namespaces created by ``unshare`` and driven by
:mod:`tests.harness.nsrunner`:

* mount namespace: the instance's persistent host directories (``etc_cloud``,
  ``var_lib_cloud``, ``var_log``, ``var_lib_bosky``, ``etc_bosky``) are bound
  over ``/etc/cloud``, ``/var/lib/cloud``, ``/var/log``, ``/var/lib/bosky`` and
  ``/etc/bosky``; ``/run`` is a new tmpfs (a reboot resets it) holding this
  boot's ``run_cloud_init`` and ``run_bosky`` directories. Nothing on the host
  changes except, once, empty mount points for the ``/etc`` and ``/var``
  targets that do not exist yet.
* network namespace: only ``lo``. cloud-init's Ec2Local datasource would run
  DHCP and ``ip`` on the instance's NIC; here it finds none and cannot touch
  the host's network. The emulator and any service named in ``env`` (e.g.
  ``AWS_ENDPOINT_URL_EVENTS=http://127.0.0.1:PORT``) are reached through a
  relay that listens on the same 127.0.0.1 ports inside the namespace, so all
  traffic stays on loopback by construction.
* PID namespace: the runner is PID 1, so when it exits everything the boot
  started (a reporter that was not waited for, ``tee`` helpers) is killed.
* UTS namespace: a hostname change cannot leak (``preserve_hostname`` is also
  set).

The machine is made to look like an EC2 instance (``aws_platform=True``):
stub ``dmidecode``/``systemd-detect-virt`` on ``PATH`` report an EC2 system
UUID and "not a container". That matters because cloud-init only uses IMDSv2
tokens when it identifies the platform as AWS; otherwise (cloud name
``unknown``) all three releases fall back to plain IMDSv1 GETs, which a
``http_tokens="required"`` emulator refuses. A stub ``udevadm`` stands in for
udev (20.4.1's ``init`` stage runs ``udevadm settle`` and fails without it),
and for the builds whose distribution's package depends on a DHCP client, a
stub ``dhclient`` that gets no lease.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

from .imds import MetadataServer
from .releases import Release

ModuleItem = Union[str, Sequence[str]]

DEFAULT_INIT_MODULES: tuple[ModuleItem, ...] = ("bootcmd", "write_files", "bosky")
DEFAULT_CONFIG_MODULES: tuple[ModuleItem, ...] = ("runcmd",)
DEFAULT_FINAL_MODULES: tuple[ModuleItem, ...] = (
    "scripts_per_once",
    "scripts_user",
    "final_message",
    "bosky",
    "power_state_change",
)

#: (stage name as cloud-init reports it, arguments of ``cloudinit.cmd.main``)
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("init-local", ("init", "--local")),
    ("init", ("init",)),
    ("modules-config", ("modules", "--mode=config")),
    ("modules-final", ("modules", "--mode=final")),
)

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REPORTER_LOCK = "/run/bosky/reporter.lock"
RUNNER = Path(__file__).with_name("nsrunner.py")

#: Like Debian's 05_logging.cfg, minus syslog (no /dev/log here): everything
#: at DEBUG to /var/log/cloud-init.log, warnings to the stage's stderr.
LOGGING_INI = """\
[loggers]
keys=root,cloudinit

[handlers]
keys=consoleHandler,cloudLogHandler

[formatters]
keys=simpleFormatter,arg0Formatter

[logger_root]
level=DEBUG
handlers=consoleHandler,cloudLogHandler

[logger_cloudinit]
level=DEBUG
qualname=cloudinit
handlers=
propagate=1

[handler_consoleHandler]
class=StreamHandler
level=WARNING
formatter=arg0Formatter
args=(sys.stderr,)

[formatter_arg0Formatter]
format=%(asctime)s - %(filename)s[%(levelname)s]: %(message)s

[formatter_simpleFormatter]
format=[CLOUDINIT] %(filename)s[%(levelname)s]: %(message)s

[handler_cloudLogHandler]
class=FileHandler
level=DEBUG
formatter=arg0Formatter
args=('/var/log/cloud-init.log', 'a', 'UTF-8')
"""

#: In-namespace target -> attribute of :class:`InstancePaths`.
PERSISTENT_MOUNTS: tuple[tuple[str, str], ...] = (
    ("/etc/cloud", "etc_cloud"),
    ("/var/lib/cloud", "var_lib_cloud"),
    ("/var/log", "var_log"),
    ("/var/lib/bosky", "var_lib_bosky"),
    ("/etc/bosky", "etc_bosky"),
)
PER_BOOT_MOUNTS: tuple[tuple[str, str], ...] = (
    ("/run/cloud-init", "run_cloud_init"),
    ("/run/bosky", "run_bosky"),
)

_LOOPBACK_PORT = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})\b")

_UNSET: Any = object()


class BootError(RuntimeError):
    """The harness itself failed (not cloud-init): setup, timeout, reporter wait."""


@dataclass(frozen=True)
class InstancePaths:
    """Host directories behind the instance's mount points (one boot's view)."""

    etc_cloud: Path
    var_lib_cloud: Path
    var_log: Path
    var_lib_bosky: Path
    etc_bosky: Path
    run_cloud_init: Path
    run_bosky: Path

    def mounts(self) -> list[tuple[str, Path]]:
        """(namespace path, host path) pairs, persistent ones first."""
        return [(t, getattr(self, a)) for t, a in (*PERSISTENT_MOUNTS, *PER_BOOT_MOUNTS)]

    def host_path(self, ns_path: str, *, follow_symlinks: bool = True) -> Optional[Path]:
        """Where namespace path *ns_path* lives on the host, following symlinks
        the way the instance sees them (``/run/cloud-init/status.json`` is a
        relative link into ``/var/lib/cloud/data``). None outside the mounts.
        """
        pending = list(PurePosixPath(os.path.normpath(ns_path)).parts[1:])
        resolved = PurePosixPath("/")
        hops = 0
        while pending:
            candidate = resolved / pending.pop(0)
            host = self._map(candidate)
            if host is not None and host.is_symlink() and (follow_symlinks or pending):
                hops += 1
                if hops > 40:
                    raise BootError(f"too many symlinks resolving {ns_path}")
                target = PurePosixPath(os.path.normpath(resolved / os.readlink(host)))
                pending = list(target.parts[1:]) + pending
                resolved = PurePosixPath("/")
                continue
            resolved = candidate
        return self._map(resolved)

    def _map(self, path: PurePosixPath) -> Optional[Path]:
        for target, host in sorted(self.mounts(), key=lambda m: -len(m[0])):
            if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
                return host / path.relative_to(target)
        return None


@dataclass(frozen=True)
class StageResult:
    """One cloud-init stage: exit code, wall time and its own stdout/stderr."""

    name: str
    exit_code: int
    duration: float
    timed_out: bool
    stdout: str
    stderr: str


_LOG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) - ")
_EVENT = re.compile(
    r"\[DEBUG\]: (?P<kind>start|finish): (?P<stage>[\w-]+)/config-(?P<module>[\w-]+): (?P<rest>.*)$"
)
_TOOK = re.compile(r"took (?P<secs>[0-9.]+) seconds")


@dataclass(frozen=True)
class ModuleTiming:
    """How long one module ran in one stage, from cloud-init's reporting events."""

    stage: str
    seconds: float  # from the log timestamps of the start/finish lines
    reported_seconds: Optional[float]  # "took N seconds" (25.x), else None
    result: str  # "SUCCESS", "FAIL", ... as in the finish line


def parse_module_timings(log_text: str, name: str = "bosky") -> dict[str, ModuleTiming]:
    """Per stage, how long module *name* ran, parsed from cloud-init.log lines

    ``<asctime> - handlers.py[DEBUG]: start: modules-final/config-bosky: running ...``
    ``<asctime> - handlers.py[DEBUG]: finish: modules-final/config-bosky: SUCCESS: ...``
    (the same shape in 20.4.1, 22.4.2, 25.1.4 and 26.2; only 25.x and later append
    `` and took N seconds`` to the finish line). The init stage's modules
    report as ``init-network``, then ``modules-config`` and ``modules-final``.
    Log times have millisecond resolution.
    """
    starts: dict[str, datetime] = {}
    timings: dict[str, ModuleTiming] = {}
    for line in log_text.splitlines():
        stamp, event = _LOG_TIME.match(line), _EVENT.search(line)
        if not stamp or not event or event["module"] != name:
            continue
        when = datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S,%f")
        stage = event["stage"]
        if event["kind"] == "start":
            starts[stage] = when
            continue
        began = starts.pop(stage, None)
        if began is None:
            continue
        took = _TOOK.search(event["rest"])
        timings[stage] = ModuleTiming(
            stage=stage,
            seconds=(when - began).total_seconds(),
            reported_seconds=float(took["secs"]) if took else None,
            result=event["rest"].split(":", 1)[0].strip(),
        )
    return timings


@dataclass
class BootResult:
    """What one boot left behind, read from the host side after it ended.

    ``cloud_init_log``/``output_log`` hold only what THIS boot appended
    (``/var/log`` persists across boots); ``status``/``result`` are the parsed
    ``/run/cloud-init/status.json``/``result.json`` (``/run`` is per boot, so
    None means this boot never wrote them).
    """

    index: int
    release: Release
    paths: InstancePaths
    boot_dir: Path
    stages: list[StageResult]
    cloud_init_log: str
    output_log: str
    status: Optional[dict[str, Any]]
    result: Optional[dict[str, Any]]
    reporter: Optional[dict[str, Any]]
    leftover_processes: list[str] = field(default_factory=list)

    @property
    def exit_codes(self) -> dict[str, int]:
        return {s.name: s.exit_code for s in self.stages}

    @property
    def durations(self) -> dict[str, float]:
        return {s.name: s.duration for s in self.stages}

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.stages)

    @property
    def errors(self) -> list[str]:
        """result.json's ``v1.errors`` (empty if the boot never wrote it)."""
        return list(((self.result or {}).get("v1") or {}).get("errors") or [])

    def ns_path(self, path: str) -> Optional[Path]:
        """Host path of a file as this boot's instance saw it (symlinks followed)."""
        return self.paths.host_path(path)

    def read_json(self, path: str) -> Optional[Any]:
        host = self.ns_path(path)
        if host is None or not host.is_file():
            return None
        return json.loads(host.read_text())

    @property
    def instance_data(self) -> Optional[dict[str, Any]]:
        """``/run/cloud-init/instance-data.json`` of this boot."""
        data = self.read_json("/run/cloud-init/instance-data.json")
        return data if isinstance(data, dict) else None

    def module_timings(self, name: str = "bosky") -> dict[str, float]:
        """Seconds module *name* ran in each stage of this boot (log timestamps)."""
        return {stage: t.seconds for stage, t in self.module_timing_details(name).items()}

    def module_timing_details(self, name: str = "bosky") -> dict[str, ModuleTiming]:
        return parse_module_timings(self.cloud_init_log, name)

    def describe(self) -> str:
        """A failure message body: exit codes, errors and the tail of the logs."""
        lines = [f"boot #{self.index} of cloud-init {self.release.version}: {self.exit_codes}"]
        lines.append(f"errors: {self.errors}")
        for stage in self.stages:
            if stage.stderr.strip():
                lines.append(f"--- {stage.name} stderr ---\n{stage.stderr[-2000:]}")
        lines.append(f"--- cloud-init.log (tail) ---\n{self.cloud_init_log[-4000:]}")
        return "\n".join(lines)


class _HostRelay:
    """Host side of the loopback relay: Unix socket ``<dir>/<port>.sock`` ->
    ``127.0.0.1:<port>``. The socket directory is short (``/tmp/bosky-relay-*``)
    because Unix socket paths are limited to 107 bytes.
    """

    def __init__(self, ports: Sequence[int]) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="bosky-relay-"))
        self._listeners: list[socket.socket] = []
        for port in ports:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(self.directory / f"{port}.sock"))
            listener.listen(64)
            self._listeners.append(listener)
            threading.Thread(target=self._serve, args=(listener, port), daemon=True).start()

    def _serve(self, listener: socket.socket, port: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        for listener in self._listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _module_list(items: Sequence[ModuleItem]) -> list[Any]:
    return [item if isinstance(item, str) else list(item) for item in items]


def _fake_ec2_uuid(instance_id: str) -> str:
    digits = re.sub(r"[^0-9a-f]", "", instance_id.lower()).ljust(29, "0")[:29]
    return f"ec2{digits[:5]}-{digits[5:9]}-{digits[9:13]}-{digits[13:17]}-{digits[17:29]}"


class Instance:
    """One simulated EC2 instance: persistent disks under *root*, boots on demand.

    ``env`` is added to a clean environment for every stage (AWS_* variables
    for bosky); loopback ports named in its values, the emulator's port and
    ``forward_ports`` are reachable from inside the boot.
    """

    def __init__(
        self,
        release: Release,
        root: Path,
        imds: Optional[MetadataServer] = None,
        env: Optional[Mapping[str, str]] = None,
        *,
        forward_ports: Sequence[int] = (),
        aws_platform: bool = True,
        stage_timeout: float = 120.0,
    ) -> None:
        self.release = release
        self.root = Path(root)
        self.imds = imds
        self.env: dict[str, str] = dict(env or {})
        self.forward_ports = tuple(forward_ports)
        self.aws_platform = aws_platform
        self.stage_timeout = stage_timeout
        self.boots: list[BootResult] = []
        self.stub_dir = self.root / "stubs"
        self._persistent = {attr: self.root / attr for _, attr in PERSISTENT_MOUNTS}
        for directory in self._persistent.values():
            directory.mkdir(parents=True, exist_ok=True)
        (self._persistent["etc_cloud"] / "cloud.cfg.d").mkdir(exist_ok=True)
        templates = release.etc_cloud_template / "templates"
        if templates.is_dir() and not (self._persistent["etc_cloud"] / "templates").exists():
            shutil.copytree(templates, self._persistent["etc_cloud"] / "templates")

    # -- paths ----------------------------------------------------------------

    def paths_for(self, boot_dir: Path) -> InstancePaths:
        return InstancePaths(
            **{k: v for k, v in self._persistent.items()},
            run_cloud_init=boot_dir / "run" / "cloud-init",
            run_bosky=boot_dir / "run" / "bosky",
        )

    @property
    def paths(self) -> InstancePaths:
        """The paths of the last boot (or of the next one before any boot)."""
        if self.boots:
            return self.boots[-1].paths
        return self.paths_for(self.root / "boots" / "001")

    # -- configuration ----------------------------------------------------------

    def cloud_cfg(
        self,
        init_modules: Sequence[ModuleItem],
        config_modules: Sequence[ModuleItem],
        final_modules: Sequence[ModuleItem],
    ) -> dict[str, Any]:
        """The generated /etc/cloud/cloud.cfg (JSON is valid YAML)."""
        cfg: dict[str, Any] = {
            "system_info": {
                "distro": self.release.distro,
                "paths": {
                    "cloud_dir": "/var/lib/cloud/",
                    "run_dir": "/run/cloud-init/",
                    "templates_dir": "/etc/cloud/templates/",
                },
            },
            "preserve_hostname": True,
            "manage_etc_hosts": False,
            "network": {"config": "disabled"},
            "syslog_fix_perms": ["root:root"],
            "def_log_file": "/var/log/cloud-init.log",
            "log_cfgs": [LOGGING_INI],
            "output": {"all": "| tee -a /var/log/cloud-init-output.log"},
            "cloud_init_modules": _module_list(init_modules),
            "cloud_config_modules": _module_list(config_modules),
            "cloud_final_modules": _module_list(final_modules),
        }
        if self.imds is not None:
            cfg["datasource_list"] = ["Ec2"]
            cfg["datasource"] = {
                "Ec2": {
                    "metadata_urls": [self.imds.url],
                    "strict_id": False,
                    "timeout": 2,
                    "max_wait": 10,
                }
            }
        else:
            cfg["datasource_list"] = ["None"]
        return cfg

    def _write_config(
        self, cfg: Mapping[str, Any], cloud_cfg_d: Mapping[str, Optional[str]]
    ) -> None:
        etc = self._persistent["etc_cloud"]
        (etc / "cloud.cfg").write_text(json.dumps(cfg, indent=2) + "\n")
        for name, content in cloud_cfg_d.items():
            target = etc / "cloud.cfg.d" / name
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.write_text(content)

    def _write_stubs(self) -> None:
        """udevadm, systemd-detect-virt and dmidecode stand-ins (see module doc)."""
        self.stub_dir.mkdir(exist_ok=True)
        _stub(self.stub_dir / "udevadm", "exit 0\n")
        if self.release.dhcp_client:
            # Ec2Local asks for a lease on the NIC; nobody answers, and `dhclient -1`
            # then exits 2. cloud-init logs that at DEBUG and moves on to Ec2.
            _stub(self.stub_dir / "dhclient", "exit 2\n")
        virt = "amazon" if self.aws_platform else "kvm"
        _stub(
            self.stub_dir / "systemd-detect-virt",
            'for a in "$@"; do case "$a" in -c|--container) exit 1;; esac; done\n'
            f"case \" $* \" in *' -q '*|*' --quiet '*) ;; *) echo {virt};; esac\nexit 0\n",
        )
        answers = self._dmi_values()
        cases = "".join(f"  {key}) echo '{value}';;\n" for key, value in answers.items())
        _stub(
            self.stub_dir / "dmidecode",
            'key=""\nwhile [ $# -gt 0 ]; do\n  case "$1" in -s|--string) key="$2"; shift;; esac\n'
            '  shift\ndone\ncase "$key" in\n' + cases + "  *) echo '';;\nesac\nexit 0\n",
        )

    def _dmi_values(self) -> dict[str, str]:
        instance_id = self.imds.metadata.instance_id if self.imds else "i-00000000000000000"
        if self.aws_platform:
            uuid = _fake_ec2_uuid(instance_id)
            vendor, product = (
                "Amazon EC2",
                (self.imds.metadata.instance_type if self.imds else "t3.micro"),
            )
        else:
            uuid, vendor, product = "5f3a9c1e-0000-4000-8000-b05e1a5e0001", "QEMU", "Standard PC"
        return {
            "system-uuid": uuid,
            "system-serial-number": uuid,
            "system-manufacturer": vendor,
            "system-product-name": product,
            "chassis-asset-tag": vendor if self.aws_platform else "",
            "baseboard-asset-tag": "",
        }

    def _stage_env(self) -> dict[str, str]:
        env = {
            "PATH": f"{self.stub_dir}:{BASE_PATH}",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.env,
        }
        extra = self.env.get("PYTHONPATH")
        env["PYTHONPATH"] = self.release.pythonpath() + (f":{extra}" if extra else "")
        return env

    def _relay_ports(self) -> list[int]:
        ports = set(self.forward_ports)
        if self.imds is not None:
            ports.add(self.imds.port)
        for value in self.env.values():
            ports.update(int(p) for p in _LOOPBACK_PORT.findall(value))
        return sorted(p for p in ports if 0 < p < 65536)

    # -- booting -------------------------------------------------------------------

    def boot(
        self,
        user_data: Union[bytes, str, None] = _UNSET,
        cloud_cfg_d: Optional[Mapping[str, Optional[str]]] = None,
        init_modules: Sequence[ModuleItem] = DEFAULT_INIT_MODULES,
        config_modules: Sequence[ModuleItem] = DEFAULT_CONFIG_MODULES,
        final_modules: Sequence[ModuleItem] = DEFAULT_FINAL_MODULES,
        wait_reporter: Optional[float] = None,
    ) -> BootResult:
        """Boot the instance once and return what the boot left.

        ``user_data`` replaces the emulator's user data for this and later
        boots (None: no user data; omitted: unchanged). ``cloud_cfg_d`` writes
        files into /etc/cloud/cloud.cfg.d (they persist, like files on a disk;
        a None value deletes one). ``wait_reporter`` (seconds): after the final
        stage, wait inside the boot until nobody holds bosky's
        ``/run/bosky/reporter.lock``; a timeout raises :class:`BootError`.
        """
        if user_data is not _UNSET:
            if self.imds is None:
                raise BootError("user_data needs a MetadataServer (imds=...)")
            data = user_data.encode() if isinstance(user_data, str) else user_data
            self.imds.metadata.user_data = data
        index = len(self.boots) + 1
        boot_dir = self.root / "boots" / f"{index:03d}"
        if boot_dir.exists():
            shutil.rmtree(boot_dir)
        paths = self.paths_for(boot_dir)
        for _, host in paths.mounts():
            host.mkdir(parents=True, exist_ok=True)
        _ensure_host_mount_points()
        self._write_config(
            self.cloud_cfg(init_modules, config_modules, final_modules), cloud_cfg_d or {}
        )
        self._write_stubs()
        log_offsets = {
            name: _size(paths.var_log / name)
            for name in ("cloud-init.log", "cloud-init-output.log")
        }
        results = self._run_namespace(boot_dir, paths, wait_reporter)
        result = self._collect(index, boot_dir, paths, results, log_offsets)
        self.boots.append(result)
        reporter = result.reporter or {}
        if reporter.get("timed_out"):
            raise BootError(
                f"bosky's reporter still held {REPORTER_LOCK} {wait_reporter}s after the final "
                f"stage (still running: {result.leftover_processes})\n{result.describe()}"
            )
        return result

    def _plan(
        self, boot_dir: Path, paths: InstancePaths, relay_dir: Path, wait_reporter: Optional[float]
    ) -> dict[str, Any]:
        python = str(self.release.python)
        dmi = self._dmi_values()
        return {
            "boot_dir": str(boot_dir),
            "results_path": str(boot_dir / "results.json"),
            "binds": [[str(host), target] for target, host in paths.mounts()],
            "dmi_sysfs": {
                "product_uuid": dmi["system-uuid"],
                "product_serial": dmi["system-serial-number"],
                "sys_vendor": dmi["system-manufacturer"],
                "product_name": dmi["system-product-name"],
                "chassis_asset_tag": dmi["chassis-asset-tag"],
                "board_asset_tag": "",
            },
            "hypervisor_uuid": dmi["system-uuid"],
            "env": self._stage_env(),
            "stages": [
                {"name": name, "argv": [python, "-m", "cloudinit.cmd.main", *args]}
                for name, args in STAGES
            ],
            "stage_timeout": self.stage_timeout,
            "wait_reporter": wait_reporter,
            "reporter_lock": REPORTER_LOCK,
            "nic": "eth0" if self.aws_platform else None,
            "relay_ports": self._relay_ports(),
            "relay_dir": str(relay_dir),
        }

    def _run_namespace(
        self, boot_dir: Path, paths: InstancePaths, wait_reporter: Optional[float]
    ) -> dict[str, Any]:
        """Run nsrunner.py under unshare; return its results JSON."""
        relay = _HostRelay(self._relay_ports())
        try:
            plan = self._plan(boot_dir, paths, relay.directory, wait_reporter)
            plan_path = boot_dir / "plan.json"
            plan_path.write_text(json.dumps(plan, indent=2))
            cmd = [
                "unshare", "--mount", "--net", "--pid", "--fork", "--kill-child",
                "--mount-proc", "--uts", "--propagation", "private",
                "--", sys.executable, "-I", str(RUNNER), str(plan_path),
            ]  # fmt: skip
            timeout = self.stage_timeout * len(STAGES) + (wait_reporter or 0) + 60
            with open(boot_dir / "runner.log", "wb") as log:
                try:
                    proc = subprocess.run(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={"PATH": BASE_PATH, "LANG": "C.UTF-8"},
                        timeout=timeout,
                        check=False,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise BootError(f"boot did not finish within {timeout:.0f}s") from exc
        finally:
            relay.close()
        results_path = boot_dir / "results.json"
        runner_log = (boot_dir / "runner.log").read_text(errors="replace")
        if proc.returncode != 0 or not results_path.is_file():
            raise BootError(f"namespace runner failed ({proc.returncode}):\n{runner_log[-4000:]}")
        results: dict[str, Any] = json.loads(results_path.read_text())
        if results.get("setup_error"):
            raise BootError(f"boot setup failed: {results['setup_error']}")
        return results

    def _collect(
        self,
        index: int,
        boot_dir: Path,
        paths: InstancePaths,
        results: Mapping[str, Any],
        log_offsets: Mapping[str, int],
    ) -> BootResult:
        stages = [
            StageResult(
                name=s["name"],
                exit_code=s["exit_code"],
                duration=s["duration"],
                timed_out=s["timed_out"],
                stdout=_read(boot_dir / f"{s['name']}.stdout"),
                stderr=_read(boot_dir / f"{s['name']}.stderr"),
            )
            for s in results["stages"]
        ]
        result = BootResult(
            index=index,
            release=self.release,
            paths=paths,
            boot_dir=boot_dir,
            stages=stages,
            cloud_init_log=_read(paths.var_log / "cloud-init.log", log_offsets["cloud-init.log"]),
            output_log=_read(
                paths.var_log / "cloud-init-output.log", log_offsets["cloud-init-output.log"]
            ),
            status=None,
            result=None,
            reporter=results.get("reporter"),
            leftover_processes=list(results.get("leftover_processes") or []),
        )
        result.status = result.read_json("/run/cloud-init/status.json")
        result.result = result.read_json("/run/cloud-init/result.json")
        return result


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read(path: Path, offset: int = 0) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _ensure_host_mount_points() -> None:
    """Bind targets must exist; create the missing /etc and /var ones (empty).

    ``/run/...`` targets are made inside the boot's own tmpfs instead.
    """
    for target, _ in PERSISTENT_MOUNTS:
        Path(target).mkdir(parents=True, exist_ok=True)
