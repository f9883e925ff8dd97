"""The spool as an operator relies on it: root-only, never half a record, corrupt
files set aside and reported, a bound that drops the oldest and says so, and
many writers at once without a corrupt or doubled record.

Where a scenario ends in delivery it ends at the consumer (the SQS queue
behind an EventBridge rule) and in ``bosky status --json``.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import pytest

from cc_bosky.delivery.outbox import flush
from cc_bosky.delivery.spool import Spool
from cc_bosky.event import Event, make_event
from tests.support.bounds import ARRIVAL
from tests.support.emulator import DEFAULT_REGION
from tests.support.fixtures import REPO_ROOT

REGION = DEFAULT_REGION


def verdict(project: str, message: str, status: str = "fail") -> Event:
    return make_event(source=project, detail_type="User Data", status=status, message=message,
                      identity={}, origin="command")


def spool_report(bosky: Any, env: Mapping[str, str]) -> Dict[str, Any]:
    done = bosky(["status", "--json"], env=env)
    assert done.returncode == 0, done.stderr
    report: Dict[str, Any] = json.loads(done.stdout)["spool"]
    return report


def arrived(consumer: Any, expected: int) -> List[Dict[str, Any]]:
    events: List[Dict[str, Any]] = consumer.receive(expected=expected, timeout=ARRIVAL)
    return events + consumer.drain(settle=1.0)


def mode(path: Any) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- permissions and atomicity ---------------------------------------------------------


def test_an_undelivered_event_is_kept_root_only(bosky, env, fault_proxy) -> None:
    """Spooled events may carry log tails: 0700 directory, 0600 files, even under umask 0."""
    spool_dir = Path(env["BOSKY_SPOOL_DIR"])
    spool_dir.mkdir(mode=0o755)
    os.chmod(spool_dir, 0o755)  # an existing directory someone made too open
    fault_proxy.refuse()
    old = os.umask(0)
    try:
        done = bosky(["--fail", "disk full", "--timeout", "1"],
                     env={**env, "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url})
    finally:
        os.umask(old)
    assert done.returncode == 1 and "spooled" in done.stderr
    (record,) = [p for p in spool_dir.iterdir() if p.suffix == ".event"]
    assert mode(spool_dir) == 0o700
    assert mode(record) == 0o600
    assert all(mode(p) == 0o600 for p in spool_dir.iterdir() if p.is_file())


KILL_MID_WRITE = """
import os, signal, sys
from cc_bosky.event import make_event
from cc_bosky.delivery.spool import Spool

real_write = os.write
def dying_write(fd, data):
    real_write(fd, bytes(data)[:20])  # the first bytes reach the disk, then the end
    os.kill(os.getpid(), signal.SIGKILL)
os.write = dying_write
event = make_event(source="p", detail_type="User Data", status="fail", message="m",
                   identity={}, origin="command")
Spool(sys.argv[1]).put(event, "us-east-1", None, "not sent yet")
"""


def test_a_writer_killed_mid_write_leaves_no_half_record(bosky, env) -> None:
    spool_dir = env["BOSKY_SPOOL_DIR"]
    killed = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, spool_dir],
                            env={**env, "PYTHONPATH": str(REPO_ROOT)}, check=False)
    assert killed.returncode == -signal.SIGKILL
    (leftover,) = os.listdir(spool_dir)
    assert leftover.startswith(".tmp-")  # only the temp file: the record name never existed

    report = spool_report(bosky, env)
    assert report["events"] == [] and report["corrupt"] == []
    flushed = bosky(["flush"], env=env)
    assert flushed.returncode == 0, flushed.stderr
    assert "delivered 0" in flushed.stdout
    assert os.path.exists(os.path.join(spool_dir, leftover))  # too young to be judged stale

    an_hour_ago = time.time() - 3600
    os.utime(os.path.join(spool_dir, leftover), (an_hour_ago, an_hour_ago))
    assert bosky(["flush"], env=env).returncode == 0
    assert not os.path.exists(os.path.join(spool_dir, leftover))


def test_stale_temp_files_are_removed_and_a_live_writers_is_not(env, consumer,
                                                               eventbridge) -> None:
    spool = Spool(env["BOSKY_SPOOL_DIR"])
    spool.put(verdict(consumer.project, "real"), REGION, eventbridge.url, "not sent yet")
    old = time.time() - 3600

    def temp(name: str, age: float) -> Path:
        path = Path(spool.directory) / name
        path.write_bytes(b"bosky-spool 1 sha256=0 len=0\n")  # never read: not a record name
        os.utime(path, (age, age))
        return path

    abandoned = temp(".tmp-999999-1", old)
    counter_temp = temp("dropped.tmp-999999", old)
    fresh = temp(f".tmp-{os.getpid()}-2", time.time())
    writing = temp(f".tmp-{os.getpid()}-3", old)  # old, but its writer is alive and holds it
    import fcntl

    holder = os.open(writing, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        report = flush(Spool(spool.directory), env, 15.0, eventbridge.url)
    finally:
        os.close(holder)
    assert (report.delivered, report.remaining, report.corrupt) == (1, 0, 0)
    assert not abandoned.exists() and not counter_temp.exists()
    assert fresh.exists() and writing.exists()
    assert [e["detail"]["Message"] for e in arrived(consumer, 1)] == ["real"]


# -- corrupt records --------------------------------------------------------------------


def _record_bytes(body: Any) -> bytes:
    data = json.dumps(body).encode()
    return f"bosky-spool 1 sha256={hashlib.sha256(data).hexdigest()} len={len(data)}\n".encode() \
        + data


def _corruptions(good: bytes) -> Dict[str, bytes]:
    header, _, body = good.partition(b"\n")
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    return {
        "bit-flip": header + b"\n" + bytes(flipped),
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "not-a-record": b"hello world\n",
        "binary-header": b"\xff\xfe\x00garbage\n{}",
        "checksum-ok-not-an-event": _record_bytes({"entry": []}),
        "checksum-ok-bad-resources": _record_bytes({"entry": {
            "Source": "x", "DetailType": "User Data", "Resources": 5,
            "Detail": json.dumps({"EventId": "e", "Status": "fail"})}, "region": "us-east-1",
            "spooled_at": 0}),
    }


def test_corrupt_records_are_set_aside_reported_and_never_sent(bosky, env, consumer,
                                                              eventbridge) -> None:
    spool = Spool(env["BOSKY_SPOOL_DIR"])
    good = spool.put(verdict(consumer.project, "intact"), REGION, eventbridge.url, "x")
    template = spool.put(verdict(consumer.project, "will be damaged"), REGION, eventbridge.url,
                         "x")
    damaged = _corruptions(Path(template.path).read_bytes())
    os.unlink(template.path)
    for n, (kind, content) in enumerate(damaged.items()):
        name = f"{time.time_ns() + n:020d}-{kind}.event"
        (Path(spool.directory) / name).write_bytes(content)

    flushed = bosky(["flush"], env=env)
    assert "Traceback" not in flushed.stderr + flushed.stdout
    assert flushed.returncode == 1  # something needs a human: corrupt files
    assert f"delivered 1, still spooled 0, rejected 0, corrupt {len(damaged)}" in flushed.stdout
    (event,) = arrived(consumer, 1)
    assert event["detail"]["EventId"] == good.event.event_id

    report = spool_report(bosky, env)
    assert report["events"] == []
    assert sorted(Path(p).name.split("-", 1)[1][: -len(".event")] for p in report["corrupt"]) \
        == sorted(damaged)
    assert all(Path(p).parent.name == "corrupt" for p in report["corrupt"])
    human = bosky(["status"], env=env)
    assert human.returncode == 0 and f"{len(damaged)} corrupt" in human.stdout


# -- the bound ---------------------------------------------------------------------------


def test_past_its_bound_the_spool_drops_the_oldest_and_the_next_event_says_how_many(
        bosky, env, consumer, eventbridge) -> None:
    bounded = {**env, "BOSKY_SPOOL_MAX_EVENTS": "3"}
    spool = Spool(env["BOSKY_SPOOL_DIR"], max_events=3)
    old = [verdict(consumer.project, f"old {i}") for i in range(5)]
    for event in old:
        spool.put(event, REGION, eventbridge.url, "endpoint down")

    report = spool_report(bosky, bounded)
    assert report["dropped"] == 2
    assert [e["EventId"] for e in report["events"]] == [e.event_id for e in old[2:]]

    sent = bosky(["--info", "next", "--project", consumer.project], env=bounded)
    assert sent.returncode == 0, sent.stderr
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Message"] == "next"
    assert event["detail"]["DroppedEvents"] == 2
    report = spool_report(bosky, bounded)
    assert report["dropped"] == 0
    assert len(report["events"]) == 3  # a delivered send pushes nothing out

    assert bosky(["flush"], env=bounded).returncode == 0
    rest = arrived(consumer, 3)
    assert sorted(e["detail"]["Message"] for e in rest) == ["old 2", "old 3", "old 4"]
    assert all("DroppedEvents" not in e["detail"] for e in rest)


def test_the_byte_bound_drops_the_oldest_and_a_flush_reports_the_count_once(
        env, consumer, eventbridge, fault_proxy) -> None:
    spool = Spool(env["BOSKY_SPOOL_DIR"], max_bytes=25_000)
    for i in range(4):
        spool.put(verdict(consumer.project, f"big {i} " + "x" * 10_000), REGION, fault_proxy.url,
                  "endpoint down")
    assert spool.dropped() == 2
    assert [r.event.detail["Message"][:5] for r in spool.records()[0]] == ["big 2", "big 3"]

    fault_proxy.refuse()  # failed flushes must not add the count to the record itself
    for _ in range(2):
        assert flush(spool, env, 1.0).remaining == 2
    fault_proxy.restore()
    report = flush(spool, env, 15.0)
    assert (report.delivered, report.remaining) == (2, 0)
    events = sorted(arrived(consumer, 2), key=lambda e: e["detail"]["Message"])
    assert [e["detail"].get("DroppedEvents") for e in events] == [2, None]
    assert spool.dropped() == 0


def test_the_bound_never_drops_a_record_being_sent(env, eventbridge) -> None:
    spool = Spool(env["BOSKY_SPOOL_DIR"], max_events=1)
    sending = spool.put(verdict("p", "being sent"), REGION, eventbridge.url, "x", hold=True)
    spool.put(verdict("p", "newer"), REGION, eventbridge.url, "x")
    (left,) = spool.records()[0]
    assert left.event.event_id == sending.event.event_id and left.in_flight
    assert spool.dropped() == 1
    spool.release(sending)


def test_a_record_being_sent_by_its_own_bosky_is_left_to_it(env, consumer,
                                                            eventbridge) -> None:
    """The command spools before it sends; a flusher running meanwhile must not send it too."""
    spool = Spool(env["BOSKY_SPOOL_DIR"])
    record = spool.put(verdict(consumer.project, "mine"), REGION, eventbridge.url,
                       "not sent yet", hold=True)
    report = flush(Spool(spool.directory), env, 10.0)
    assert (report.delivered, report.remaining, report.in_flight) == (0, 1, 1)
    assert consumer.drain(settle=0.5) == []
    spool.release(record)  # its bosky ended (or was killed) without delivering it
    assert flush(Spool(spool.directory), env, 10.0).delivered == 1
    assert [e["detail"]["EventId"] for e in arrived(consumer, 1)] == [record.event.event_id]


# -- many writers at once --------------------------------------------------------------------


def _write_events(directory: str, entries: Sequence[Dict[str, Any]], endpoint: str) -> None:
    """One writer process: spool each entry (some are also spooled by other writers)."""
    spool = Spool(directory)
    for entry in entries:
        spool.put(Event.from_entry(entry), REGION, endpoint, "not sent yet")


def _writers(directory: str, per_writer: List[List[Dict[str, Any]]],
             endpoint: str) -> List[Any]:
    ctx = multiprocessing.get_context("spawn")  # never fork a process with threads
    procs = [ctx.Process(target=_write_events, args=(directory, entries, endpoint))
             for entries in per_writer]
    for proc in procs:
        proc.start()
    return procs


def test_concurrent_writers_never_corrupt_or_double_a_record(bosky, env,
                                                            eventbridge) -> None:
    shared = [verdict("p", f"retried by everyone {i}").entry() for i in range(10)]
    own = [[verdict("p", f"writer {w} event {i}").entry() for i in range(40)]
           for w in range(6)]
    # Each writer spools its own events and, interleaved, the same shared ones.
    per_writer = [entries[:20] + shared + entries[20:] for entries in own]
    procs = _writers(env["BOSKY_SPOOL_DIR"], per_writer, eventbridge.url)
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0

    expected = {json.loads(e["Detail"])["EventId"] for e in [*shared, *itertools.chain(*own)]}
    report = spool_report(bosky, env)
    ids = [e["EventId"] for e in report["events"]]
    assert report["corrupt"] == [] and report["dropped"] == 0
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    names = os.listdir(env["BOSKY_SPOOL_DIR"])
    assert not [n for n in names if n.startswith(".tmp-")]
    spool = Spool(env["BOSKY_SPOOL_DIR"])
    with spool.lock() as held:
        assert held
        spool.dedupe_locked()  # what a flusher does first: one file per EventId
    assert len([n for n in os.listdir(spool.directory) if n.endswith(".event")]) == len(expected)


def test_writers_and_a_flusher_at_once_deliver_every_event_exactly_once(
        env, consumer, eventbridge) -> None:
    own = [[verdict(consumer.project, f"writer {w} event {i}").entry() for i in range(25)]
           for w in range(4)]
    procs = _writers(env["BOSKY_SPOOL_DIR"], own, eventbridge.url)
    spool = Spool(env["BOSKY_SPOOL_DIR"])
    delivered = 0
    while any(p.is_alive() for p in procs):
        delivered += flush(spool, env, 10.0).delivered
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    last = flush(spool, env, 30.0)
    delivered += last.delivered
    assert (last.remaining, last.corrupt) == (0, 0)
    assert delivered == 100

    copies = collections.Counter(e["detail"]["EventId"] for e in arrived(consumer, 100))
    assert sorted(copies.values()) == [1] * 100
    assert set(copies) == {json.loads(e["Detail"])["EventId"] for e in itertools.chain(*own)}


def test_concurrent_flushers_send_each_record_once(env, consumer, eventbridge) -> None:
    spool = Spool(env["BOSKY_SPOOL_DIR"])
    for i in range(30):
        spool.put(verdict(consumer.project, f"e{i}"), REGION, eventbridge.url, "x")
    reports: List[Any] = []
    threads = [threading.Thread(target=lambda: reports.append(
        flush(Spool(spool.directory), env, 20.0))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.delivered for r in reports) == 30
    copies = collections.Counter(e["detail"]["EventId"] for e in arrived(consumer, 30))
    assert len(copies) == 30 and set(copies.values()) == {1}


@pytest.mark.parametrize("content", [b"3", b"", b"not a number", b"-7"])
def test_a_damaged_dropped_counter_never_breaks_delivery(bosky, env, consumer,
                                                         content: bytes) -> None:
    spool_dir = Path(env["BOSKY_SPOOL_DIR"])
    spool_dir.mkdir(mode=0o700)
    (spool_dir / "dropped").write_bytes(content)
    done = bosky(["--pass", "ok", "--project", consumer.project], env=env)
    assert done.returncode == 0, done.stderr
    (event,) = arrived(consumer, 1)
    assert event["detail"].get("DroppedEvents") == (3 if content == b"3" else None)
