"""What the cloud-init module does inside a stage: check the config, start the reporter.

This runs inside cloud-init's process, so it must be quick (a median under
10 ms, never over 20 ms: benchmarks/boot.py) and must never raise into
cloud-init: it checks its settings' layers (for the one WARNING a bad key
gets), hands the valid keys to the background reporter, and returns. It
imports no dataclasses and builds no Settings: the reporter does. The
reporter is a separate process because the verdict only exists after
cloud-init's last module has run.

Where systemd is PID 1 the reporter is started as its own transient unit
(``systemd-run --unit=bosky-reporter``), not as a child of the stage: up to
cloud-init 24.2, ``cloud-init.service`` (the init stage) keeps systemd's
default ``KillMode=control-group``, and when that stage exits non-zero (a
failing ``bootcmd``, say) systemd kills every process left in its cgroup --
seen on whole-machine boots of 20.4.1 and 22.4.2 (tests/vm), where such a
boot that then hung never got its ``timeout``. A unit of its own survives
every outcome of cloud-init's units. Elsewhere (containers, the namespace
test tier, and cloud-init's units with KillMode=process) the reporter is
``posix_spawn``-ed in its own session.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from .. import layers
from ..errors import ConfigError
from . import state

if TYPE_CHECKING:
    from ..config import Settings

LOG = logging.getLogger(__name__)
CLOUD_RUN_DIR = "/run/cloud-init"
CLOUD_DATA_DIR = "/var/lib/cloud"
#: How bosky's own WARNING about its configuration begins; the reporter knows
#: it in cloud-init's recoverable errors (23.4+) and does not count it.
CONFIG_WARNING = "bosky: ignoring invalid configuration: "


def boot_layers(stanza: Any, environ: Mapping[str, str],
                base_file: str = layers.DEFAULT_CONFIG_FILE
                ) -> Tuple[Dict[str, Any], List[str]]:
    """The valid keys of this boot's layers, merged: ``/etc/bosky/config.yaml``,
    the environment (e.g. ``AWS_ENDPOINT_URL_EVENTS``), then the cloud-config
    stanza, the most specific; invalid keys are dropped and reported, not fatal.

    No :class:`~cc_bosky.config.Settings` here: the stage only checks the
    layers (for its one WARNING) and the reporter builds the settings.
    """
    readers: Tuple[Tuple[str, Callable[[], Any]], ...] = (
        (base_file, lambda: layers.read_file(base_file, required=False)),
        ("environment", lambda: layers.from_env(environ)),
        ("bosky", lambda: {} if stanza is None else stanza),
    )
    problems: List[str] = []
    merged: Dict[str, Any] = {}
    for origin, read in readers:
        try:
            good, bad = layers.lenient(read(), origin)
        except ConfigError as exc:
            good, bad = {}, [str(exc)]
        merged.update((k, v) for k, v in good.items() if v is not None)
        problems += bad
    return merged, problems


def boot_settings(stanza: Any, environ: Mapping[str, str],
                  base_file: str = layers.DEFAULT_CONFIG_FILE) -> Tuple[Settings, List[str]]:
    """The settings the reporter will run with, and the problems the stage reports."""
    from .. import config

    merged, problems = boot_layers(stanza, environ, base_file)
    return config.build(merged), problems


def current_stage(cloud_run_dir: str) -> Optional[str]:
    """The stage cloud-init is running now, as its status.json says."""
    record = state.read_json(os.path.join(cloud_run_dir, "status.json"))
    stage = (record or {}).get("v1", {}).get("stage")
    return stage if isinstance(stage, str) else None


def start_reporter(stanza: Any, cloud_run_dir: str = CLOUD_RUN_DIR,
                   cloud_data_dir: str = CLOUD_DATA_DIR,
                   cloud_init_version: Optional[str] = None) -> Optional[int]:
    """Start this boot's reporter unless one runs already; returns its pid."""
    valid, problems = boot_layers(stanza, os.environ)
    run_dir = str(valid.get("run_dir") or layers.default("run_dir"))
    state.ensure_run_dir(run_dir)
    in_final = current_stage(cloud_run_dir) == "modules-final"
    if in_final:
        # Lets the reporter tell "still running" from "gone without result.json".
        _write(state.path(run_dir, state.FINAL_PID), str(os.getpid()))
    lock = state.try_lock(state.path(run_dir, state.LOCK))
    if lock is None:
        LOG.debug("bosky: reporter already running for this boot")
        return None
    if problems:  # once per boot: only the stage that starts the reporter says it
        LOG.warning("%s%s", CONFIG_WARNING, "; ".join(problems))
    try:
        job = {
            "settings": valid,  # the reporter builds its Settings from these
            "config_warnings": problems,
            "cloud_run_dir": cloud_run_dir,
            "cloud_data_dir": cloud_data_dir,
            "cloud_init_version": cloud_init_version,
            "started_in": "modules-final" if in_final else "early",
        }
        job_file = state.path(run_dir, state.JOB)
        state.write_json(job_file, job)
        return _spawn(job_file, lock)
    finally:
        os.close(lock)  # the reporter holds the lock through its own copy


def _spawn(job_file: str, lock: int) -> int:
    """Start the reporter: as its own systemd unit where systemd is PID 1, else
    in its own session holding ``lock``; /dev/null for its standard streams.

    posix_spawn, not subprocess: on Python 3.9 (cloud-init 20.x and 21.x)
    subprocess forks, and copying the page tables of cloud-init's large
    process costs ~30 ms of the stage; posix_spawn uses vfork on every version.
    """
    null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    reporter = [sys.executable, "-m", "cc_bosky.boot.reporter", job_file]
    systemd_run = _systemd_run()
    if systemd_run:
        pid = _start_unit(systemd_run, reporter, null)
        if pid:
            return pid
    env = dict(os.environ, BOSKY_REPORTER_LOCK_FD=str(lock))
    os.set_inheritable(lock, True)  # every other fd of cloud-init stays close-on-exec
    return os.posix_spawn(sys.executable, reporter, env, file_actions=null, setsid=True)


#: The unit's name is fixed, so systemd itself refuses a second reporter
#: while one runs; --collect frees the name when it exits, however it exits.
REPORTER_UNIT = "bosky-reporter"
_SYSTEMD_RUN = ("/usr/bin/systemd-run", "/bin/systemd-run")
# What the reporter needs from the stage's environment: its settings came from
# there too (BOSKY_*, AWS_*), and a proxy a drop-in gave cloud-init applies to it.
_PASSED_ENV = ("AWS_", "BOSKY_", "PYTHONPATH", "http_proxy", "https_proxy", "no_proxy",
               "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


#: cloud-init's units that use KillMode=process on every release (their unit
#: files say so): a child started there outlives the unit whatever its result,
#: so the reporter is spawned directly and the stage pays nothing more.
_SPARING_UNITS = (b"cloud-final.service", b"cloud-init-main.service")


def _systemd_run() -> Optional[str]:
    """systemd-run's path when systemd is PID 1 of this PID namespace and this
    stage runs in a unit that may kill its children (e.g. ``cloud-init.service``
    up to 24.2), else None."""
    try:
        with open("/proc/1/comm", "rb") as f:
            if f.read().strip() != b"systemd" or not os.path.isdir("/run/systemd/system"):
                return None
        with open("/proc/self/cgroup", "rb") as f:
            unit = f.read().strip().rsplit(b"/", 1)[-1]
    except OSError:
        return None
    if unit in _SPARING_UNITS:
        return None
    return next((p for p in _SYSTEMD_RUN if os.access(p, os.X_OK)), None)


def _start_unit(systemd_run: str, reporter: List[str],
                null: List[Tuple[Any, ...]]) -> Optional[int]:
    """Start the reporter as a transient unit; the pid of systemd-run once the
    unit is queued, or None (the caller then falls back to posix_spawn).

    This waits for systemd-run (it returns as soon as systemd has the job,
    --no-block): the stage may be about to fail, and its cgroup killed with
    every child in it, so the request must have reached systemd before the
    module returns. The reporter takes the lock itself (it is not our child).
    """
    setenv = [f"--setenv={k}={v}" for k, v in os.environ.items()
              if k.startswith(_PASSED_ENV) and k != "BOSKY_REPORTER_LOCK_FD"]
    argv = [systemd_run, f"--unit={REPORTER_UNIT}", "--no-block", "--collect", "--quiet",
            "--description=bosky boot reporter", "--setenv=BOSKY_REPORTER_UNIT=1", *setenv,
            *reporter]
    try:
        pid = os.posix_spawn(systemd_run, argv, dict(os.environ), file_actions=null)
        _, status = os.waitpid(pid, 0)
    except OSError as exc:
        LOG.debug("bosky: systemd-run failed: %s", exc)
        return None
    if status != 0:
        LOG.debug("bosky: systemd-run exited with status %s", status)
        return None
    return pid


def _write(file: str, text: str) -> None:
    with open(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)


__all__ = ["CONFIG_WARNING", "boot_layers", "boot_settings", "start_reporter"]
