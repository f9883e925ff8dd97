"""bosky's main job on an embedded default: no AWS account, no EC2.

Starts a local EventBridge emulator (moto) with a rule using the documented
pattern and an SQS queue as its target, then boots a real cloud-init release
twice in a sandbox (private namespaces, a metadata emulator for the Ec2
datasource): once with a user-data script that fails, once with one that
works. bosky reports each boot; this prints what the consumer receives.

    ./dev demo [--release 25.1.4] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from tests.harness.boot import Instance
from tests.harness.imds import MetadataServer
from tests.harness.releases import ALL_IDS, compile_bosky, ensure_release
from tests.support.emulator import EventBridgeEmulator, make_consumer

PROJECT = "bosky-demo"
FAILING = """#!/bin/bash
echo "fetching s3://releases/app-1.4.2.tar.gz"
echo "download failed: HTTP 404 Not Found" >&2
exit 1
"""
CLEAN = """#!/bin/bash
echo "app 1.4.2 installed and healthy"
"""


def user_data(script: str) -> str:
    return "\n".join([
        'Content-Type: multipart/mixed; boundary="DEMO"', "MIME-Version: 1.0", "",
        "--DEMO", "Content-Type: text/cloud-config", "",
        "#cloud-config", "bosky:", f"  project: {PROJECT}", "",
        "--DEMO", "Content-Type: text/x-shellscript", "", script,
        "--DEMO--", "",
    ])


def boot(release: Any, imds: MetadataServer, root: Path, name: str, instance_id: str,
         script: str, emulator: EventBridgeEmulator) -> None:
    imds.metadata = dataclasses.replace(imds.metadata, instance_id=instance_id,
                                        region="us-east-1")
    env = {"AWS_ENDPOINT_URL_EVENTS": emulator.url,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
    inst = Instance(release, root / name, imds=imds, env=env)
    print(f"booting {name} ({instance_id}) with cloud-init {release.version}...",
          file=sys.stderr)
    result = inst.boot(user_data=user_data(script), wait_reporter=60)
    print(f"  stages: {result.exit_codes}; bosky's time inside cloud-init: "
          f"{ {k: f'{v * 1000:.0f} ms' for k, v in result.module_timings().items()} }",
          file=sys.stderr)


def summary(event: Dict[str, Any]) -> str:
    d = event["detail"]
    lines = [f"{d['Status'].upper():5} {d['InstanceId']}  {d['Message']}"]
    if d.get("FailedModules"):
        lines.append(f"      failed modules: {', '.join(d['FailedModules'])}")
    for line in [ln for ln in d.get("LogTail") or [] if _from_the_script(ln)][-3:]:
        lines.append(f"      | {line}")
    return "\n".join(lines)


def _from_the_script(line: str) -> bool:
    """Log-tail lines the user-data script printed, not cloud-init's own."""
    return not (line.startswith(("Cloud-init v.", "ci-info:")) or " - " in line[:30])


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", default="25.1.4", choices=ALL_IDS)
    parser.add_argument("--json", action="store_true", help="print the whole events")
    args = parser.parse_args(argv)
    release = ensure_release(args.release)
    compile_bosky(release)
    with EventBridgeEmulator() as emulator, MetadataServer() as imds, \
            tempfile.TemporaryDirectory(prefix="bosky-demo-") as tmp:
        consumer = make_consumer(emulator, pattern={"detail-type": ["User Data"],
                                                    "source": [PROJECT]})
        boot(release, imds, Path(tmp), "web-broken", "i-0demo0000000fail", FAILING, emulator)
        boot(release, imds, Path(tmp), "web-healthy", "i-0demo0000000pass", CLEAN, emulator)
        events = consumer.receive(expected=2, timeout=20) + consumer.drain(settle=1.0)
        print(f"\nThe consumer's queue received {len(events)} event(s) "
              f"(rule pattern {json.dumps(consumer.pattern)}):\n")
        for event in events:
            print(json.dumps(event, indent=2, ensure_ascii=False) if args.json else summary(event))
        return 0 if len(events) == 2 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
