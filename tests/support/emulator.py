"""A local EventBridge (moto server) and SQS-backed consumers of its events.

Why a real server process rather than ``moto.mock_aws``: bosky is tested as a
subprocess (the way cloud-init runs it), and an in-process mock cannot be seen
from another process. ``moto_server`` speaks real HTTP on loopback, so the very
same botocore code path that talks to AWS in production is exercised, with only
``AWS_ENDPOINT_URL_EVENTS`` pointing elsewhere.

Why SQS consumers: the only honest way to assert what a *consumer* of bosky's
events receives is to do what a consumer does -- put an EventBridge rule with an
event pattern on the bus and read the matched events from the rule's target.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import weakref
from dataclasses import dataclass, field
from typing import IO, Any, Dict, List, Mapping, Optional

import boto3
from botocore.config import Config

from .bounds import ARRIVAL

DEFAULT_REGION = "us-east-1"
#: moto's fixed account id; it appears in every ARN the emulator makes.
DEFAULT_ACCOUNT = "123456789012"
#: The event pattern the bosky documentation tells consumers to use.
DOCUMENTED_PATTERN: Dict[str, Any] = {"detail-type": ["User Data"]}
#: The pattern the original bosky README showed; it matches nothing.
README_WRONG_PATTERN: Dict[str, Any] = {"detailType": ["User Data"]}
DUMMY_ACCESS_KEY = "AKIDTESTINGBOSKY0000"
DUMMY_SECRET_KEY = "bosky-testing-secret-not-a-real-key"

#: Explicit timeouts for every emulator call; read_timeout is above the 20 s
#: maximum SQS long poll that :meth:`Consumer.receive` may use.
DEFAULT_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=40, retries={"max_attempts": 2})

#: Seconds to wait for moto_server to answer after it was started. Measured
#: start is ~0.4 s; the margin is for a loaded CI machine.
START_TIMEOUT = 30.0
#: Seconds to wait for a terminated server before killing it.
STOP_TIMEOUT = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago.

    There is an unavoidable race between closing this probe socket and the
    server binding the port; :meth:`EventBridgeEmulator.start` retries on it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


#: Run by ``python -c`` as the server process: ``BOOT <parent pid> <fast 0|1> <moto args>``.
#:
#: - A watchdog thread exits the server when its parent (the test run) is gone,
#:   so even a test run killed with SIGKILL leaves no server behind.
#: - With fast=1, ``jsonpath_ng.ext.parse`` is memoised. moto's EventBridge
#:   parses the same eight JSONPath expressions (a PLY grammar, ~19 ms each)
#:   for every event delivered to every matching rule: ~150 ms per event. The
#:   expressions are constant and parsed paths are immutable, so the cache
#:   changes nothing but the time (~5 ms per event).
_BOOTSTRAP = """
import functools, os, sys, threading, time
parent, fast = int(sys.argv[1]), sys.argv[2] == "1"
def _watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=_watch, name="parent-watchdog", daemon=True).start()
if fast:
    try:
        import jsonpath_ng.ext as _ext
        _ext.parse = functools.lru_cache(maxsize=512)(_ext.parse)
    except ImportError:
        pass
from moto.server import main
sys.exit(main(sys.argv[3:]))
"""


def _server_command(host: str, port: int, fast_jsonpath: bool = True) -> List[str]:
    """Prefer this interpreter's moto (the test venv's), else ``moto_server`` on PATH."""
    args = ["-H", host, "-p", str(port)]
    if _has_server_module():
        flag = "1" if fast_jsonpath else "0"
        return [sys.executable, "-c", _BOOTSTRAP, str(os.getpid()), flag, *args]
    exe = shutil.which("moto_server")
    if exe is None:
        raise RuntimeError(
            "moto's server is not installed for this interpreter; "
            f"run: {sys.executable} -m pip install 'moto[server]'"
        )
    return [exe, *args]


def _has_server_module() -> bool:
    """True when ``moto.server`` and its web dependencies are importable."""
    try:
        return (
            importlib.util.find_spec("moto.server") is not None
            and importlib.util.find_spec("flask") is not None
        )
    except ModuleNotFoundError:
        return False


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Terminate ``proc`` (and its process group), then kill it if it lingers.

    Module-level so :func:`weakref.finalize` can call it without keeping the
    emulator object alive; it is idempotent.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: start_new_session
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout)


def _close_file(handle: IO[bytes]) -> None:
    """Close the server log file (finalizer helper)."""
    with contextlib.suppress(OSError):
        handle.close()


class EventBridgeEmulator:
    """``moto_server`` on 127.0.0.1 as a subprocess, with boto3 clients for it.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    ``fast_jsonpath`` (default on) memoises moto's JSONPath parsing in the
    server, which makes rule delivery ~30x faster without changing results. The process is
    also stopped when this object is garbage-collected or the interpreter exits,
    so a failing test never leaves a server behind.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        region: str = DEFAULT_REGION,
        start_timeout: float = START_TIMEOUT,
        fast_jsonpath: bool = True,
    ) -> None:
        self.host = host
        self.fast_jsonpath = fast_jsonpath
        self.port = port or 0
        self.region = region
        self.start_timeout = start_timeout
        self.start_seconds: Optional[float] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None
        self._finalizers: List[weakref.finalize[Any, Any]] = []

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint URL for every service the emulator serves."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        """The server's process id while it runs (for leak checks)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EventBridgeEmulator:
        """Start the server and wait until it answers; retry a lost port race."""
        if self.running:
            return self
        attempts = 1 if self.port else 3
        last_error: Optional[Exception] = None
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            try:
                self._start_on(port)
                return self
            except RuntimeError as exc:  # port taken, or server died at start
                last_error = exc
                self.stop()
        raise RuntimeError(f"moto_server did not start: {last_error}")

    def _start_on(self, port: int) -> None:
        """Spawn the server on ``port`` and block until it is ready."""
        self.port = port
        self._log = tempfile.TemporaryFile(prefix="moto-server-")  # noqa: SIM115 (closed in stop)
        began = time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # moto serves only what it is asked for; make sure no real AWS settings leak in.
        for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
            env.pop(key, None)
        self._proc = subprocess.Popen(
            _server_command(self.host, port, self.fast_jsonpath),
            stdin=subprocess.DEVNULL,
            stdout=self._log,  # a file, never a pipe: moto logs every request
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # keeps Ctrl-C in pytest from racing our stop
        )
        self._finalizers = [
            weakref.finalize(self, _stop_process, self._proc),
            weakref.finalize(self, _close_file, self._log),
        ]
        self._wait_ready(began)
        self.start_seconds = time.monotonic() - began

    def _wait_ready(self, began: float) -> None:
        """Poll moto's dashboard API until it answers, the process dies, or time is up."""
        deadline = began + self.start_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"exited with {self._proc.returncode}: {self.log_text()}")
            if self._answers() and self._proc.poll() is None:
                return  # (poll again: a foreign server on a raced port also answers)
            time.sleep(0.05)
        raise RuntimeError(f"no answer within {self.start_timeout} s: {self.log_text()}")

    def _answers(self) -> bool:
        """One bounded readiness probe."""
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Stop the server: terminate, then kill. Safe to call more than once."""
        for finalizer in self._finalizers:
            finalizer()  # runs _stop_process / _close_file once
        self._finalizers = []
        self._proc = None
        self._log = None

    def __enter__(self) -> EventBridgeEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_text(self, limit: int = 4000) -> str:
        """The tail of the server's output, for failure messages."""
        if self._log is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._log.flush()
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - limit))
            return self._log.read().decode("utf-8", "replace")
        return ""

    # -- clients -------------------------------------------------------------

    def client(
        self,
        service: str,
        region: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        config: Optional[Config] = None,
    ) -> Any:
        """A boto3 client with dummy credentials whose endpoint is the emulator.

        ``endpoint_url`` lets a test talk through a :class:`FaultProxy` instead.
        A private boto3 session keeps the caller's ``~/.aws`` and the default
        session out of the picture.
        """
        session = boto3.session.Session(
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
            region_name=region or self.region,
        )
        return session.client(  # type: ignore[call-overload,unused-ignore]
            service,
            endpoint_url=endpoint_url or self.url,
            config=config or DEFAULT_CLIENT_CONFIG,
        )

    def reset(self) -> None:
        """Forget every resource (moto's reset API); rarely needed, names are unique."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10.0):
            pass


# -- consumers ----------------------------------------------------------------


def _unique(prefix: str) -> str:
    """A name unique to one test, valid for rules, queues and buses (<= 64 chars)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _queue_policy(queue_arn: str, rule_arn: str) -> str:
    """The queue policy a real account needs so EventBridge may deliver to it.

    moto does not enforce it; it is here so the setup is the one a real
    consumer would copy.
    """
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowEventBridgeRule",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
    )


def _account_from_arn(arn: str) -> str:
    """The account field of an ARN (``arn:partition:service:region:account:...``)."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else DEFAULT_ACCOUNT


@dataclass
class Consumer:
    """An EventBridge rule whose target is an SQS queue: what a consumer sees.

    ``project`` is set by the ``consumer`` fixture: the unique event ``Source``
    the rule filters on, so tests never see each other's events.
    """

    emulator: EventBridgeEmulator
    bus_name: str
    rule_name: str
    rule_arn: str
    queue_url: str
    queue_arn: str
    pattern: Dict[str, Any]
    project: Optional[str] = None
    created_bus: bool = False
    _sqs: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._sqs is None:
            # read_timeout above the 20 s SQS long-poll maximum.
            self._sqs = self.emulator.client("sqs")

    def receive(self, expected: int = 1, timeout: float = ARRIVAL) -> List[Dict[str, Any]]:
        """Long-poll until at least ``expected`` events arrived or ``timeout`` passed.

        Returns what was read (possibly fewer than expected: the caller asserts),
        deleted from the queue, as parsed EventBridge envelopes in arrival order.
        """
        events: List[Dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(events) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = max(0, min(20, math.floor(remaining)))
            events.extend(self._read_batch(wait))
            if wait == 0 and len(events) < expected:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return events

    def drain(self, settle: float = 1.0, max_wait: float = 30.0) -> List[Dict[str, Any]]:
        """Everything that arrives until nothing new came for ``settle`` seconds.

        Use it to assert "exactly one" or "none": a duplicate or a stray event
        would show up here. ``max_wait`` bounds a queue that never goes quiet.
        """
        events: List[Dict[str, Any]] = []
        hard_deadline = time.monotonic() + max_wait
        quiet_until = time.monotonic() + settle
        while time.monotonic() < min(quiet_until, hard_deadline):
            batch = self._read_batch(0)
            if batch:
                events.extend(batch)
                quiet_until = time.monotonic() + settle
            else:
                time.sleep(0.05)
        return events

    def _read_batch(self, wait_seconds: int) -> List[Dict[str, Any]]:
        """One ReceiveMessage call; deletes what it got and returns the envelopes."""
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        )
        messages = response.get("Messages", [])
        if messages:
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        return [self._envelope(m["Body"]) for m in messages]

    def _envelope(self, body: str) -> Dict[str, Any]:
        """Parse one delivered event.

        moto 5.2.1's default SQS input template omits the envelope's ``account``
        field that real EventBridge always sets; it is filled in from the queue
        ARN (only when missing) so tests can assert on the real envelope shape.
        """
        event: Dict[str, Any] = json.loads(body)
        event.setdefault("account", _account_from_arn(self.queue_arn))
        return event

    def close(self) -> None:
        """Remove the target, rule, queue and (if this consumer made it) the bus."""
        events = self.emulator.client("events")
        with contextlib.suppress(Exception):
            events.remove_targets(Rule=self.rule_name, EventBusName=self.bus_name, Ids=["queue"])
            events.delete_rule(Name=self.rule_name, EventBusName=self.bus_name)
        with contextlib.suppress(Exception):
            self._sqs.delete_queue(QueueUrl=self.queue_url)
        if self.created_bus:
            with contextlib.suppress(Exception):
                events.delete_event_bus(Name=self.bus_name)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _ensure_bus(events: Any, bus_name: str) -> bool:
    """Create ``bus_name`` unless it is the default bus or exists; True if created."""
    if bus_name == "default":
        return False
    try:
        events.create_event_bus(Name=bus_name)
    except events.exceptions.ResourceAlreadyExistsException:
        return False
    return True


def make_consumer(
    emulator: EventBridgeEmulator,
    bus_name: str = "default",
    pattern: Optional[Mapping[str, Any]] = None,
    queue_name: Optional[str] = None,
    rule_name: Optional[str] = None,
    project: Optional[str] = None,
) -> Consumer:
    """Set up bus (if not default), rule, queue with policy, and target.

    ``pattern`` defaults to the documented ``{"detail-type": ["User Data"]}``.
    Names default to unique ones so consumers never share a queue.
    """
    events = emulator.client("events")
    sqs = emulator.client("sqs")
    created_bus = _ensure_bus(events, bus_name)
    event_pattern = dict(pattern if pattern is not None else DOCUMENTED_PATTERN)
    rule = rule_name or _unique("bosky-rule")
    queue = queue_name or _unique("bosky-queue")
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule_arn = events.put_rule(
        Name=rule, EventBusName=bus_name, EventPattern=json.dumps(event_pattern), State="ENABLED"
    )["RuleArn"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes={"Policy": _queue_policy(queue_arn, rule_arn)}
    )
    events.put_targets(
        Rule=rule, EventBusName=bus_name, Targets=[{"Id": "queue", "Arn": queue_arn}]
    )
    return Consumer(
        emulator=emulator,
        bus_name=bus_name,
        rule_name=rule,
        rule_arn=rule_arn,
        queue_url=queue_url,
        queue_arn=queue_arn,
        pattern=event_pattern,
        project=project,
        created_bus=created_bus,
        _sqs=sqs,
    )
