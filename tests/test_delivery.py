"""Delivery that loses nothing, as a platform engineer meets it: the real
``bosky`` command against the EventBridge emulator behind a fault-injecting
proxy. Every scenario ends at the consumer (the SQS queue behind a rule):
each event arrives, once per EventId, or it is still in the spool and
``bosky status --json`` says so.

A second copy under the same EventId is allowed where the network makes it
unavoidable (an answer lost after EventBridge took the event); an event
arriving under two EventIds never is.
"""

from __future__ import annotations

import collections
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import pytest

from cc_bosky.delivery.spool import Record, Spool
from cc_bosky.event import Event, make_event
from tests.support.bounds import ARRIVAL, SLACK
from tests.support.emulator import DEFAULT_REGION
from tests.support.fixtures import REPO_ROOT, bosky_command, run_bosky
from tests.support.scenes import wait_for
from tests.test_spool import arrived, spool_report

NO_TRACEBACK = "Traceback"


# -- helpers ----------------------------------------------------------------------------


def start_bosky(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """The real command in the background, as a user-data script's step would run it."""
    run_env = dict(env)
    cmd = bosky_command(run_env)
    if cmd[1:3] == ["-m", "cc_bosky"]:
        run_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [run_env.get("PYTHONPATH")])])
    return subprocess.Popen([*cmd, *args], env=run_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sending(env: Mapping[str, str]) -> List[Record]:
    """Records a live bosky holds because it is sending them right now."""
    return [r for r in Spool(env["BOSKY_SPOOL_DIR"]).records()[0] if r.in_flight]


def via(proxy: Any, env: Mapping[str, str]) -> Dict[str, str]:
    return {**env, "AWS_ENDPOINT_URL_EVENTS": proxy.url}


def assert_one_line(text: str) -> None:
    assert NO_TRACEBACK not in text
    assert len(text.strip().splitlines()) == 1, text
    assert text.startswith("bosky: ")


def put_calls(proxy: Any) -> List[Any]:
    return [r for r in proxy.requests if r.is_put_events]


def entry_ids(record: Any) -> List[str]:
    import json

    return [json.loads(e["Detail"])["EventId"] for e in record.entries]


def spool_directly(env: Mapping[str, str], project: str, endpoint: str, count: int) -> List[Event]:
    """Events left in the spool by an earlier outage."""
    spool = Spool(env["BOSKY_SPOOL_DIR"])
    events = [make_event(source=project, detail_type="User Data", status="fail",
                         message=f"outage {i}", identity={}, origin="command")
              for i in range(count)]
    for event in events:
        spool.put(event, DEFAULT_REGION, endpoint, "endpoint down")
    return events


# -- the endpoint refused ---------------------------------------------------------------


def test_an_endpoint_back_while_bosky_still_retries_is_one_delivery(env, consumer,
                                                                    fault_proxy) -> None:
    fault_proxy.refuse()
    proc = start_bosky(["--fail", "network came up late", "--project", consumer.project,
                        "--timeout", "30"], via(fault_proxy, env))
    wait_for(lambda: sending(env), 20, "bosky to spool its event and start sending")
    time.sleep(1.0)  # a few connections are refused meanwhile (the scene, not an assertion)
    fault_proxy.restore()
    _, err = proc.communicate(timeout=45)
    assert proc.returncode == 0, err
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Message"] == "network came up late"
    assert spool_report(run_bosky, env)["events"] == []


def test_events_kept_through_an_outage_go_out_in_one_batch(bosky, env, consumer,
                                                           fault_proxy) -> None:
    down = via(fault_proxy, env)
    fault_proxy.refuse()
    for i in range(3):
        done = bosky(["--fail", f"outage {i}", "--project", consumer.project, "--timeout", "1"],
                     env=down)
        assert done.returncode == 1 and "spooled" in done.stderr
        assert_one_line(done.stderr)
    waiting = spool_report(bosky, down)["events"]
    assert len(waiting) == 3
    assert all("ConnectionError" in e["LastError"] and e["Attempts"] >= 1 for e in waiting)

    fault_proxy.reset()
    flushed = bosky(["flush"], env=down)
    assert flushed.returncode == 0, flushed.stderr
    assert "delivered 3, still spooled 0" in flushed.stdout
    (call,) = put_calls(fault_proxy)
    assert sorted(entry_ids(call)) == sorted(e["EventId"] for e in waiting)
    got = arrived(consumer, 3)
    assert sorted(e["detail"]["EventId"] for e in got) == sorted(e["EventId"] for e in waiting)


# -- slow, hanging, failing and throttling endpoints ------------------------------------------


def test_a_hanging_endpoint_costs_the_bound_and_the_event_waits_in_the_spool(
        bosky, env, consumer, fault_proxy) -> None:
    fault_proxy.hang()
    began = time.monotonic()
    done = bosky(["--fail", "hung", "--project", consumer.project, "--timeout", "3"],
                 env=via(fault_proxy, env))
    assert time.monotonic() - began < 3 + SLACK  # the --timeout bound, plus a loaded machine
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "timed out" in done.stderr and "spooled" in done.stderr
    (waiting,) = spool_report(bosky, env)["events"]
    assert "timed out" in waiting["LastError"]

    fault_proxy.restore()
    assert bosky(["flush"], env=via(fault_proxy, env)).returncode == 0
    assert [e["detail"]["EventId"] for e in arrived(consumer, 1)] == [waiting["EventId"]]


def test_a_slow_answer_inside_the_attempt_timeout_is_a_delivery(bosky, env, consumer,
                                                               fault_proxy) -> None:
    fault_proxy.delay(2.0)
    done = bosky(["--pass", "slow", "--project", consumer.project], env=via(fault_proxy, env))
    assert done.returncode == 0, done.stderr
    assert len(arrived(consumer, 1)) == 1
    assert fault_proxy.calls == 1
    assert spool_report(bosky, env)["events"] == []


def test_an_answer_lost_to_a_timeout_after_delivery_is_resent_under_the_same_id(
        bosky, env, consumer, fault_proxy) -> None:
    fault_proxy.delay(60.0, after_forward=True)  # EventBridge has it; the answer never comes
    done = bosky(["--fail", "late answer", "--project", consumer.project, "--timeout", "3"],
                 env=via(fault_proxy, env))
    assert done.returncode == 1 and "spooled" in done.stderr
    first = consumer.receive(expected=1, timeout=ARRIVAL)
    fault_proxy.restore()
    assert bosky(["flush"], env=via(fault_proxy, env)).returncode == 0
    copies = first + arrived(consumer, 1)
    assert len(copies) == 2
    assert len({e["detail"]["EventId"] for e in copies}) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_until_accepted(bosky, env, consumer, fault_proxy,
                                                  status: int) -> None:
    fault_proxy.http_error(status, times=2)
    done = bosky(["--fail", f"after {status}", "--project", consumer.project],
                 env=via(fault_proxy, env))
    assert done.returncode == 0, done.stderr
    assert len(arrived(consumer, 1)) == 1
    assert fault_proxy.calls == 3


def test_throttling_is_retried_until_accepted(bosky, env, consumer, fault_proxy) -> None:
    fault_proxy.throttle(times=4)
    done = bosky(["--pass", "throttled", "--project", consumer.project],
                 env=via(fault_proxy, env))
    assert done.returncode == 0, done.stderr
    assert len(arrived(consumer, 1)) == 1
    assert fault_proxy.calls == 5
    assert [r.outcome for r in put_calls(fault_proxy)] == ["throttled"] * 4 + ["forwarded"]


@pytest.mark.parametrize("fault, code", [
    ("http_500", "InternalException"),
    ("http_503", "ServiceUnavailable"),
    ("throttle", "ThrottlingException"),
])
def test_an_endpoint_failing_for_the_whole_bound_leaves_the_event_spooled_with_its_error(
        bosky, env, consumer, fault_proxy, fault: str, code: str) -> None:
    if fault == "throttle":
        fault_proxy.throttle(times=None)
    else:
        fault_proxy.http_error(int(fault[-3:]), times=None)
    done = bosky(["--fail", fault, "--project", consumer.project, "--timeout", "2"],
                 env=via(fault_proxy, env))
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert code in done.stderr and "spooled" in done.stderr
    (waiting,) = spool_report(bosky, env)["events"]
    assert code in waiting["LastError"] and waiting["Attempts"] >= 2

    fault_proxy.restore()
    assert bosky(["flush"], env=via(fault_proxy, env)).returncode == 0
    assert [e["detail"]["EventId"] for e in arrived(consumer, 1)] == [waiting["EventId"]]


# -- entries rejected inside an HTTP 200 ------------------------------------------------------


def test_a_flush_retries_only_the_entries_that_failed(bosky, env, consumer,
                                                      fault_proxy) -> None:
    events = spool_directly(env, consumer.project, fault_proxy.url, 3)
    fault_proxy.reject_entries("InternalFailure", indexes=[1], times=1)
    flushed = bosky(["flush"], env=via(fault_proxy, env))
    assert flushed.returncode == 0, flushed.stderr
    assert "delivered 3, still spooled 0" in flushed.stdout
    first, retry = put_calls(fault_proxy)
    assert entry_ids(first) == [e.event_id for e in events]
    assert entry_ids(retry) == [events[1].event_id]  # only the entry that failed
    copies = collections.Counter(e["detail"]["EventId"] for e in arrived(consumer, 3))
    assert copies == {e.event_id: 1 for e in events}


def test_an_entry_refused_for_good_is_set_aside_reported_and_not_retried(
        bosky, env, consumer, fault_proxy) -> None:
    events = spool_directly(env, consumer.project, fault_proxy.url, 3)
    fault_proxy.reject_entries("MalformedDetail", indexes=[1], times=1)
    flushed = bosky(["flush"], env=via(fault_proxy, env))
    assert flushed.returncode == 1
    assert "delivered 2, still spooled 0, rejected 1" in flushed.stdout
    assert "MalformedDetail" in flushed.stderr and NO_TRACEBACK not in flushed.stderr
    assert fault_proxy.calls == 1
    got = arrived(consumer, 2)
    assert sorted(e["detail"]["EventId"] for e in got) == sorted(
        [events[0].event_id, events[2].event_id])

    report = spool_report(bosky, env)
    assert report["events"] == []
    (rejected,) = report["rejected"]
    assert events[1].event_id in rejected
    again = bosky(["flush"], env=via(fault_proxy, env))
    assert again.returncode == 0 and "delivered 0" in again.stdout
    assert fault_proxy.calls == 1  # a refused entry is never sent again


def test_the_command_keeps_an_event_eventbridge_refuses_where_status_shows_it(
        bosky, env, consumer, fault_proxy) -> None:
    fault_proxy.reject_entries("MalformedDetail", times=None)
    done = bosky(["--fail", "refused", "--project", consumer.project],
                 env=via(fault_proxy, env))
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "MalformedDetail" in done.stderr and "spooled" not in done.stderr
    assert fault_proxy.calls == 1
    report = spool_report(bosky, env)
    assert report["events"] == []
    (rejected,) = report["rejected"]
    assert Path(rejected).name.split("-", 1)[1][: -len(".event")] in done.stderr


# -- answers lost on the way back ---------------------------------------------------------------


def test_an_answer_lost_after_forwarding_is_resent_under_the_same_id(bosky, env, consumer,
                                                                    fault_proxy) -> None:
    fault_proxy.drop_after_forward(times=1)
    done = bosky(["--pass", "twice", "--project", consumer.project], env=via(fault_proxy, env))
    assert done.returncode == 0, done.stderr
    copies = arrived(consumer, 2)
    assert len(copies) == 2 and len({e["detail"]["EventId"] for e in copies}) == 1
    assert fault_proxy.calls == 2


def test_a_request_dropped_before_forwarding_arrives_once(bosky, env, consumer,
                                                          fault_proxy) -> None:
    fault_proxy.drop(times=1)
    done = bosky(["--pass", "once", "--project", consumer.project], env=via(fault_proxy, env))
    assert done.returncode == 0, done.stderr
    assert len(arrived(consumer, 1)) == 1


class RawEndpoint:
    """Answers every request with fixed bytes, however un-HTTP-like, then hangs up."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self._read_request(conn)
                try:
                    conn.sendall(self.answer)
                except OSError:
                    pass

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            body += chunk

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("answer", [
    pytest.param(b"garbage, not HTTP\r\n\r\n", id="not-http"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"FailedEn", id="cut-short"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", id="huge-header"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", id="wrong-body"),
])
def test_an_endpoint_answering_nonsense_is_a_failure_not_a_crash(bosky, env, answer: bytes):
    endpoint = RawEndpoint(answer)
    try:
        done = bosky(["--fail", "nonsense", "--timeout", "2"],
                     env={**env, "AWS_ENDPOINT_URL_EVENTS": endpoint.url})
    finally:
        endpoint.close()
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "internal error" not in done.stderr and "spooled" in done.stderr
    assert len(spool_report(bosky, env)["events"]) == 1


# -- credentials that are not there yet -------------------------------------------------------


def _without_keys(env: Mapping[str, str]) -> Dict[str, str]:
    return {k: v for k, v in env.items()
            if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}


def test_instance_role_credentials_that_arrive_late(env, consumer, imds) -> None:
    """IMDS answers before the instance profile is attached: the role path is a 404."""
    imds.fail_paths["/latest/meta-data/iam"] = 404
    on_ec2 = {**_without_keys(env), "AWS_EC2_METADATA_DISABLED": "false",
              "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
    proc = start_bosky(["--pass", "role came late", "--project", consumer.project,
                        "--instance-id", "i-0late", "--timeout", "30"], on_ec2)

    def asked_for_role() -> int:
        return len([p for p in imds.paths("GET") if "/iam/security-credentials" in p])

    wait_for(lambda: asked_for_role() >= 2, 20, "bosky to look for role credentials twice")
    imds.fail_paths.clear()
    _, err = proc.communicate(timeout=45)
    assert proc.returncode == 0, err
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Message"] == "role came late"


def _role_not_attached_yet(env: Mapping[str, str], imds: Any) -> Dict[str, str]:
    """No keys anywhere, on an instance whose role is not attached yet: a
    source (the metadata service) that may still answer, so bosky waits."""
    imds.fail_paths["/latest/meta-data/iam"] = 404
    return {**_without_keys(env), "AWS_EC2_METADATA_DISABLED": "false",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}


def test_a_credentials_file_written_after_bosky_started(env, consumer, imds) -> None:
    no_keys = _role_not_attached_yet(env, imds)
    proc = start_bosky(["--pass", "keys came late", "--project", consumer.project,
                        "--timeout", "30"], no_keys)
    wait_for(lambda: sending(env), 20, "bosky to spool its event and start sending")
    time.sleep(1.0)  # some attempts find no credentials at all (the scene)
    creds = Path(env["AWS_SHARED_CREDENTIALS_FILE"])
    creds.parent.mkdir(parents=True, exist_ok=True)
    tmp = creds.with_suffix(".tmp")
    tmp.write_text(f"[default]\naws_access_key_id = {env['AWS_ACCESS_KEY_ID']}\n"
                   f"aws_secret_access_key = {env['AWS_SECRET_ACCESS_KEY']}\n")
    tmp.rename(creds)
    _, err = proc.communicate(timeout=45)
    assert proc.returncode == 0, err
    assert len(arrived(consumer, 1)) == 1


def test_no_credentials_for_the_whole_bound_leaves_the_event_spooled(bosky, env, consumer,
                                                                     imds) -> None:
    done = bosky(["--fail", "no keys", "--project", consumer.project, "--timeout", "2"],
                 env=_role_not_attached_yet(env, imds))
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "NoCredentials" in done.stderr and "spooled" in done.stderr
    assert bosky(["flush"], env=env).returncode == 0  # the keys are back
    assert len(arrived(consumer, 1)) == 1


# -- killed while sending ----------------------------------------------------------------------


def test_bosky_killed_while_sending_leaves_its_event_in_the_spool(bosky, env, consumer,
                                                                  fault_proxy) -> None:
    fault_proxy.hang()
    proc = start_bosky(["--fail", "killed mid-send", "--project", consumer.project,
                        "--timeout", "30"], via(fault_proxy, env))
    wait_for(lambda: fault_proxy.calls >= 1, 20, "the request to reach the endpoint")
    (record,) = sending(env)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait(10)
    (waiting,) = spool_report(bosky, env)["events"]
    assert waiting["EventId"] == record.event.event_id

    fault_proxy.restore()
    flushed = bosky(["flush"], env=via(fault_proxy, env))
    assert flushed.returncode == 0, flushed.stderr
    assert [e["detail"]["EventId"] for e in arrived(consumer, 1)] == [record.event.event_id]


def test_bosky_killed_after_eventbridge_took_the_event_resends_it_under_the_same_id(
        bosky, env, consumer, fault_proxy) -> None:
    fault_proxy.delay(60.0, after_forward=True)
    proc = start_bosky(["--fail", "killed after delivery", "--project", consumer.project,
                        "--timeout", "30"], via(fault_proxy, env))
    wait_for(lambda: fault_proxy.entries_forwarded >= 1, 20, "EventBridge to have the event")
    proc.kill()
    proc.wait(10)
    fault_proxy.restore()
    assert bosky(["flush"], env=via(fault_proxy, env)).returncode == 0
    copies = arrived(consumer, 2)
    assert len(copies) == 2 and len({e["detail"]["EventId"] for e in copies}) == 1


# -- the spool's filesystem full -------------------------------------------------------------


class TinyDisk:
    """A 64 KiB tmpfs over the spool directory, in a mount namespace of its own.

    A ``sleep`` started by ``unshare --mount --propagation private`` keeps the
    namespace alive; each step runs inside it with ``nsenter``, so the test
    drives the scene step by step. The host never sees the mount: when the
    holder dies, the namespace and the tmpfs go with it.
    """

    SIZE = 64 * 1024

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "600"])
        mine = os.readlink("/proc/self/ns/mnt")
        wait_for(lambda: os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != mine, 10,
                 "the private mount namespace")
        self.run(["mount", "-t", "tmpfs", "-o", f"size={self.SIZE},mode=0700",
                  "bosky-test-spool", str(spool_dir)])

    def run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "--", *argv],
                              capture_output=True, text=True, timeout=30, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} failed: {done.stderr}")
        return done

    def bosky(self, args: Sequence[str], env: Mapping[str, str],
              input: Optional[str] = None) -> subprocess.CompletedProcess[str]:
        inside = {**env, "PYTHONPATH": str(REPO_ROOT)}
        command = ["nsenter", "-t", str(self.holder.pid), "-m", "--", *bosky_command(inside)]
        return run_bosky(args, env=inside, input=input, command=command)

    def fill(self, leave: int = 0) -> None:
        """Fill the disk, then free ``leave`` bytes (whole pages on tmpfs)."""
        filler = str(self.spool_dir / "filler")
        self.run(["sh", "-c", f"cat /dev/zero > {filler}"], check=False)  # ends in ENOSPC
        if leave:
            self.run(["truncate", "-s", f"-{leave}", filler])

    def names(self) -> List[str]:
        return self.run(["ls", "-A", str(self.spool_dir)]).stdout.split()

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(10)


@pytest.fixture
def tiny_disk(env: Mapping[str, str]) -> Iterator[TinyDisk]:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("a private tmpfs needs root, unshare and nsenter")
    spool_dir = Path(env["BOSKY_SPOOL_DIR"])
    spool_dir.mkdir(mode=0o700)
    disk = TinyDisk(spool_dir)
    try:
        yield disk
    finally:
        disk.close()
    assert list(spool_dir.iterdir()) == []  # the host's directory never saw a byte


def test_a_full_spool_disk_does_not_stop_a_delivery(env, consumer, tiny_disk) -> None:
    tiny_disk.fill()
    done = tiny_disk.bosky(["--pass", "disk full, network fine", "--project", consumer.project],
                           env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(arrived(consumer, 1)) == 1


def test_endpoint_down_and_spool_disk_full_says_the_event_is_not_kept(env, fault_proxy,
                                                                      tiny_disk) -> None:
    fault_proxy.refuse()
    tiny_disk.fill()
    done = tiny_disk.bosky(["--fail", "nowhere to go", "--timeout", "1"],
                           env=via(fault_proxy, env))
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "not spooled" in done.stderr and "No space left on device" in done.stderr
    status = tiny_disk.bosky(["status", "--json"], env=env)
    assert status.returncode == 0, status.stderr
    assert '"events": []' in status.stdout and '"corrupt": []' in status.stdout


def test_a_nearly_full_disk_never_gets_half_a_record(env, fault_proxy, tiny_disk) -> None:
    """A 30 KB record with 8 KiB free: the write comes back short, not as an error."""
    fault_proxy.refuse()
    tiny_disk.fill(leave=8192)
    done = tiny_disk.bosky(["--fail", "-", "--timeout", "1"], env=via(fault_proxy, env),
                           input="x" * 30_000)
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "not spooled" in done.stderr and "No space left on device" in done.stderr
    assert [n for n in tiny_disk.names() if n.endswith(".event") or n.startswith(".tmp-")] == []
    status = tiny_disk.bosky(["status", "--json"], env=env)
    assert '"events": []' in status.stdout and '"corrupt": []' in status.stdout


def test_an_event_kept_before_the_disk_filled_survives_failed_flushes(env, consumer,
                                                                      fault_proxy,
                                                                      tiny_disk) -> None:
    fault_proxy.refuse()
    down = via(fault_proxy, env)
    done = tiny_disk.bosky(["--fail", "kept", "--project", consumer.project, "--timeout", "1"],
                           env=down)
    assert done.returncode == 1 and "spooled" in done.stderr
    tiny_disk.fill()
    failed = tiny_disk.bosky(["flush", "--timeout", "1"], env=down)
    assert failed.returncode == 1 and NO_TRACEBACK not in failed.stderr
    status = tiny_disk.bosky(["status", "--json"], env=env)
    assert '"corrupt": []' in status.stdout and "kept" not in status.stderr
    assert status.stdout.count('"EventId"') == 1

    fault_proxy.restore()
    flushed = tiny_disk.bosky(["flush"], env=down)
    assert flushed.returncode == 0, flushed.stderr
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Message"] == "kept"


# -- twenty at once ------------------------------------------------------------------------------


def test_twenty_bosky_runs_at_once_against_a_flaky_endpoint(bosky, env, consumer,
                                                            fault_proxy) -> None:
    """Parallel steps of a user-data script, while the endpoint errs, throttles and drops."""
    fault_proxy.http_error(503, times=4)
    fault_proxy.throttle(times=6)
    fault_proxy.drop(times=3)
    fault_proxy.drop_after_forward(times=3)
    fault_proxy.reject_entries("InternalFailure", times=3)
    fault_proxy.http_error(500, times=3)
    flaky = via(fault_proxy, env)
    procs = [start_bosky(["--info", f"step {i}", "--project", consumer.project,
                          "--timeout", "25"], flaky) for i in range(20)]
    outputs = [p.communicate(timeout=90) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert NO_TRACEBACK not in err
        assert proc.returncode == 0 or "spooled" in err, err

    flushed = bosky(["flush"], env=flaky)  # whatever a run gave up on
    assert flushed.returncode == 0, flushed.stderr
    events = arrived(consumer, 20)
    ids_by_message: Dict[str, set] = collections.defaultdict(set)  # type: ignore[type-arg]
    for event in events:
        ids_by_message[event["detail"]["Message"]].add(event["detail"]["EventId"])
    assert sorted(ids_by_message) == sorted(f"step {i}" for i in range(20))
    assert all(len(ids) == 1 for ids in ids_by_message.values())  # never under two ids
    assert len(events) - 20 <= 3  # extra copies only from the answers dropped after forwarding
    report = spool_report(bosky, env)
    assert (report["events"], report["corrupt"], report["rejected"]) == ([], [], [])
