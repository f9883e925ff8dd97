"""What the cloud-init module does inside a stage: check the config, start the reporter.

This runs inside cloud-init's process, so it must be quick (a median under
10 ms, never over 20 ms: benchmarks/boot.py) and must never raise into
cloud-init: it checks its settings' layers (for the one WARNING a bad key
gets), hands the valid keys to the background reporter, and returns. It
imports no dataclasses and builds no Settings: the reporter does. The
reporter is a separate process because the verdict only exists after
cloud-init's last module has run.

Where systemd is PID 1 and the stage's unit may kill what it leaves behind
(``cloud-init.service`` up to 24.2), the reporter runs in a unit of its own
(:mod:`~cc_bosky.boot.handoff`); elsewhere (containers, the namespace test
tier, and cloud-init's units with KillMode=process) it is ``posix_spawn``-ed
in its own session.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from .. import files, layers
from ..errors import ConfigError
from ..text import printable
from . import handoff, state

if TYPE_CHECKING:
    from ..config import Settings

LOG = logging.getLogger(__name__)
CLOUD_RUN_DIR = "/run/cloud-init"
CLOUD_DATA_DIR = "/var/lib/cloud"
#: How bosky's own WARNING about its configuration begins; the reporter knows
#: it in cloud-init's recoverable errors (23.4+) and does not count it.
CONFIG_WARNING = "bosky: ignoring invalid configuration: "
#: The most of it cloud-init's log gets.
LOG_LINE_MAX = 4000


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
                   cloud_init_version: Optional[str] = None) -> Optional[str]:
    """Start this boot's reporter unless one runs already; returns how it was
    started (for cloud-init's log), or None when one was running."""
    valid, problems = boot_layers(stanza, os.environ)
    run_dir = str(valid.get("run_dir") or layers.default("run_dir"))
    state.ensure_run_dir(run_dir)
    in_final = current_stage(cloud_run_dir) == "modules-final"
    if in_final:
        # Lets the reporter tell "still running" from "gone without result.json".
        _write(state.path(run_dir, state.FINAL_PID), str(os.getpid()))
    lock = files.lock(state.path(run_dir, state.LOCK))
    if lock is None:
        LOG.debug("bosky: reporter already running for this boot")
        return None
    if problems:  # once per boot: only the stage that starts the reporter says it
        # The values in it are the user's: one line in cloud-init's log, clipped.
        LOG.warning("%s%s", CONFIG_WARNING, printable("; ".join(problems))[:LOG_LINE_MAX])
    own_unit = handoff.needs_own_unit()
    try:
        job = {
            "settings": valid,  # the reporter builds its Settings from these
            "config_warnings": problems,
            "cloud_run_dir": cloud_run_dir,
            "cloud_data_dir": cloud_data_dir,
            "cloud_init_version": cloud_init_version,
            "started_in": "modules-final" if in_final else "early",
        }
        if own_unit:  # systemd starts it with its own environment, not the stage's
            job["environ"] = handoff.passed_environment(os.environ)
        job_file = state.path(run_dir, state.JOB)
        state.write_json(job_file, job)
        return _spawn(job_file, lock, own_unit)
    finally:
        os.close(lock)  # the reporter holds the lock through its own copy


def _spawn(job_file: str, lock: int, own_unit: bool) -> str:
    """Start the reporter: in a unit of its own when ``own_unit``, else in its
    own session holding ``lock``; /dev/null for its standard streams.

    posix_spawn, not subprocess: on Python 3.9 (cloud-init 20.x and 21.x)
    subprocess forks, and copying the page tables of cloud-init's large
    process costs ~30 ms of the stage; posix_spawn uses vfork on every version.
    """
    null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    reporter = handoff.reporter_argv(sys.executable, job_file)
    if own_unit:
        if handoff.request(job_file):
            return f"by {handoff.PATH_UNIT}"
        pid = handoff.systemd_run(reporter, null)
        if pid:
            return f"as {handoff.SERVICE_UNIT} (systemd-run)"
    env = dict(os.environ, BOSKY_REPORTER_LOCK_FD=str(lock))
    os.set_inheritable(lock, True)  # every other fd of cloud-init stays close-on-exec
    return f"pid {os.posix_spawn(sys.executable, reporter, env, file_actions=null, setsid=True)}"


def _write(file: str, text: str) -> None:
    files.write_atomic(file, text.encode(), sync=False)


__all__ = ["CONFIG_WARNING", "boot_layers", "boot_settings", "start_reporter"]
