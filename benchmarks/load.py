"""A fleet launching at once: N instance verdicts against a throttled EventBridge.

Every simulated instance does what a booting instance's bosky does, with the
real sender and spool: it has its own spool directory, sends its verdict
through ``cc_bosky.delivery.outbox.send`` (spooled first, kept until accepted) with
the default 30 s send budget, and, if that was not enough, keeps flushing its
spool with ``flush_for`` like the reporter's flush window. All of them start
at the same instant against the EventBridge emulator behind a FaultProxy that
admits ``--rate`` PutEvents calls a second (token bucket, like AWS quotas) and
answers the rest with ThrottlingException.

Instances are threads spread over a few worker processes: a thousand
interpreters would measure this machine's CPU, not bosky's delivery.

Printed: delivered, lost, duplicates (extra copies by EventId at the consumer,
which is drained), instances whose verdict arrived under two ids, wall time
from the start signal until every instance is done, the time the throttle
makes unavoidable (N / rate seconds: one verdict is one PutEvents call), and
their ratio (target: at most 1.5).

    .venv/bin/python benchmarks/load.py [--verdicts 1000] [--rate 50] [--workers 4] [--json]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.emulator import (  # noqa: E402
    DEFAULT_REGION,
    DUMMY_ACCESS_KEY,
    DUMMY_SECRET_KEY,
    EventBridgeEmulator,
    make_consumer,
)
from tests.support.faultproxy import FaultProxy  # noqa: E402

TARGET_RATIO = 1.5
SEND_TIMEOUT = 30.0  # the config schema's default send_timeout
FLUSH_WINDOW = 600.0  # the config schema's default flush_window


@dataclasses.dataclass
class InstanceResult:
    instance_id: str
    event_id: str
    delivered: bool
    seconds: float  # from the start signal until this instance was done
    flushed: bool  # needed the flush window after the send budget ran out


@dataclasses.dataclass
class LoadResult:
    verdicts: int
    rate: float
    delivered: int
    lost: int
    duplicates: int
    two_ids: int
    wall: float
    unavoidable: float
    ratio: float
    calls: int
    throttled: int
    upstream_errors: int  # the emulator did not answer the proxy: it, not bosky, fell behind
    flushed: int
    slowest_instance: float
    reported_undelivered: int  # instances whose own bosky said "not delivered"

    def ok(self) -> bool:
        return self.lost == 0 and self.two_ids == 0 and self.ratio <= TARGET_RATIO

    def lines(self) -> List[str]:
        return [
            f"verdicts      {self.verdicts} at a throttle of {self.rate:g} PutEvents/s",
            f"delivered     {self.delivered}",
            f"lost          {self.lost}",
            f"duplicates    {self.duplicates} (extra copies, same EventId)",
            f"two ids       {self.two_ids}",
            f"wall time     {self.wall:.1f} s",
            f"unavoidable   {self.unavoidable:.1f} s (verdicts / rate)",
            f"ratio         {self.ratio:.2f} (target <= {TARGET_RATIO})",
            f"calls         {self.calls} PutEvents calls, {self.throttled} throttled, "
            f"{self.upstream_errors} the emulator did not answer in time",
            f"flush window  needed by {self.flushed} instance(s)",
            f"slowest       {self.slowest_instance:.1f} s",
        ]


# -- one simulated instance (runs in a worker process) ----------------------------------


def _one_instance(instance_id: str, root: str, conf: Dict[str, Any],
                  began: float) -> InstanceResult:
    from cc_bosky.delivery.outbox import flush_for, send
    from cc_bosky.delivery.sender import Target
    from cc_bosky.delivery.spool import Spool
    from cc_bosky.event import make_event, stable_event_id

    environ = conf["environ"]
    event = make_event(
        source=conf["project"], detail_type="User Data", status="pass",
        message=f"{instance_id} booted", identity={"InstanceId": instance_id},
        origin="boot", event_id=stable_event_id(instance_id, "boot-1", "final"),
    )
    spool = Spool(os.path.join(root, instance_id))
    target = Target(DEFAULT_REGION, conf["endpoint"], conf["send_timeout"])
    (result,) = send([event], target, spool, environ)
    delivered, flushed = result.outcome.delivered, False
    if not delivered:
        flushed = True
        report = flush_for(spool, environ, conf["flush_window"], conf["send_timeout"],
                           conf["endpoint"])
        delivered = report.remaining == 0 and report.rejected == 0
    return InstanceResult(instance_id, event.event_id, delivered,
                          time.monotonic() - began, flushed)


def _worker(instances: Sequence[str], root: str, conf: Dict[str, Any],
            ready: Any, go: Any, out: Any) -> None:
    """Run ``instances`` as threads, all released by ``go`` at the same instant."""
    import cc_bosky.delivery.outbox  # imports paid before the start signal, not in the figures
    import cc_bosky.delivery.sender

    cc_bosky.delivery.sender.load_credentials(conf["environ"])  # botocore's lazy imports too
    from botocore.auth import SigV4Auth  # noqa: F401

    results: List[InstanceResult] = []
    lock = threading.Lock()
    began = [0.0]
    start = threading.Event()

    def run(instance_id: str) -> None:
        start.wait()
        try:
            done = _one_instance(instance_id, root, conf, began[0])
        except Exception as exc:  # a crash is a lost verdict, and said so
            print(f"{instance_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
            done = InstanceResult(instance_id, "", False, time.monotonic() - began[0], False)
        with lock:
            results.append(done)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in instances]
    for thread in threads:
        thread.start()
    ready.set()
    go.wait()
    began[0] = time.monotonic()
    start.set()
    for thread in threads:
        thread.join()
    out.put([dataclasses.asdict(r) for r in results])


# -- the driver ------------------------------------------------------------------------


def run_load(verdicts: int = 1000, rate: float = 50.0, workers: int = 4,
             emulator: Optional[EventBridgeEmulator] = None, burst: Optional[float] = None,
             send_timeout: float = SEND_TIMEOUT,
             flush_window: float = FLUSH_WINDOW) -> LoadResult:
    """Launch the fleet and count what the consumer received.

    ``burst``: calls the throttle admits at once (default: one second's worth).
    """
    own = emulator is None
    emu = emulator or EventBridgeEmulator().start()
    project = f"bosky-load-{os.getpid()}-{time.time_ns()}"
    consumer = make_consumer(emu, pattern={"detail-type": ["User Data"], "source": [project]})
    proxy = FaultProxy(emu.url)
    try:
        proxy.rate_limit(rate, burst)
        with tempfile.TemporaryDirectory(prefix="bosky-load-") as root:
            conf = {
                "project": project, "endpoint": proxy.url, "send_timeout": send_timeout,
                "flush_window": flush_window, "environ": _environ(root),
            }
            results, wall = _launch(verdicts, workers, root, conf)
        # moto may still be working through what it accepted: wait for every
        # verdict before counting one as lost, then for stray copies.
        events = consumer.receive(expected=verdicts, timeout=120.0 + verdicts / rate)
        events += consumer.drain(settle=2.0, max_wait=120.0)
        calls = [r for r in proxy.requests if r.is_put_events]
    finally:
        proxy.close()
        consumer.close()
        if own:
            emu.stop()
    return _tally(verdicts, rate, results, events, wall, calls)


def _environ(root: str) -> Dict[str, str]:
    """What each instance's bosky sees: dummy keys, no profiles, no IMDS."""
    home = os.path.join(root, "home")
    return {
        "HOME": home,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
        "AWS_REGION": DEFAULT_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(home, "config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
    }


def _launch(verdicts: int, workers: int, root: str,
            conf: Dict[str, Any]) -> tuple[List[InstanceResult], float]:
    ids = [f"i-{n:017x}" for n in range(1, verdicts + 1)]
    workers = max(1, min(workers, verdicts))
    ctx = multiprocessing.get_context("spawn")  # no fork of this threaded process
    go, out = ctx.Event(), ctx.Queue()
    ready = [ctx.Event() for _ in range(workers)]
    procs = [ctx.Process(target=_worker, args=(ids[w::workers], root, conf, ready[w], go, out))
             for w in range(workers)]
    for proc in procs:
        proc.start()
    for flag in ready:
        flag.wait(120)
    began = time.monotonic()
    go.set()
    results: List[InstanceResult] = []
    for _ in procs:
        results += [InstanceResult(**r) for r in out.get(timeout=conf["flush_window"] + 300)]
    wall = time.monotonic() - began
    for proc in procs:
        proc.join(30)
    return results, wall


def _tally(verdicts: int, rate: float, results: Sequence[InstanceResult],
           events: Sequence[Dict[str, Any]], wall: float, calls: Sequence[Any]) -> LoadResult:
    copies = collections.Counter(e["detail"]["EventId"] for e in events)
    ids_by_instance: Dict[str, set[str]] = collections.defaultdict(set)
    for e in events:
        ids_by_instance[e["detail"]["InstanceId"]].add(e["detail"]["EventId"])
    expected = {r.event_id for r in results if r.event_id}
    arrived = expected & set(copies)
    unavoidable = verdicts / rate
    return LoadResult(
        verdicts=verdicts, rate=rate,
        delivered=len(arrived),
        lost=verdicts - len(arrived),
        duplicates=sum(n - 1 for n in copies.values()),
        two_ids=sum(1 for ids in ids_by_instance.values() if len(ids) > 1),
        wall=wall, unavoidable=unavoidable, ratio=wall / unavoidable,
        calls=len(calls),
        throttled=sum(1 for c in calls if c.outcome in ("rate_limited", "throttled")),
        upstream_errors=sum(1 for c in calls if c.outcome == "upstream_error"),
        flushed=sum(1 for r in results if r.flushed),
        slowest_instance=max((r.seconds for r in results), default=0.0),
        reported_undelivered=sum(1 for r in results if not r.delivered),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--verdicts", type=int, default=1000, help="instances launching at once")
    p.add_argument("--rate", type=float, default=50.0, help="PutEvents calls admitted a second")
    p.add_argument("--burst", type=float, default=None,
                   help="calls admitted at once (default: one second's worth)")
    p.add_argument("--workers", type=int, default=4, help="processes the instances run in")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    result = run_load(args.verdicts, args.rate, args.workers, burst=args.burst)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        print("\n".join(result.lines()))
    return 0 if result.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
