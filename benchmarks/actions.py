"""What acting on the verdict costs a boot, and how fast the hook is completed.

Boots each release with the same stanza twice over, without and with
``lifecycle_hook`` + ``cfn_signal`` (the instance tagged as an Auto Scaling
group made by CloudFormation tags it, its launch hook pending in the Auto
Scaling / CloudFormation emulator), interleaved, and reports per release:
- bosky's time inside cloud-init per stage (cloud-init's own config-bosky
  log lines), with actions against without: the actions must leave it
  unchanged (they are resolved and sent by the reporter, outside cloud-init);
- result.json written (its mtime) -> CompleteLifecycleAction and
  SignalResource arriving at the emulator (target: median under 1 s);
- the reporter's peak memory, with and without.

    .venv/bin/python benchmarks/actions.py [--boots 3] [--releases 25.1.4,22.4.2,20.4.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.boot import FOOTPRINT, arrivals  # noqa: E402
from tests.harness.boot import Instance  # noqa: E402
from tests.harness.imds import MetadataServer  # noqa: E402
from tests.harness.releases import RELEASE_IDS, ensure_release  # noqa: E402
from tests.support.actions_emulator import ActionsEmulator, Hook  # noqa: E402
from tests.support.emulator import EventBridgeEmulator, make_consumer  # noqa: E402

TAGS = {"aws:autoscaling:groupName": "web-asg", "aws:cloudformation:stack-name": "web-stack",
        "aws:cloudformation:logical-id": "WebGroup"}


def one_boot(release: Any, tmp: Path, name: str, acts: bool, emulator: EventBridgeEmulator,
             aws: ActionsEmulator, imds: MetadataServer) -> Dict[str, Any]:
    instance_id = f"i-0{abs(hash(name)) % 16**16:016x}"
    imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1",
                                        instance_id=instance_id, tags=dict(TAGS))
    aws.launch(instance_id, "web-asg")
    consumer = make_consumer(emulator, pattern={"source": [name]})
    stanza: Dict[str, Any] = {"project": name}
    if acts:
        stanza.update(lifecycle_hook="boot-check", cfn_signal=True)
    inst = Instance(release, tmp / name, imds=imds, env={
        "AWS_ENDPOINT_URL_EVENTS": emulator.url, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
        "AWS_ENDPOINT_URL_AUTO_SCALING": aws.url, "AWS_ENDPOINT_URL_CLOUDFORMATION": aws.url})
    result = inst.boot(user_data="#cloud-config\nbosky: " + json.dumps(stanza)
                       + "\nruncmd:\n  - echo ready\n", wait_reporter=60)
    written = (inst.paths.var_lib_cloud / "data" / "result.json").stat().st_mtime
    (message,) = arrivals(consumer, 1)
    consumer.close()
    out: Dict[str, Any] = {
        "module_ms": {k: v * 1000 for k, v in result.module_timings().items()},
        "event": int(message["Attributes"]["SentTimestamp"]) / 1000 - written,
        "peak": [float(m) for _, m in
                 FOOTPRINT.findall((inst.paths.var_log / "bosky.log").read_text())][-1:],
    }
    if acts:
        for op in ("CompleteLifecycleAction", "SignalResource"):
            (call,) = [r for r in aws.ops(op)
                       if instance_id in (r.params.get("InstanceId"), r.params.get("UniqueId"))]
            out[op] = call.at - written
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--releases", default=",".join(RELEASE_IDS))
    args = parser.parse_args()
    with EventBridgeEmulator() as emulator, ActionsEmulator() as aws, \
            MetadataServer() as imds, tempfile.TemporaryDirectory() as tmp:
        aws.add_group("web-asg", [Hook("boot-check")])
        aws.add_stack("web-stack", ["WebGroup"])
        for version in args.releases.split(","):
            release = ensure_release(version)
            runs: Dict[bool, List[Dict[str, Any]]] = {False: [], True: []}
            for i in range(args.boots):
                for acts in (False, True):  # interleaved: the machine's load hits both alike
                    name = f"bench-{version}-{i}-{'acts' if acts else 'plain'}"
                    runs[acts].append(one_boot(release, Path(tmp), name, acts, emulator, aws,
                                               imds))
            print(f"cloud-init {version}, {args.boots} boots each:")
            for stage in sorted(runs[False][0]["module_ms"]):
                plain = statistics.median(r["module_ms"][stage] for r in runs[False])
                acted = statistics.median(r["module_ms"][stage] for r in runs[True])
                print(f"  bosky inside cloud-init, {stage:<13} median {plain:5.1f} ms without "
                      f"actions, {acted:5.1f} ms with: ratio {acted / plain:.2f}")
            for key in ("CompleteLifecycleAction", "SignalResource"):
                values = [r[key] for r in runs[True]]
                print(f"  result.json written -> {key}: median {statistics.median(values):.3f} s,"
                      f" max {max(values):.3f} s (target: median < 1 s)")
            for acts in (False, True):
                events = [r["event"] for r in runs[acts]]
                peaks = [p for r in runs[acts] for p in r["peak"]]
                label = "with" if acts else "without"
                print(f"  {label:>7} actions: result.json -> event median "
                      f"{statistics.median(events):.3f} s; reporter peak memory median "
                      f"{statistics.median(peaks) if peaks else float('nan'):.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
