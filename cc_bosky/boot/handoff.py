"""Handing the reporter to systemd, where the stage's own unit may kill it.

Up to cloud-init 24.2 the init stage runs in ``cloud-init.service``, which
keeps systemd's default ``KillMode=control-group``: when that stage exits
non-zero (a failing ``bootcmd``, say) systemd kills every process left in the
unit's cgroup. Whole-machine boots of 20.4.1 and 22.4.2 (tests/vm) showed a
reporter spawned there die, and a boot that then hung never got its
``timeout``. So where systemd is PID 1 and the stage runs in such a unit, the
reporter must run in a unit of its own. Two ways, cheapest first:

1. ``bosky install`` writes ``bosky-reporter.path`` (enabled) and
   ``bosky-reporter.service``. The stage only renames a one-line request
   file into ``/run/bosky``; systemd, watching that path, starts the service.
   No process is started by the stage: it costs a file write.
2. Without those units (bosky not registered with ``bosky install``, or the
   path unit disabled), ``systemd-run`` asks for a transient unit of the same
   name and the stage waits for it to queue the job: about 0.5 s of the stage
   under TCG, tens of ms natively.

Either way the reporter reads its environment from the job, not from argv or
a unit file: no secret in ``/proc/*/cmdline`` or ``/run/systemd/transient``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, List, Mapping, Optional, Tuple

from .. import files
from . import state

LOG = logging.getLogger(__name__)

#: The service's name is fixed, so systemd itself refuses a second reporter
#: while one runs (``systemd-run`` and the path unit start the same name).
REPORTER_UNIT = "bosky-reporter"
PATH_UNIT = f"{REPORTER_UNIT}.path"
SERVICE_UNIT = f"{REPORTER_UNIT}.service"
#: Fixed, whatever ``run_dir`` says: the path unit is written before any
#: config exists. It holds the job file's path; the reporter removes it.
REQUEST_FILE = "/run/bosky/reporter.request"
#: The path unit's enablement link: present means systemd started the unit
#: at this boot (it has no dependency that could fail).
WANTED_BY = "sysinit.target"
ENABLED_LINK = f"/etc/systemd/system/{WANTED_BY}.wants/{PATH_UNIT}"

#: The reporter's nice value while it waits: it yields the CPU to cloud-init
#: and the rest of the boot; it goes back to 0 when a verdict is due.
REPORTER_NICE = 19
_SYSTEMD_RUN = ("/usr/bin/systemd-run", "/bin/systemd-run")
#: cloud-init's units that use KillMode=process on every release (their unit
#: files say so): a child started there outlives the unit whatever its result.
_SPARING_UNITS = (b"cloud-final.service", b"cloud-init-main.service")
# What the reporter needs from the stage's environment: its settings came from
# there too (BOSKY_*, AWS_*), and a proxy a drop-in gave cloud-init applies to it.
_PASSED_ENV = ("AWS_", "BOSKY_", "http_proxy", "https_proxy", "no_proxy",
               "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
#: How the reporter starts, whoever starts it: in ``/``, and with neither
#: ``''`` nor the directory it was started from on its import path. ``python
#: -m`` would put that directory first, and cloud-init run by hand from a
#: directory holding a ``cc_bosky/`` would run that as root. (``-P`` does
#: this from Python 3.11 only; ``-I`` would also drop PYTHONPATH, which an
#: install in a private prefix relies on.)
_REPORTER_CODE = ("import os, sys; started_in = os.getcwd(); os.chdir('/'); "
                  "sys.path[:] = [p for p in sys.path if p not in ('', '.', started_in)]; "
                  "from cc_bosky.boot.reporter import main; sys.exit(main())")


def reporter_argv(python: str, *args: str) -> List[str]:
    """The reporter's command line: ``python -c CODE ARGS`` (see above)."""
    return [python, "-c", _REPORTER_CODE, *args]


def needs_own_unit() -> bool:
    """Whether systemd is PID 1 of this PID namespace and this stage runs in a
    unit that may kill its children (e.g. ``cloud-init.service`` up to 24.2)."""
    try:
        with open("/proc/1/comm", "rb") as f:
            if f.read().strip() != b"systemd" or not os.path.isdir("/run/systemd/system"):
                return False
        with open("/proc/self/cgroup", "rb") as f:
            unit = f.read().strip().rsplit(b"/", 1)[-1]
    except OSError:
        return False
    return unit not in _SPARING_UNITS


def passed_environment(environ: Mapping[str, str]) -> dict:  # type: ignore[type-arg]
    """The part of the stage's environment a reporter in its own unit needs."""
    return {k: v for k, v in environ.items()
            if k.startswith(_PASSED_ENV) and k != "BOSKY_REPORTER_LOCK_FD"}


def request(job_file: str) -> bool:
    """Ask ``bosky-reporter.path`` to start the reporter for ``job_file``;
    False when that unit is not enabled (nothing is written then)."""
    if not os.path.exists(ENABLED_LINK):  # follows the link: the unit file is there too
        return False
    try:
        files.private_dir(os.path.dirname(REQUEST_FILE))
        state.write_text(REQUEST_FILE, job_file)
    except OSError as exc:  # the caller falls back to systemd-run
        LOG.debug("bosky: could not write %s: %s", REQUEST_FILE, exc)
        return False
    return True


def take_request(request_file: str) -> Optional[str]:
    """The job file a request names, removing the request so that the path
    unit does not start the reporter again when it exits."""
    try:
        job_file = files.read_bytes(request_file, 4096).decode("utf-8", "replace").strip()
        os.unlink(request_file)
    except OSError:
        return None
    return job_file or None


def systemd_run(reporter: List[str], null: List[Tuple[Any, ...]]) -> Optional[int]:
    """Start the reporter as a transient unit; the pid of systemd-run once the
    unit is queued, or None (the caller then spawns it directly).

    This waits for systemd-run (it returns as soon as systemd has the job,
    --no-block): the stage may be about to fail, and its cgroup killed with
    every child in it, so the request must have reached systemd before the
    module returns. The reporter takes the lock itself (it is not our child).
    """
    program = next((p for p in _SYSTEMD_RUN if os.access(p, os.X_OK)), None)
    if program is None:
        return None
    # PYTHONPATH acts when the interpreter starts, so the job cannot carry it.
    path = [f"--setenv=PYTHONPATH={os.environ['PYTHONPATH']}"] if "PYTHONPATH" in os.environ else []
    argv = [program, f"--unit={REPORTER_UNIT}", "--no-block", "--collect", "--quiet",
            "--description=bosky boot reporter", "--setenv=BOSKY_REPORTER_UNIT=1",
            f"--nice={REPORTER_NICE}", *path,
            *reporter]
    try:
        pid = os.posix_spawn(program, argv, dict(os.environ), file_actions=null)
        _, status = os.waitpid(pid, 0)
    except OSError as exc:
        LOG.debug("bosky: systemd-run failed: %s", exc)
        return None
    if status != 0:
        LOG.debug("bosky: systemd-run exited with status %s", status)
        return None
    return pid


__all__ = ["ENABLED_LINK", "PATH_UNIT", "REPORTER_UNIT", "REQUEST_FILE", "SERVICE_UNIT",
           "needs_own_unit", "passed_environment", "reporter_argv", "request", "systemd_run",
           "take_request"]
