"""A fleet's worth of boot verdicts, made the way the boot reporter makes them.

Each event comes from cloud-init records in the shapes the real releases write
(tests/test_verdict.py's samples of 20.4.1/22.4.2 and 25.1.4), read by
bosky's own verdict and timing code and built with the one event model, then
sent with bosky's own sender: what a consumer's log group holds after a
morning of boots, without booting hundreds of instances.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from cc_bosky.boot import timings, verdict
from cc_bosky.delivery.sender import Target, put_events
from cc_bosky.event import Event, make_event, stable_event_id

SCRIPT_FAILED = ("('{module}', RuntimeError('Runparts: 1 failures (part-001) "
                 "in 1 attempted commands'))")
_LINE = ("2026-12-01 08:{m:02d}:{s:02d},{ms:03d} - handlers.py[DEBUG]: {kind}: {stage}/"
         "config-{module}: {rest}")


def _status(start: float, seconds: float, finished: bool) -> Dict[str, Any]:
    """status.json as 25.x writes it (uptime seconds), the final stage ``seconds`` long."""
    stages = {"init-local": (start, start + 0.3), "init": (start + 0.5, start + 0.9),
              "modules-config": (start + 1.0, start + 1.2),
              "modules-final": (start + 1.3, start + 1.3 + seconds)}
    v1: Dict[str, Any] = {name: {"errors": [], "recoverable_errors": {}, "start": a,
                                 "finished": b} for name, (a, b) in stages.items()}
    if not finished:
        v1["modules-final"]["finished"] = None
        v1["stage"] = "modules-final"
    else:
        v1["stage"] = None
    v1["datasource"] = "DataSourceEc2Local"
    return {"v1": v1}


def _log(modules: Mapping[str, float]) -> str:
    lines = []
    for i, (module, seconds) in enumerate(modules.items()):
        for kind, offset, rest in (("start", 0.0, "running"), ("finish", seconds, "SUCCESS: ran")):
            at = i * 100 + offset
            lines.append(_LINE.format(m=int(at // 60) % 60, s=int(at % 60),
                                      ms=int(at * 1000) % 1000, kind=kind,
                                      stage="modules-final", module=module, rest=rest))
    return "\n".join(lines) + "\n"


def boot_event(project: str, status: str, *, image: str, instance_type: str,
               instance_id: str, boot_seconds: float, failed: Optional[str] = None,
               log_tail: Sequence[str] = (), region: str = "us-east-1",
               boot_id: Optional[str] = None) -> Event:
    """One boot's verdict event, from records on disk through bosky's own readers."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        finished = status != "timeout"
        (run / "status.json").write_text(json.dumps(_status(100.0, boot_seconds - 1.3, finished)))
        errors = [SCRIPT_FAILED.format(module=failed)] if status == "fail" and failed else []
        if finished:
            result: Dict[str, Any] = {"v1": {"datasource": "DataSourceEc2Local",
                                             "errors": errors}}
            if status == "degraded":
                result["v1"]["recoverable_errors"] = {"WARNING": ["apt mirror slow"]}
            (run / "result.json").write_text(json.dumps(result))
        modules = {"scripts_user": boot_seconds * 0.6, "package_update_upgrade_install":
                   boot_seconds * 0.25, "runcmd": 0.4, "bosky": 0.01}
        (run / "cloud-init.log").write_text(_log(modules))
        records = verdict.read_records(str(run))
        found = (verdict.final_verdict(records) if finished else
                 verdict.timeout_verdict(records, 600.0, 601.0))
        extra: Dict[str, Any] = dict(found.fields)
        extra.update(timings.fields(records.status, str(run / "cloud-init.log")))
        if log_tail:
            extra["LogTail"] = list(log_tail)
    identity = {"InstanceId": instance_id, "AccountId": "123456789012", "Region": region,
                "AvailabilityZone": f"{region}a", "InstanceType": instance_type,
                "ImageId": image, **({"BootId": boot_id} if boot_id else {})}
    return make_event(source=project, detail_type="User Data", status=found.status,
                      message=found.message, identity=identity, origin="boot",
                      resources=(f"arn:aws:ec2:{region}:123456789012:instance/{instance_id}",),
                      extra=extra, event_id=stable_event_id(instance_id, boot_id or "-", status))


def morning_of_boots(project: str, count: int, seed: int = 7) -> List[Event]:
    """``count`` verdicts over two images and two instance types; the new image
    fails scripts_user on a third of its boots, one boot in twenty times out."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        image = "ami-0aaaaaaaaaaaaaaa1" if n % 2 else "ami-0bbbbbbbbbbbbbbb2"
        instance_type = "t3.micro" if n % 3 else "m7g.large"
        roll = rng.random()
        if n % 20 == 0:
            status, failed = "timeout", None
        elif image.endswith("2") and roll < 0.33:
            status, failed = "fail", "scripts_user" if roll < 0.25 else "runcmd"
        elif roll > 0.95:
            status, failed = "degraded", None
        else:
            status, failed = "pass", None
        tail = ["fetching s3://releases/app-1.4.2.tar.gz", "download failed: HTTP 404 Not Found"] \
            if status == "fail" else ["app started"]
        events.append(boot_event(project, status, image=image, instance_type=instance_type,
                                 instance_id=f"i-{n:017x}", failed=failed, log_tail=tail,
                                 boot_id=f"{n:08x}-0000-4000-8000-000000000000",
                                 boot_seconds=round(20 + rng.random() * 40, 2)))
    return events


def send_all(events: Sequence[Event], endpoint_url: str, environ: Mapping[str, str],
             region: str = "us-east-1") -> None:
    """PutEvents through bosky's one sender; every entry must be accepted."""
    outcomes = put_events([e.entry() for e in events], Target(region, endpoint_url, 60.0),
                          environ)
    refused = [o.reason() for o in outcomes if not o.delivered]
    assert not refused, refused[:3]
