"""Tests of the test tools: the moto EventBridge emulator, its consumers, the fault proxy.

These use plain boto3 ``put_events``, not bosky, so a failure here means the
tools are broken, not bosky. Each fault test shows the exact error a client
sees, because bosky's own tests rely on those errors being realistic.

Run: python -m pytest tests/test_support_smoke.py -q -p no:cacheprovider -p tests.support.fixtures
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.bounds import ARRIVAL, SLACK
from tests.support.emulator import (
    DOCUMENTED_PATTERN,
    DUMMY_ACCESS_KEY,
    DUMMY_SECRET_KEY,
    README_WRONG_PATTERN,
    Consumer,
    EventBridgeEmulator,
    make_consumer,
)
from tests.support.faultproxy import FaultProxy, TokenBucket
from tests.support.fixtures import make_aws_env, run_bosky, unique_project

#: No retries, short timeouts: each test sees the first failure as-is.
NO_RETRY = Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1})


def entry(source: str, **detail: Any) -> Dict[str, Any]:
    """One PutEvents entry shaped like bosky's."""
    return {
        "Source": source,
        "DetailType": "User Data",
        "Detail": json.dumps({"Status": "pass", "Message": "ok", **detail}),
        "Resources": ["i-0123456789abcdef0"],
    }


def events_via(emulator: EventBridgeEmulator, proxy: FaultProxy, config: Config = NO_RETRY) -> Any:
    """An EventBridge client whose endpoint is the proxy."""
    return emulator.client("events", endpoint_url=proxy.url, config=config)


# -- the emulator and consumers -----------------------------------------------------


def test_event_reaches_queue_through_documented_rule(
    eventbridge: EventBridgeEmulator, consumer: Consumer
) -> None:
    assert consumer.project
    sent = eventbridge.client("events").put_events(Entries=[entry(consumer.project, n=1)])
    assert sent["FailedEntryCount"] == 0

    [event] = consumer.receive(expected=1, timeout=10)

    assert event["id"] == sent["Entries"][0]["EventId"]
    assert event["detail-type"] == "User Data"
    assert event["source"] == consumer.project
    assert event["resources"] == ["i-0123456789abcdef0"]
    assert event["detail"] == {"Status": "pass", "Message": "ok", "n": 1}
    assert event["region"] == "us-east-1"
    assert event["account"] == "123456789012"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    assert consumer.drain(settle=0.3) == []  # receive() deleted what it read


def test_readme_detailtype_pattern_receives_nothing(eventbridge: EventBridgeEmulator) -> None:
    """The original README's ``detailType`` key matches nothing; ``detail-type`` does."""
    project = unique_project()
    with (
        make_consumer(eventbridge, pattern=DOCUMENTED_PATTERN) as right,
        make_consumer(eventbridge, pattern=README_WRONG_PATTERN) as wrong,
    ):
        eventbridge.client("events").put_events(Entries=[entry(project)])

        received = [e for e in right.drain(settle=0.5) if e["source"] == project]
        assert len(received) == 1
        assert wrong.drain(settle=0.5) == []


def test_consumer_sees_only_its_own_project(
    eventbridge: EventBridgeEmulator, consumer: Consumer
) -> None:
    assert consumer.project
    events = eventbridge.client("events")
    events.put_events(Entries=[entry(unique_project()), entry(consumer.project, mine=True)])

    received = consumer.drain(settle=0.5)

    assert [e["detail"]["mine"] for e in received] == [True]


def test_custom_bus_consumer(eventbridge: EventBridgeEmulator) -> None:
    bus = unique_project("bosky-bus")
    project = unique_project()
    with make_consumer(eventbridge, bus_name=bus) as on_bus:
        assert on_bus.created_bus
        eventbridge.client("events").put_events(Entries=[{**entry(project), "EventBusName": bus}])
        assert [e["source"] for e in on_bus.receive(expected=1, timeout=ARRIVAL)] == [project]


def test_receive_returns_what_arrived_when_fewer_than_expected(consumer: Consumer) -> None:
    began = time.monotonic()
    assert consumer.receive(expected=1, timeout=1.5) == []
    assert 1.0 <= time.monotonic() - began < 1.5 + SLACK


def test_moto_behaviours_the_tests_rely_on(
    eventbridge: EventBridgeEmulator, consumer: Consumer
) -> None:
    """Pinned so a moto upgrade that changes them is noticed here first."""
    assert consumer.project
    events = eventbridge.client("events")
    bad = {**entry(consumer.project), "Detail": "not json"}
    result = events.put_events(Entries=[bad, entry(consumer.project)])
    # A detail that is not JSON is a per-entry failure inside an HTTP 200.
    assert result["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert result["FailedEntryCount"] == 1
    assert result["Entries"][0] == {
        "ErrorCode": "MalformedDetail",
        "ErrorMessage": "Detail is malformed.",
    }
    assert "EventId" in result["Entries"][1]
    assert len(consumer.drain(settle=0.3)) == 1
    # More than 10 entries fail the whole call.
    with pytest.raises(botocore.exceptions.ClientError) as info:
        events.put_events(Entries=[entry(consumer.project)] * 11)
    assert info.value.response["Error"]["Code"] == "ValidationException"


# -- the proxy: pass-through ---------------------------------------------------------


def test_proxy_passes_events_through_and_counts(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    client = events_via(eventbridge, fault_proxy)
    for _ in range(2):  # the second call reuses the keep-alive connection
        client.put_events(Entries=[entry(consumer.project), entry(consumer.project)])

    assert len(consumer.receive(expected=4, timeout=ARRIVAL)) == 4
    assert (fault_proxy.calls, fault_proxy.entries_seen, fault_proxy.entries_forwarded) == (2, 4, 4)
    assert [r.outcome for r in fault_proxy.requests] == ["forwarded", "forwarded"]
    assert fault_proxy.handler_errors == []
    fault_proxy.reset()
    assert (fault_proxy.calls, fault_proxy.entries_forwarded, fault_proxy.requests) == (0, 0, [])


class _Capture(BaseHTTPRequestHandler):
    """An upstream that records the request and answers like PutEvents."""

    protocol_version = "HTTP/1.1"
    seen: List[Tuple[Dict[str, str], bytes, str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((dict(self.headers.items()), body, self.path))
        answer = b'{"FailedEntryCount": 0, "Entries": [{"EventId": "x"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def capture_upstream() -> Iterator[Tuple[str, List[Tuple[Dict[str, str], bytes, str]]]]:
    """A recording upstream on loopback instead of moto."""
    _Capture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Capture.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _signature_verifies(headers: Dict[str, str], body: bytes, path: str) -> bool:
    """Recompute the SigV4 signature over what the upstream received."""
    auth_header = headers["Authorization"]
    signed = re.search(r"SignedHeaders=([^,]+)", auth_header)
    given_sig = re.search(r"Signature=([0-9a-f]+)", auth_header)
    assert signed and given_sig
    names = signed.group(1).split(";")
    lower = {k.lower(): v for k, v in headers.items()}
    request = AWSRequest(
        method="POST",
        url=f"http://{lower['host']}{path}",
        data=body,
        headers={name: lower[name] for name in names},
    )
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(Credentials(DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY), "events", "us-east-1")
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    return bool(signer.signature(string_to_sign, request) == given_sig.group(1))


def test_proxy_keeps_host_and_signature(
    eventbridge: EventBridgeEmulator,
    capture_upstream: Tuple[str, List[Tuple[Dict[str, str], bytes, str]]],
) -> None:
    upstream, seen = capture_upstream
    with FaultProxy(upstream) as proxy:
        events_via(eventbridge, proxy).put_events(Entries=[entry("p")])
    [(headers, body, path)] = seen
    assert headers["Host"] == proxy.url.removeprefix("http://")
    assert headers["X-Amz-Target"] == "AWSEvents.PutEvents"
    assert _signature_verifies(headers, body, path)


# -- the proxy: faults ----------------------------------------------------------------


def test_refuse_gives_connection_refused_then_restore_same_port(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    client = events_via(eventbridge, fault_proxy)
    client.put_events(Entries=[entry(consumer.project)])  # leaves a pooled connection
    url = fault_proxy.url

    fault_proxy.refuse()
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        client.put_events(Entries=[entry(consumer.project)])

    fault_proxy.restore()
    assert fault_proxy.url == url
    client.put_events(Entries=[entry(consumer.project)])
    assert len(consumer.drain(settle=0.3)) == 2


def test_hang_gives_read_timeout_and_delivers_nothing(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    short = Config(connect_timeout=1, read_timeout=0.5, retries={"total_max_attempts": 1})
    client = events_via(eventbridge, fault_proxy, short)
    fault_proxy.hang()
    began = time.monotonic()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.put_events(Entries=[entry(consumer.project)])
    assert time.monotonic() - began < 1.5 + SLACK  # connect 1 s + read 0.5 s

    fault_proxy.restore()
    assert consumer.drain(settle=0.3) == []
    client.put_events(Entries=[entry(consumer.project)])
    assert len(consumer.receive(expected=1, timeout=ARRIVAL)) == 1
    assert [r.outcome for r in fault_proxy.requests] == ["hung", "forwarded"]


def test_delay_answers_late(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    fault_proxy.delay(0.6)
    began = time.monotonic()
    events_via(eventbridge, fault_proxy).put_events(Entries=[entry(consumer.project)])
    assert 0.6 <= time.monotonic() - began < 0.6 + SLACK
    assert len(consumer.receive(expected=1, timeout=ARRIVAL)) == 1


def test_delay_after_forward_times_out_but_delivers(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    """A slow answer makes the client give up on an event that did arrive."""
    assert consumer.project
    short = Config(connect_timeout=1, read_timeout=0.5, retries={"total_max_attempts": 1})
    fault_proxy.delay(2.0, after_forward=True)
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        events_via(eventbridge, fault_proxy, short).put_events(Entries=[entry(consumer.project)])
    assert len(consumer.receive(expected=1, timeout=ARRIVAL)) == 1


@pytest.mark.parametrize(
    ("status", "code"), [(500, "InternalException"), (503, "ServiceUnavailable")]
)
def test_http_error(
    eventbridge: EventBridgeEmulator,
    fault_proxy: FaultProxy,
    consumer: Consumer,
    status: int,
    code: str,
) -> None:
    assert consumer.project
    fault_proxy.http_error(status)
    client = events_via(eventbridge, fault_proxy)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.put_events(Entries=[entry(consumer.project)])
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert info.value.response["Error"]["Code"] == code
    client.put_events(Entries=[entry(consumer.project)])  # times=1 is spent
    assert len(consumer.drain(settle=0.3)) == 1


def test_http_error_times_with_botocore_retries(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    """botocore retries 5xx itself: two injected 503s cost three calls, one event."""
    assert consumer.project
    fault_proxy.http_error(503, times=2)
    retrying = Config(
        connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 3}
    )
    result = events_via(eventbridge, fault_proxy, retrying).put_events(
        Entries=[entry(consumer.project)]
    )
    assert result["ResponseMetadata"]["RetryAttempts"] == 2
    assert fault_proxy.calls == 3
    assert len(consumer.drain(settle=0.3)) == 1


def test_throttle_gives_throttling_exception(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    fault_proxy.throttle(times=2)
    client = events_via(eventbridge, fault_proxy)
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            client.put_events(Entries=[entry(consumer.project)])
        error = info.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error["Error"] == {"Code": "ThrottlingException", "Message": "Rate exceeded"}
        assert error["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ThrottlingException"
    client.put_events(Entries=[entry(consumer.project)])
    assert len(consumer.drain(settle=0.3)) == 1


def test_reject_entries_is_a_partial_failure(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    fault_proxy.reject_entries(indexes=[0])
    result = events_via(eventbridge, fault_proxy).put_events(
        Entries=[entry(consumer.project, n=0), entry(consumer.project, n=1)]
    )
    assert result["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert result["FailedEntryCount"] == 1
    assert result["Entries"][0] == {
        "ErrorCode": "InternalFailure",
        "ErrorMessage": "Internal service failure.",
    }
    [delivered] = consumer.drain(settle=0.3)
    assert delivered["detail"]["n"] == 1
    assert delivered["id"] == result["Entries"][1]["EventId"]
    assert (fault_proxy.entries_seen, fault_proxy.entries_forwarded) == (2, 1)


def test_reject_entries_callable_and_all(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    client = events_via(eventbridge, fault_proxy)
    fault_proxy.reject_entries(
        "ThrottlingException", indexes=lambda i, e: json.loads(e["Detail"])["n"] == 1
    )
    fault_proxy.reject_entries("InternalFailure")  # queued: applies to the next call
    first = client.put_events(Entries=[entry(consumer.project, n=n) for n in range(3)])
    second = client.put_events(Entries=[entry(consumer.project, n=9)])

    assert first["FailedEntryCount"] == 1
    assert first["Entries"][1]["ErrorCode"] == "ThrottlingException"
    assert second["FailedEntryCount"] == 1
    assert second["Entries"] == [
        {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure."}
    ]
    assert sorted(e["detail"]["n"] for e in consumer.drain(settle=0.3)) == [0, 2]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.booleans(), min_size=1, max_size=10))
def test_partial_failure_shape_property(
    eventbridge: EventBridgeEmulator,
    fault_proxy: FaultProxy,
    consumer: Consumer,
    rejected: List[bool],
) -> None:
    """Any subset rejected: right count, original order, only the rest delivered."""
    assert consumer.project
    fault_proxy.reject_entries(indexes=[i for i, r in enumerate(rejected) if r])
    result = events_via(eventbridge, fault_proxy).put_events(
        Entries=[entry(consumer.project, n=i) for i in range(len(rejected))]
    )
    assert result["FailedEntryCount"] == sum(rejected)
    assert [("ErrorCode" in e) for e in result["Entries"]] == rejected
    accepted = {e["EventId"]: i for i, e in enumerate(result["Entries"]) if "EventId" in e}
    delivered = consumer.receive(expected=len(accepted), timeout=ARRIVAL) if accepted else []
    delivered += consumer.drain(settle=0.1)
    assert {e["id"]: e["detail"]["n"] for e in delivered} == accepted


def test_drop_after_forward_delivers_but_client_errors(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    fault_proxy.drop_after_forward()
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        events_via(eventbridge, fault_proxy).put_events(Entries=[entry(consumer.project)])
    assert len(consumer.receive(expected=1, timeout=ARRIVAL)) == 1


def test_drop_delivers_nothing(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    assert consumer.project
    fault_proxy.drop()
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        events_via(eventbridge, fault_proxy).put_events(Entries=[entry(consumer.project)])
    assert consumer.drain(settle=0.3) == []


def test_retry_after_lost_answer_duplicates(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy, consumer: Consumer
) -> None:
    """What a retrying client does to consumers when an answer is lost: two events."""
    assert consumer.project
    fault_proxy.drop_after_forward()
    retrying = Config(
        connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}
    )
    events_via(eventbridge, fault_proxy, retrying).put_events(Entries=[entry(consumer.project)])
    assert len(consumer.drain(settle=0.5)) == 2


def test_rate_limit_never_lets_more_than_the_rate_through(
    eventbridge: EventBridgeEmulator, fault_proxy: FaultProxy
) -> None:
    """A 50 calls/s bucket (burst 1) under 4 busy clients for ~2 s.

    What the proxy guarantees, whatever the machine's load: never more than
    rate x time + burst calls pass, every refused call is a ThrottlingException
    as EventBridge gives, and calls do pass. How many pass on a busy machine is
    a throughput figure, which benchmarks/load.py measures.
    """
    rate, duration = 50.0, 2.0
    fault_proxy.rate_limit(rate, burst=1)
    client = events_via(
        eventbridge,
        fault_proxy,
        Config(
            connect_timeout=1,
            read_timeout=5,
            max_pool_connections=8,
            retries={"total_max_attempts": 1},
        ),
    )
    outcomes: List[str] = []
    lock = threading.Lock()
    began = time.monotonic()

    def hammer() -> None:
        for _ in range(2000):  # bounded even if the clock misbehaves
            if time.monotonic() - began >= duration:
                return
            try:
                client.put_events(Entries=[entry("bosky-load-test-unmatched")])
                outcome = "ok"
            except botocore.exceptions.ClientError as exc:
                outcome = exc.response["Error"]["Code"]
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - began

    ok = outcomes.count("ok")
    assert set(outcomes) <= {"ok", "ThrottlingException"}
    assert outcomes.count("ThrottlingException") > 0
    assert 0 < ok <= rate * elapsed + 1  # burst 1


def test_token_bucket_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    time.sleep(0.25)
    assert bucket.take()


# -- cleanup ----------------------------------------------------------------------------


def _faultproxy_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("faultproxy-")]


def _alive(pid: Optional[int]) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); /proc tells them apart.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def test_emulator_and_proxy_leave_nothing_behind() -> None:
    assert _faultproxy_threads() == []
    with EventBridgeEmulator() as emulator:
        pid = emulator.pid
        assert _alive(pid)
        proxy = FaultProxy(emulator.url)
        client = events_via(emulator, proxy)
        client.put_events(Entries=[entry("p")])  # an idle keep-alive connection stays open
        proxy.hang()
        errors: List[BaseException] = []

        def call_hung() -> None:
            try:
                client.put_events(Entries=[entry("p")])
            except botocore.exceptions.BotoCoreError as exc:
                errors.append(exc)

        hung = threading.Thread(target=call_hung)
        hung.start()
        time.sleep(0.3)
        assert len(_faultproxy_threads()) >= 2
        proxy.close()
        hung.join(timeout=5)
        assert [type(e) for e in errors] == [botocore.exceptions.ConnectionClosedError]
        assert _faultproxy_threads() == []
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            client.put_events(Entries=[entry("p")])
    assert not _alive(pid)
    assert emulator.pid is None


def test_emulator_stops_when_start_fails_and_on_double_stop() -> None:
    emulator = EventBridgeEmulator(start_timeout=0.001)
    with pytest.raises(RuntimeError):
        emulator.start()
    assert emulator.pid is None
    emulator.stop()  # idempotent


# -- the bosky runner's environment -------------------------------------------------------


def test_aws_env_is_hermetic(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real")
    monkeypatch.setenv("BOSKY_PROJECT", "real-project")
    env = make_aws_env("http://127.0.0.1:1", tmp_path / "home")
    assert "AWS_PROFILE" not in env and "AWS_SESSION_TOKEN" not in env
    assert "BOSKY_PROJECT" not in env
    assert env["AWS_ENDPOINT_URL_EVENTS"] == "http://127.0.0.1:1"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["HOME"] == str(tmp_path / "home")
    assert list((tmp_path / "home").iterdir()) == []


def test_run_bosky_uses_given_command_env_and_timeout(tmp_path: Any) -> None:
    import sys

    env = make_aws_env("http://127.0.0.1:1", tmp_path / "home")
    script = "import os,sys; print(os.environ['AWS_ENDPOINT_URL_EVENTS'], sys.argv[1:])"
    done = run_bosky(["--pass", "hi"], env=env, command=[sys.executable, "-c", script])
    assert done.returncode == 0
    assert done.stdout.strip() == "http://127.0.0.1:1 ['--pass', 'hi']"
    with pytest.raises(Exception, match="timed out"):
        run_bosky(
            [], env=env, timeout=0.5, command=[sys.executable, "-c", "import time; time.sleep(10)"]
        )


def test_emulator_dies_with_a_killed_test_run(tmp_path: Any) -> None:
    """Even SIGKILL of the test process (no teardown at all) leaves no server behind."""
    import signal
    import subprocess
    import sys

    script = (
        "import time; from tests.support.emulator import EventBridgeEmulator\n"
        "e = EventBridgeEmulator().start(); print(e.pid, flush=True); time.sleep(60)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert runner.stdout is not None
        server_pid = int(runner.stdout.readline())
        assert _alive(server_pid)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server_pid)
