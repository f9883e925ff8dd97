"""Is cloud-init still at work? For the boots that end with no result.json.

cloud-init writes ``result.json`` only at the end of its final stage; a
stage that is killed, crashes or runs out of memory writes nothing. The
reporter then has to tell "still running" from "gone" to send a ``fail``
instead of waiting for its give-up time.
"""

from __future__ import annotations

import os
from typing import Optional

from . import verdict

# How cloud-init's own processes show in /proc/PID/cmdline: the console script
# (/usr/bin/cloud-init) or the module (python -m cloudinit.cmd.main).
_CLOUD_INIT_CMDLINE = (b"cloud-init", b"cloudinit.cmd.main")


class CloudInitWatch:
    """Watches cloud-init's processes; ``final_pid_file`` is where the module
    noted the final stage's pid (the stage that writes result.json)."""

    def __init__(self, final_pid_file: str) -> None:
        self.final_pid_file = final_pid_file
        self._pid: Optional[int] = None

    def vanished(self, records: verdict.Records) -> Optional[str]:
        """Why cloud-init looks gone without finishing, or None.

        Either the final stage's process has exited, or a stage that
        status.json says is running has no cloud-init process left.
        """
        if self._final_stage_gone():
            return "the final stage's process exited and no result.json followed"
        stage = verdict.current_stage(records.status)
        if stage and not self._running():
            return f"stage {stage} started but no cloud-init process is running"
        return None

    def _running(self) -> bool:
        # The pid found last time is checked first: a scan of all of /proc on
        # every poll was most of the reporter's CPU during a boot.
        if self._pid and is_cloud_init(self._pid):
            return True
        found = find_cloud_init()
        self._pid = found if found and found > 0 else None
        return found is not None

    def _final_stage_gone(self) -> bool:
        try:
            with open(self.final_pid_file, encoding="ascii") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return False
        return not alive(pid)


def find_cloud_init() -> Optional[int]:
    """The pid of a running cloud-init process, None if there is none, -1 if /proc
    cannot be read (then it is assumed to run: the deadline still applies)."""
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
    except OSError:
        return -1
    return next((pid for pid in pids if is_cloud_init(pid)), None)


def is_cloud_init(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read(4096)
    except OSError:
        return False
    return any(name in cmdline for name in _CLOUD_INIT_CMDLINE) and alive(pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not running cloud-init any more.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            status = f.read(4096)
    except OSError:
        status = ""
    return ") Z " not in status


__all__ = ["CloudInitWatch", "alive", "find_cloud_init", "is_cloud_init"]
