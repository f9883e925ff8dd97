"""What bosky costs a whole-machine boot: the same image with and without it.

Boots one suite's image under qemu TCG (see tests/vm), alternating a baseline
image that has no bosky at all with the golden image (bosky installed,
registered, the stanza in cloud.cfg.d), both with the same clean user data,
and reports:
- kernel start to ``result.json`` (its mtime against the guest's uptime clock),
  median of each kind and their ratio (target: <= 1.03);
- the reporter's CPU seconds during the boot (it logs them when it exits);
- bosky's own time inside cloud-init per stage (cloud-init's start:/finish:
  lines for config-bosky), which under TCG is several times the native figure.

Alternating the two kinds spreads the machine's other load over both. Needs
root and the VM tier's host packages (./dev installs them).

    ./dev bench vm_boot [--suite bookworm] [--pairs 3]
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.imds import MetadataServer  # noqa: E402
from tests.support.emulator import EventBridgeEmulator, make_consumer  # noqa: E402
from tests.vm import image  # noqa: E402
from tests.vm.machine import Machine  # noqa: E402

CPU = re.compile(r"CPU ([0-9.]+) s")
STAGE = re.compile(r"(\d\d:\d\d:\d\d,\d{3}) - handlers\.py\[DEBUG\]: (start|finish): "
                   r"([\w-]+)/config-bosky")
USER_DATA = b"#!/bin/sh\necho app 1.4.2 installed and healthy\n"


def bosky_ms(log: str) -> Dict[str, float]:
    """Milliseconds between config-bosky's start: and finish: lines, per stage."""
    started: Dict[str, datetime] = {}
    took: Dict[str, float] = {}
    for stamp, kind, stage in STAGE.findall(log):
        at = datetime.strptime(stamp, "%H:%M:%S,%f")
        if kind == "start":
            started[stage] = at
        elif stage in started:
            took[stage] = (at - started[stage]).total_seconds() * 1000
    return took


def one_boot(disk: image.Disk, emulator: EventBridgeEmulator, work: Path,
             with_bosky: bool) -> Dict[str, object]:
    instance_id = "i-0" + secrets.token_hex(8)
    with MetadataServer(instance_id=instance_id, region="us-east-1",
                        user_data=USER_DATA) as imds:
        consumer = make_consumer(emulator, pattern={"detail": {"InstanceId": [instance_id]}})
        vm = Machine(disk, work, imds.port, int(emulator.url.rsplit(":", 1)[1]), instance_id,
                     imds.metadata.mac)
        try:
            vm.boot()
            report = vm.wait_report()
            got = consumer.receive(1, timeout=60) if with_bosky else []
        finally:
            vm.close()
            consumer.close()
    cpu: Optional[float] = None
    found = CPU.findall(report["bosky-log"])
    if found:
        cpu = float(found[-1])
    return {"result_s": float(report["result-timing"].split()[0]), "cpu_s": cpu,
            "events": len(got), "bosky_ms": bosky_ms(report["cloud-init-log-bosky"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="bookworm", choices=sorted(image.SUITES))
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    suite = image.SUITES[args.suite]
    artifacts = image.build_artifacts()
    disks = {True: image.disk(suite, artifacts, golden=True),
             False: image.disk(suite, artifacts, with_bosky=False)}
    runs: Dict[bool, List[Dict[str, object]]] = {True: [], False: []}
    with EventBridgeEmulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for with_bosky in (False, True):
                run = one_boot(disks[with_bosky], emulator, Path(tmp) / f"{i}-{with_bosky}",
                               with_bosky)
                runs[with_bosky].append(run)
                print(f"  boot {i + 1} {'bosky   ' if with_bosky else 'baseline'}: "
                      f"result.json at {run['result_s']:.1f} s, reporter CPU "
                      f"{run['cpu_s'] if run['cpu_s'] is not None else '-'} s, "
                      f"events {run['events']}, bosky in cloud-init {run['bosky_ms']}",
                      flush=True)
    base = statistics.median(float(r["result_s"]) for r in runs[False])  # type: ignore[arg-type]
    with_ = statistics.median(float(r["result_s"]) for r in runs[True])  # type: ignore[arg-type]
    cpus = [float(r["cpu_s"]) for r in runs[True] if r["cpu_s"] is not None]  # type: ignore[arg-type]
    print(f"{suite.name} (cloud-init {suite.cloud_init}), {args.pairs} pair(s) of boots, TCG:")
    print(f"  kernel start to result.json: baseline median {base:.1f} s, with bosky "
          f"{with_:.1f} s: ratio {with_ / base:.3f} (target <= 1.03)")
    if cpus:
        print(f"  reporter CPU during the boot: median {statistics.median(cpus):.2f} s "
              f"({statistics.median(cpus) / with_ * 100:.1f}% of the boot's wall time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
