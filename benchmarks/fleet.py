"""`bosky fleet` at 10k, 100k and 1M verdicts: the scan's time and memory, and
what each engine would move at a month of a large fleet.

Verdicts are the log group's real shape: EventBridge envelopes around Details
made by bosky's own verdict code (tests/support/verdicts.py), each padded
with a 50-line log tail to about 4.4 KB, checked against the detail schema,
and given their own instance, boot and event ids. One in twenty boots sends
``timeout`` and then its final verdict; one in fifty is re-sent.

- Against the emulator (moto over loopback HTTP, up to ``--server-up-to``
  verdicts): the installed ``bosky fleet --engine scan --json`` as a user
  runs it, its wall time and peak RSS (benchmarks/measure.py).
- In process, without a server (every size): a child folds the verdicts into
  the report as the scan does; its CPU time and peak RSS, beside a baseline
  child that makes the same verdicts and folds none (so the difference is
  the report's own memory). CPU per verdict at each size, as a ratio to the
  smallest, shows whether the work grows linearly.
- For the largest size: the calls and bytes each engine moves. The scan moves
  every event (FilterLogEvents: at most 1 MB or 10,000 events a page, 5 calls
  a second for the account); Insights moves the four answers, built here in
  GetQueryResults' shape from the same report.

    ./dev bench fleet [--sizes 10000,100000,1000000] [--server-up-to 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


PROJECT = "web"
GROUP = "/aws/events/bosky/web"
PAGE_BYTES, PAGE_EVENTS, FILTER_TPS = 1_048_576, 10_000, 5.0
TAIL_LINES = 28  # with the verdict's own fields and its Alert, about 4.4 KB an event
# moto has no 1 MB page limit: it answers 10,000 events (44 MB) a page, and
# reads every event of the group for each page, so pages of AWS's size would
# make the emulator's time quadratic. The server runs take moto's pages; the
# report's own memory is the in-process figure.
_MARKS = ("i-MARKMARKMARKMARK", "b00tb00t-MARK-4000-8000-000000000000",
          "e0e0e0e0-MARK-4000-8000-000000000000")


def templates() -> List[str]:
    """One envelope per verdict kind, with markers where each boot's ids go."""
    import jsonschema

    from cc_bosky.schemas import load
    from tests.support.verdicts import boot_event

    tail = [f"2026-12-01 08:00:{s:02d} step {s}: unpacking layer {s} of the application "
            "image into /opt/app/releases" for s in range(TAIL_LINES)]
    kinds = [("pass", None, ["app started"]), ("degraded", None, ["apt mirror slow"]),
             ("fail", "scripts_user", ["download failed: HTTP 404 Not Found"]),
             ("timeout", None, ["still waiting for the database"])]
    out = []
    for status, failed, last in kinds:
        event = boot_event(PROJECT, status, image="ami-0bbbbbbbbbbbbbbb2",
                           instance_type="t3.micro", instance_id=_MARKS[0], failed=failed,
                           log_tail=tail + last, boot_id=_MARKS[1], boot_seconds=41.5)
        detail = dict(event.detail)
        detail["EventId"] = _MARKS[2]
        jsonschema.validate(json.loads(json.dumps(detail).replace("MARK", "0000")
                                       .replace("i-00000000000000000", "i-0123456789abcdef0")
                                       ), load("detail"))
        envelope = {"version": "0", "id": _MARKS[2], "detail-type": "User Data",
                    "source": PROJECT, "account": "123456789012",
                    "time": "2026-12-01T08:00:00Z", "region": "us-east-1",
                    "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{_MARKS[0]}"],
                    "detail": detail}
        out.append(json.dumps(envelope, separators=(",", ":")))
    return out


def verdicts(count: int, start_ms: int, kinds: List[str]) -> Iterator[Tuple[int, str]]:
    """``count`` (timestamp ms, message) pairs, made as they are needed."""
    made = 0
    n = 0
    while made < count:
        kind = 2 if n % 3 == 0 else (1 if n % 17 == 0 else 0)  # a third fail: a bad image
        ids = (f"i-{n:017x}", f"{n:08x}-0000-4000-8000-000000000000")
        stamp = start_ms + made
        if n % 20 == 0 and made + 1 < count:  # timeout first, then the final verdict
            yield stamp, _fill(kinds[3], ids, n, 1)
            made += 1
            stamp += 1
        yield stamp, _fill(kinds[kind], ids, n, 0)
        made += 1
        if n % 50 == 0 and made < count:  # a re-send
            yield stamp, _fill(kinds[kind], ids, n, 0)
            made += 1
        n += 1


def _fill(template: str, ids: Tuple[str, str], n: int, kind: int) -> str:
    event_id = f"{n:08x}-{kind:04x}-4000-8000-000000000000"
    return (template.replace(_MARKS[0], ids[0]).replace(_MARKS[1], ids[1])
            .replace(_MARKS[2], event_id))


# -- in process ---------------------------------------------------------------------------


def child(count: int, fold: bool) -> None:
    """Run in a child: fold ``count`` verdicts (or only make them), print CPU and bytes."""
    from cc_bosky.fleet.report import Tally, assemble

    kinds = templates()
    began = time.process_time()
    size = 0
    tally = Tally(10, PROJECT)
    for stamp, message in verdicts(count, 1_764_576_000_000, kinds):
        size += len(message)
        if fold:
            tally.add(stamp, message)
    report = assemble(tally.aggregates()) if fold else {}
    print(json.dumps({"cpu": time.process_time() - began, "bytes": size,
                      "boots": report.get("Boots", 0), "report": report}))


def in_process(count: int) -> Dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out: Dict[str, Any] = {}
    for fold in (False, True):
        cmd = [sys.executable, str(Path(__file__)), "--child", str(count)] + \
            ([] if fold else ["--baseline"])
        usage = run_measured(cmd, env)
        out["fold" if fold else "baseline"] = {**json.loads(usage.pop("stdout")), **usage}
    return out


# A small launcher (nothing imported but the standard library) runs the command,
# so its peak RSS is the command's own (as benchmarks/measure.py does, without
# its 2-minute cap: a million verdicts take longer).
_RUSAGE = r"""
import json, resource, subprocess, sys, time
began = time.perf_counter()
done = subprocess.run(sys.argv[1:], check=True, stdout=subprocess.PIPE, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
lines = done.stdout.splitlines()
print(json.dumps({"wall": time.perf_counter() - began, "maxrss_mb": usage.ru_maxrss / 1024,
                  "stdout": lines[-1] if lines else ""}))
"""


def run_measured(cmd: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    done = subprocess.run([sys.executable, "-S", "-c", _RUSAGE, *cmd], env=env,
                          capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[1]} failed: {done.stderr[-2000:]}")
    result: Dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


# -- against the emulator -----------------------------------------------------------------


def against_server(count: int) -> Dict[str, Any]:
    from tests.support.emulator import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, EventBridgeEmulator

    now_ms = int(time.time() * 1000) - 3_600_000
    with EventBridgeEmulator() as emulator:
        logs = emulator.client("logs")
        logs.create_log_group(logGroupName=GROUP)
        logs.create_log_stream(logGroupName=GROUP, logStreamName="events")
        batch: List[Dict[str, Any]] = []
        size = 0
        for stamp, message in verdicts(count, now_ms, templates()):
            if batch and (size + len(message) + 26 > PAGE_BYTES or len(batch) >= PAGE_EVENTS):
                logs.put_log_events(logGroupName=GROUP, logStreamName="events", logEvents=batch)
                batch, size = [], 0
            batch.append({"timestamp": stamp, "message": message})
            size += len(message) + 26
        if batch:
            logs.put_log_events(logGroupName=GROUP, logStreamName="events", logEvents=batch)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir(),
               "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
               "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": emulator.url}
        bosky = str(Path(sys.executable).with_name("bosky"))
        return run_measured([bosky, "fleet", "--log-group", GROUP, "--engine", "scan",
                             "--since", "2h", "--json", "--timeout", "3600"], env)


# -- what each engine moves ---------------------------------------------------------------


def moved(count: int, total_bytes: int, report: Dict[str, Any]) -> Dict[str, Any]:
    pages = max(math.ceil(total_bytes / PAGE_BYTES), math.ceil(count / PAGE_EVENTS))
    answers = insights_answers(report)
    answer_bytes = sum(len(json.dumps(a)) for a in answers.values())
    return {
        "scan": {"calls": pages, "bytes": total_bytes,
                 "seconds_at_quota": pages / FILTER_TPS},
        "insights": {"start_query": 4, "answer_bytes": answer_bytes,
                     "get_query_results_per_round": 4,
                     "scanned_on_aws_bytes": total_bytes},
    }


def insights_answers(report: Dict[str, Any]) -> Dict[str, Any]:
    """The four GetQueryResults answers that would carry ``report``, in their documented shape."""
    def row(**cells: Any) -> List[Dict[str, str]]:
        return [{"field": k, "value": str(v)} for k, v in cells.items() if v is not None]

    stats = {"recordsMatched": 0.0, "recordsScanned": 0.0, "bytesScanned": 0.0}
    groups, seconds, modules, latest = [], [], [], []
    for g in report["Groups"]:
        for status in ("pass", "fail", "degraded", "timeout"):
            if g[status.capitalize()]:
                groups.append(row(project=g["Project"], image=g["ImageId"],
                                  type=g["InstanceType"], status=status,
                                  boots=g[status.capitalize()]))
        seconds.append(row(project=g["Project"], image=g["ImageId"], type=g["InstanceType"],
                           p50=g["BootSecondsP50"], p95=g["BootSecondsP95"]))
    for m in report["FailingModules"]:
        modules.append(row(module=m["Module"], failures=m["Failures"]))
    sample = templates()[2]
    for f in report["LatestFailures"]:
        latest.append(row(project=f["Project"], instance=f["InstanceId"], boot="b",
                          status=f["Status"], last="2026-12-01 08:00:00.000", message=sample))
    return {name: {"status": "Complete", "statistics": stats, "results": rows}
            for name, rows in (("groups", groups), ("seconds", seconds),
                               ("modules", modules), ("latest", latest))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--server-up-to", type=int, default=100000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, not args.baseline)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results: Dict[str, Any] = {}
    for count in sizes:
        entry: Dict[str, Any] = {"in_process": in_process(count)}
        if count <= args.server_up_to:
            entry["server"] = against_server(count)
        results[str(count)] = entry
    largest = max(sizes)
    fold = results[str(largest)]["in_process"]["fold"]
    results["moved"] = {"verdicts": largest,
                        **moved(largest, fold["bytes"], fold["report"])}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    base = sizes[0]
    per_base = results[str(base)]["in_process"]["fold"]["cpu"] / base
    print("verdicts  avg size  server wall  server RSS  in-process CPU  CPU/verdict ratio"
          "  RSS (report)  RSS (baseline)  boots")
    for count in sizes:
        e = results[str(count)]
        f, b = e["in_process"]["fold"], e["in_process"]["baseline"]
        server = e.get("server")
        wall = f"{server['wall']:.1f} s" if server else "-"
        rss = f"{server['maxrss_mb']:.0f} MB" if server else "-"
        print(f"{count:>8}  {f['bytes'] / count:>6.0f} B  {wall:>11}  {rss:>10}  "
              f"{f['cpu']:>12.1f} s  {f['cpu'] / count / per_base:>17.2f}  "
              f"{f['maxrss_mb']:>9.0f} MB  {b['maxrss_mb']:>11.0f} MB  {f['boots']:>6}")
    m = results["moved"]
    print(f"\nat {largest} verdicts ({m['scan']['bytes'] / 1e9:.2f} GB):")
    print(f"  scan:     {m['scan']['calls']} FilterLogEvents calls, "
          f"{m['scan']['bytes'] / 1e9:.2f} GB to this machine, "
          f">= {m['scan']['seconds_at_quota'] / 60:.1f} min at 5 calls/s")
    print(f"  insights: 4 StartQuery + 4 GetQueryResults a poll round, "
          f"{m['insights']['answer_bytes'] / 1e3:.1f} KB of answers; "
          f"{m['insights']['scanned_on_aws_bytes'] / 1e9:.2f} GB scanned on AWS's side")


if __name__ == "__main__":
    main()
