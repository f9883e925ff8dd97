"""What bosky costs a boot and how fast its verdict arrives, on real cloud-init.

Boots each release several times (clean user data, the stanza in user data)
against the local EventBridge emulator and reports, per release:
- bosky's time inside cloud-init per stage, as cloud-init's own log shows it
  (start:/finish: lines for config-bosky; target <= 20 ms);
- the delay from result.json being written (its mtime) to the event reaching
  the consumer's queue (SQS SentTimestamp; target: median under 1 s);
- the reporter's peak memory (it logs it when it exits).

    .venv/bin/python benchmarks/boot.py [--boots 5] [--releases 25.1.4,22.4.2,20.4.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.boot import Instance  # noqa: E402
from tests.harness.imds import MetadataServer  # noqa: E402
from tests.harness.releases import RELEASE_IDS, ensure_release  # noqa: E402
from tests.support.emulator import EventBridgeEmulator, make_consumer  # noqa: E402

PEAK = re.compile(r"peak memory ([0-9.]+) MB")


def arrivals(consumer: Any, expected: int) -> List[Dict[str, Any]]:
    sqs = consumer.emulator.client("sqs")
    got: List[Dict[str, Any]] = []
    for _ in range(40):
        answer = sqs.receive_message(QueueUrl=consumer.queue_url, MaxNumberOfMessages=10,
                                     WaitTimeSeconds=1, AttributeNames=["SentTimestamp"])
        got += answer.get("Messages", [])
        if len(got) >= expected:
            break
    return got


def bench_release(version: str, boots: int, emulator: EventBridgeEmulator,
                  tmp: Path) -> Dict[str, Any]:
    release = ensure_release(version)
    module_ms: Dict[str, List[float]] = {}
    delays: List[float] = []
    peaks: List[float] = []
    with MetadataServer() as imds:
        imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1")
        for i in range(boots):
            consumer = make_consumer(emulator, pattern={"source": [f"bench-{version}-{i}"]})
            inst = Instance(release, tmp / f"{version}-{i}", imds=imds,
                            env={"AWS_ENDPOINT_URL_EVENTS": emulator.url,
                                 "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url})
            result = inst.boot(user_data=f"#cloud-config\nbosky: {{project: bench-{version}-{i}}}\n"
                               "runcmd:\n  - echo ready\n", wait_reporter=60)
            for stage, seconds in result.module_timings().items():
                module_ms.setdefault(stage, []).append(seconds * 1000)
            written = (inst.paths.var_lib_cloud / "data" / "result.json").stat().st_mtime
            (message,) = arrivals(consumer, 1)
            delays.append(int(message["Attributes"]["SentTimestamp"]) / 1000 - written)
            log = (inst.paths.var_log / "bosky.log").read_text()
            peaks += [float(m) for m in PEAK.findall(log)][-1:]
            consumer.close()
    return {"module_ms": module_ms, "delays": delays, "peaks": peaks}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--releases", default=",".join(RELEASE_IDS))
    args = parser.parse_args()
    with EventBridgeEmulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        for version in args.releases.split(","):
            r = bench_release(version, args.boots, emulator, Path(tmp))
            print(f"cloud-init {version}, {args.boots} boots:")
            for stage, values in r["module_ms"].items():
                print(f"  bosky inside cloud-init, {stage:<14} median "
                      f"{statistics.median(values):5.1f} ms, max {max(values):5.1f} ms "
                      "(target <= 20 ms)")
            d = r["delays"]
            print(f"  result.json written -> event in queue: median {statistics.median(d):.3f} s, "
                  f"max {max(d):.3f} s (target: median < 1 s)")
            if r["peaks"]:
                print(f"  reporter peak memory: median {statistics.median(r['peaks']):.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
