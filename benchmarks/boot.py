"""What bosky costs a boot and how fast its verdict arrives, on real cloud-init.

bosky is installed the way users install it: its wheel, built from the
checkout (or from ``--source DIR``), pip-installed with bytecode compiled by
pip into each release's Python; the checkout is not on ``PYTHONPATH``
(``--checkout`` measures that developer set-up instead, for comparison).
Each boot is a new instance's first boot against the local EventBridge
emulator, with the stanza in a cloud.cfg.d drop-in (``--stanza user-data``:
in user data). Per release and module listing (``final``: in
``cloud_final_modules`` only; ``both``: in ``cloud_init_modules`` too) it
reports the median and the worst case of:
- bosky's time inside each cloud-init stage, from cloud-init's own log: the
  ``config-bosky ... took N seconds`` line (23.x on), else the start/finish
  lines' timestamps (ms resolution); target median <= 10 ms, worst <= 20 ms;
- result.json written (its mtime) -> event in the consumer's queue (SQS
  SentTimestamp); target < 1 s;
- of that, the CPU bosky used in the stage that starts the reporter (as the
  module logs it): on a busy machine the rest is waiting for a core;
- the reporter's peak RSS (target <= 35 MB) and CPU seconds from its start to
  the verdict, both as the reporter logs them.
All figures are median / worst.

    ./dev bench boot [--boots 10] [--releases 20.4.1,...] [--listings final,both]
                     [--stanza drop-in|user-data] [--source DIR | --checkout]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.boot import DEFAULT_FINAL_MODULES, Instance  # noqa: E402
from tests.harness.imds import MetadataServer  # noqa: E402
from tests.harness.releases import (  # noqa: E402
    RELEASE_IDS,
    Release,
    build_wheel,
    compile_bosky,
    ensure_release,
    with_installed_wheel,
)
from tests.support.emulator import EventBridgeEmulator, make_consumer  # noqa: E402

FOOTPRINT = re.compile(r"verdict sent; CPU ([0-9.]+) s, peak memory ([0-9.]+) MB")
CHILD_PEAK = re.compile(r"schema check in a child process: [^;]*; it grew by ([0-9.]+) MB")
STAGE_CPU = re.compile(r"bosky: reporter started .+? in [0-9.]+ ms \(([0-9.]+) ms CPU\)")
LISTINGS = {
    "final": ("bootcmd", "write_files"),
    "both": ("bootcmd", "write_files", "bosky"),
}


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


def stage_ms(result: Any) -> Dict[str, float]:
    """bosky's milliseconds per stage: cloud-init's "took" where it says it."""
    return {stage: 1000 * (t.reported_seconds if t.reported_seconds is not None else t.seconds)
            for stage, t in result.module_timing_details().items()}


def boot_once(release: Release, listing: str, stanza: str, name: str, imds: MetadataServer,
              emulator: EventBridgeEmulator, tmp: Path) -> Dict[str, Any]:
    consumer = make_consumer(emulator, pattern={"source": [name]})
    try:
        inst = Instance(release, tmp / name, imds=imds,
                        env={"AWS_ENDPOINT_URL_EVENTS": emulator.url,
                             "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url})
        line = f"bosky: {{project: {name}}}\n"
        in_user_data = stanza == "user-data"
        result = inst.boot(
            user_data="#cloud-config\n" + (line if in_user_data else "")
            + "runcmd:\n  - echo ready\n",
            cloud_cfg_d={} if in_user_data else {"90-bosky.cfg": line},
            init_modules=LISTINGS[listing], final_modules=DEFAULT_FINAL_MODULES,
            wait_reporter=60)
        written = (inst.paths.var_lib_cloud / "data" / "result.json").stat().st_mtime
        (message,) = arrivals(consumer, 1)
        log = (inst.paths.var_log / "bosky.log").read_text()
        footprint = FOOTPRINT.findall(log)
        if not footprint:
            raise SystemExit(f"{name}: the reporter logged no footprint:\n{log}")
        cpu, peak = footprint[-1]
        return {"ms": stage_ms(result),
                "stage_cpu": [float(ms) for ms in STAGE_CPU.findall(result.cloud_init_log)],
                "delay": int(message["Attributes"]["SentTimestamp"]) / 1000 - written,
                "cpu": float(cpu), "peak": float(peak),
                "child_peak": [float(mb) for mb in CHILD_PEAK.findall(log)]}
    finally:
        consumer.close()


def release_under_test(version: str, args: argparse.Namespace, tmp: Path) -> Release:
    release = ensure_release(version)
    if args.checkout:
        compile_bosky(release)
        return release
    return with_installed_wheel(release, args.wheel, tmp / f"python-{version}")


def bench(release: Release, listing: str, args: argparse.Namespace,
          emulator: EventBridgeEmulator, tmp: Path) -> Dict[str, Any]:
    runs = []
    with MetadataServer() as imds:
        imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1")
        for i in range(args.boots):
            name = f"bench-{release.version}-{listing}-{i}"
            runs.append(boot_once(release, listing, args.stanza, name, imds, emulator, tmp))
    stages = sorted({s for r in runs for s in r["ms"]})
    return {
        "ms": {s: [r["ms"][s] for r in runs if s in r["ms"]] for s in stages},
        "delay": [r["delay"] for r in runs],
        "stage_cpu": [ms for r in runs for ms in r["stage_cpu"]],
        "cpu": [r["cpu"] for r in runs],
        "peak": [r["peak"] for r in runs],
        "child_peak": [mb for r in runs for mb in r["child_peak"]],
    }


def spread(values: Sequence[float]) -> Tuple[float, float]:
    return statistics.median(values), max(values)


def report(version: str, listing: str, r: Dict[str, Any], rows: List[str]) -> None:
    print(f"cloud-init {version}, bosky listed in {LISTING_NAMES[listing]}, "
          f"{len(r['delay'])} boots:")
    cells = []
    for stage, values in r["ms"].items():
        med, worst = spread(values)
        print(f"  bosky inside cloud-init, {stage:<14} median {med:5.1f} ms, worst {worst:5.1f} ms"
              "  (target: median <= 10, worst <= 20)")
        cells.append(f"{STAGE_NAMES.get(stage, stage)} {med:.0f} / {worst:.0f}")
    cpu = "n/a"
    if r["stage_cpu"]:  # logged by the stage that starts the reporter
        med, worst = spread(r["stage_cpu"])
        print(f"  of which CPU, in the stage that starts the reporter: median {med:.1f} ms, "
              f"worst {worst:.1f} ms (the rest is waiting for a core)")
        cpu = f"{med:.1f} / {worst:.1f}"
    med, worst = spread(r["delay"])
    print(f"  result.json written -> event in queue: median {med:.3f} s, worst {worst:.3f} s"
          "  (target < 1 s)")
    delay = f"{med:.2f} / {worst:.2f}"
    pmed, pworst = spread(r["peak"])
    cmed, cworst = spread(r["cpu"])
    print(f"  reporter: peak RSS median {pmed:.1f} MB, worst {pworst:.1f} MB (target <= 35); "
          f"CPU start -> verdict median {cmed:.2f} s, worst {cworst:.2f} s")
    if r["child_peak"]:  # the user-data stanza's schema check, forked and gone
        kmed, kworst = spread(r["child_peak"])
        print(f"  the schema check's child (a fork of the reporter, gone after the check): "
              f"grew by median {kmed:.1f} MB, worst {kworst:.1f} MB beyond the pages it shares")
    rows.append(f"| {version} | {listing} | {', '.join(cells)} | {cpu} | {delay} | "
                f"{pmed:.1f} / {pworst:.1f} | {cmed:.2f} / {cworst:.2f} |")


LISTING_NAMES = {"final": "cloud_final_modules only", "both": "both stages"}
STAGE_NAMES = {"init-network": "init", "modules-final": "final"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--boots", type=int, default=10)
    parser.add_argument("--releases", default=",".join(RELEASE_IDS))
    parser.add_argument("--listings", default="final,both")
    parser.add_argument("--stanza", choices=("drop-in", "user-data"), default="drop-in")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--source", type=Path, default=REPO,
                       help="the tree to build the wheel from (default: this checkout)")
    where.add_argument("--checkout", action="store_true",
                       help="the checkout on PYTHONPATH instead of an installed wheel")
    args = parser.parse_args()
    setup = ("the checkout on PYTHONPATH" if args.checkout
             else f"the wheel built from {args.source}, pip-installed")
    print(f"bosky from {setup}; stanza in {args.stanza}")
    rows = ["| release | listing | inside cloud-init, ms | of which CPU, ms | result.json → "
            "event, s | reporter peak RSS, MB | reporter CPU to verdict, s |",
            "|---|---|---|---|---|---|---|"]
    with EventBridgeEmulator() as emulator, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.checkout:
            args.wheel = build_wheel(args.source, tmp / "wheel")
        for version in args.releases.split(","):
            release = release_under_test(version, args, tmp)
            for listing in args.listings.split(","):
                report(version, listing, bench(release, listing, args, emulator, tmp), rows)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
