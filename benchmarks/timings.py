"""What SlowestModules costs the reporter, against cloud-init's own reader.

Boots each release once to get a real /var/log/cloud-init.log, then, in that
release's own Python (the reporter runs in cloud-init's interpreter), times
whole processes, median of N:
- baseline: ``import cc_bosky.boot.verdict`` (what the reporter has loaded anyway);
- bosky: ``cc_bosky.boot.timings.fields`` on the log, and on the log repeated
  up to the 1 MiB read cap;
- cloud-init: ``cloudinit.analyze.dump.dump_events`` on the same log.
Prints wall time and peak RSS of each, and the extra over the baseline.

    .venv/bin/python benchmarks/timings.py [--runs 5] [--releases 25.1.4,22.4.2,20.4.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.boot import Instance  # noqa: E402
from tests.harness.imds import MetadataServer  # noqa: E402
from tests.harness.releases import RELEASE_IDS, Release, ensure_release  # noqa: E402

# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would
# report at least the forking parent's size.
PROBE = """
import sys, time
t = time.perf_counter()
import cc_bosky.boot.verdict  # the reporter has this loaded already
{body}
took = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print("[%f, %f]" % (took, int(hwm) / 1024))
"""
CASES = {
    "baseline (reporter's verdict)": "pass",
    "bosky timings": "from cc_bosky.boot import timings\ntimings.fields(None, sys.argv[1])",
    "bosky timings, 1 MiB log": "from cc_bosky.boot import timings\n"
                                "timings.fields(None, sys.argv[2])",
    "cloudinit.analyze.dump": "from cloudinit.analyze.dump import dump_events\n"
                              "dump_events(rawdata=open(sys.argv[1]).read())",
}


def real_log(release: Release, tmp: Path) -> Path:
    with MetadataServer() as imds:
        imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1")
        inst = Instance(release, tmp / release.version, imds=imds)
        inst.boot(user_data="#!/bin/sh\necho hello\n")
    return inst.paths.var_log / "cloud-init.log"


def run(release: Release, body: str, log: Path, big: Path) -> Tuple[float, float]:
    proc = subprocess.run([str(release.python), "-c", PROBE.format(body=body), str(log),
                           str(big)], capture_output=True, text=True, check=True, timeout=120,
                          env={"PYTHONPATH": release.pythonpath(), "PATH": "/usr/bin:/bin"})
    seconds, mb = json.loads(proc.stdout)
    return float(seconds), float(mb)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--releases", default=",".join(RELEASE_IDS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for version in args.releases.split(","):
            release = ensure_release(version)
            log = real_log(release, tmp)
            text = log.read_text()
            big = tmp / f"{version}-big.log"
            big.write_text((text * (1024 * 1024 // len(text) + 1))[: 1024 * 1024 - 1])
            print(f"cloud-init {version}: cloud-init.log {len(text) // 1024} KB, "
                  f"median of {args.runs}")
            results: Dict[str, Tuple[float, float]] = {}
            for name, body in CASES.items():
                samples: List[Tuple[float, float]] = [run(release, body, log, big)
                                                      for _ in range(args.runs)]
                results[name] = (statistics.median(s[0] for s in samples),
                                 statistics.median(s[1] for s in samples))
            base_s, base_mb = results["baseline (reporter's verdict)"]
            for name, (seconds, mb) in results.items():
                extra = "" if name.startswith("baseline") else \
                    f"  (+{(seconds - base_s) * 1000:6.1f} ms, +{mb - base_mb:5.1f} MB)"
                print(f"  {name:30s} {seconds * 1000:7.1f} ms {mb:6.1f} MB{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
