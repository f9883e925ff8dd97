"""Per-boot state under ``run_dir`` (a tmpfs, so it starts empty every boot).

``reporter.lock`` is held (flock) by the boot reporter for as long as it
runs; ``verdict.json`` keeps the last verdict sent this boot for
``bosky status``; ``sent/`` marks each verdict already delivered or spooled,
so a reporter started twice never reports one boot twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

from .. import files

if TYPE_CHECKING:  # the stage imports this module; it never builds Settings
    from ..config import Settings

LOCK = "reporter.lock"
VERDICT = "verdict.json"
JOB = "job.json"
FINAL_PID = "final-stage.pid"


def path(settings_or_dir: Any, name: str) -> str:
    run_dir = getattr(settings_or_dir, "run_dir", settings_or_dir)
    return os.path.join(str(run_dir), name)


def ensure_run_dir(run_dir: str) -> None:
    """Make ``run_dir`` and ``sent/``, or refuse one another user made
    (:class:`~cc_bosky.files.UnsafePath`)."""
    files.private_dir(run_dir)
    files.private_dir(os.path.join(run_dir, "sent"))


def write_json(file: str, data: Mapping[str, Any]) -> None:
    """Atomically replace ``file``: a reader never sees half of it."""
    write_text(file, json.dumps(data, ensure_ascii=False))


def write_text(file: str, text: str) -> None:
    """Atomically replace ``file`` (mode 0600) with ``text``; a reader, or a
    systemd path unit watching it, sees the whole file or none. Not synced:
    ``run_dir`` is a tmpfs, and what is in it is this boot's only."""
    files.write_atomic(file, text.encode("utf-8"), sync=False)


read_json = files.read_json  # the one reader of a JSON object file


def take_json(file: str) -> Optional[Dict[str, Any]]:
    """Read a JSON object from ``file`` (never through a symlink) and remove
    it: a job holds the stage's environment, credentials may be among it."""
    try:
        raw = files.read_bytes(file, 4 * 1024 * 1024)
    except OSError:
        return None
    with contextlib.suppress(OSError):
        os.unlink(file)
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def mark_sent(run_dir: str, key: str) -> bool:
    """Claim ``key`` (a verdict of this boot); False if it was claimed before."""
    return files.create_new(os.path.join(run_dir, "sent", key))


def was_sent(run_dir: str, key: str) -> bool:
    return os.path.exists(os.path.join(run_dir, "sent", key))


def reporter_running(run_dir: str) -> bool:
    file = os.path.join(run_dir, LOCK)
    if not os.path.exists(file):
        return False
    with contextlib.suppress(OSError):
        fd = files.lock(file)
        if fd is None:
            return True
        os.close(fd)
    return False


def describe(settings: Settings, region: Optional[str] = None) -> Dict[str, Any]:
    """What ``bosky status`` shows: this boot's verdict, the reporter, the spool,
    and where ``bosky flush`` with the same settings (and ``--region``) would
    send each spooled event."""
    from ..delivery.deliverable import listing
    from ..delivery.outbox import flush_target
    from ..delivery.spool import Spool

    spool = Spool(settings.spool_dir, settings.spool_max_events, settings.spool_max_bytes)
    status = spool.status()
    now = time.time()
    return {
        "verdict": read_json(path(settings, VERDICT)),
        "reporter": "running" if reporter_running(settings.run_dir) else "not running",
        "spool": {
            "directory": settings.spool_dir,
            "bytes": status.bytes,
            "dropped": status.dropped,
            "corrupt": status.corrupt,
            "rejected": status.rejected,
            "events": [
                {
                    **listing(r.event).fields(),
                    "AgeSeconds": max(0.0, now - r.spooled_at),
                    "Attempts": r.attempts,
                    "LastError": r.last_error,
                    "InFlight": r.in_flight,
                    "SendsTo": dict(zip(("Region", "EndpointUrl"),
                                        flush_target(r, region, settings.endpoint_url,
                                                     settings.endpoints()))),
                }
                for r in status.records
            ],
        },
    }
