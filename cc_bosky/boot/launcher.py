"""What the cloud-init module does inside a stage: settle config, start the reporter.

This runs inside cloud-init's process, so it must be quick (well under 20 ms)
and must never raise into cloud-init: it reads its settings, starts the
background reporter, and returns. The reporter is a separate process in its
own session because the verdict only exists after cloud-init's last module
has run (cloud-init's units use KillMode=process, so it outlives the stage).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .. import config
from ..errors import ConfigError
from . import state

LOG = logging.getLogger(__name__)
CLOUD_RUN_DIR = "/run/cloud-init"
CLOUD_DATA_DIR = "/var/lib/cloud"


def boot_settings(stanza: Any, environ: Mapping[str, str],
                  base_file: str = config.DEFAULT_CONFIG_FILE
                  ) -> Tuple[config.Settings, List[str]]:
    """Settings for this boot: defaults, ``/etc/bosky/config.yaml``, the
    environment (e.g. ``AWS_ENDPOINT_URL_EVENTS``), then the cloud-config
    stanza, the most specific; invalid keys are dropped and reported, not fatal."""
    problems: List[str] = []
    layers: List[Dict[str, Any]] = []
    for origin in (base_file, "environment"):
        try:
            raw = (config.read_file(base_file, required=False) if origin == base_file
                   else config.from_env(environ))
            good, bad = config.lenient(raw, origin)
        except ConfigError as exc:
            good, bad = {}, [str(exc)]
        layers.append(good)
        problems += bad
    from_stanza, bad = config.lenient({} if stanza is None else stanza, "bosky")
    return config.build(*layers, from_stanza), problems + bad


def current_stage(cloud_run_dir: str) -> Optional[str]:
    """The stage cloud-init is running now, as its status.json says."""
    record = state.read_json(os.path.join(cloud_run_dir, "status.json"))
    stage = (record or {}).get("v1", {}).get("stage")
    return stage if isinstance(stage, str) else None


def start_reporter(stanza: Any, cloud_run_dir: str = CLOUD_RUN_DIR,
                   cloud_data_dir: str = CLOUD_DATA_DIR,
                   cloud_init_version: Optional[str] = None) -> Optional[int]:
    """Start this boot's reporter unless one runs already; returns its pid."""
    settings, problems = boot_settings(stanza, os.environ)
    state.ensure_run_dir(settings.run_dir)
    in_final = current_stage(cloud_run_dir) == "modules-final"
    if in_final:
        # Lets the reporter tell "still running" from "gone without result.json".
        _write(state.path(settings, state.FINAL_PID), str(os.getpid()))
    lock = state.try_lock(state.path(settings, state.LOCK))
    if lock is None:
        LOG.debug("bosky: reporter already running for this boot")
        return None
    if problems:  # once per boot: only the stage that starts the reporter says it
        LOG.warning("bosky: ignoring invalid configuration: %s", "; ".join(problems))
    try:
        job = {
            "settings": _as_json(settings),
            "config_warnings": problems,
            "cloud_run_dir": cloud_run_dir,
            "cloud_data_dir": cloud_data_dir,
            "cloud_init_version": cloud_init_version,
            "started_in": "modules-final" if in_final else "early",
        }
        job_file = state.path(settings, state.JOB)
        state.write_json(job_file, job)
        return _spawn(job_file, lock)
    finally:
        os.close(lock)  # the reporter holds the lock through its own copy


def _spawn(job_file: str, lock: int) -> int:
    """Start the reporter in its own session, holding ``lock``, with /dev/null
    for its standard streams.

    posix_spawn, not subprocess: on Python 3.9 (cloud-init 20.x and 21.x)
    subprocess forks, and copying the page tables of cloud-init's large
    process costs ~30 ms of the stage; posix_spawn uses vfork on every version.
    """
    env = dict(os.environ, BOSKY_REPORTER_LOCK_FD=str(lock))
    os.set_inheritable(lock, True)  # every other fd of cloud-init stays close-on-exec
    null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    argv = [sys.executable, "-m", "cc_bosky.boot.reporter", job_file]
    return os.posix_spawn(sys.executable, argv, env, file_actions=null, setsid=True)


def _as_json(settings: config.Settings) -> Mapping[str, Any]:
    import dataclasses

    data = dataclasses.asdict(settings)
    data["send"] = list(settings.send)
    return data


def _write(file: str, text: str) -> None:
    with open(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)


__all__ = ["boot_settings", "start_reporter"]
