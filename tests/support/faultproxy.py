"""A reverse proxy on loopback that injects the faults real networks and EventBridge produce.

Why a proxy and not mocks: bosky runs as a subprocess (as cloud-init runs it),
so the only seam that reaches its botocore is the endpoint URL. Clients point
``AWS_ENDPOINT_URL_EVENTS`` (or ``endpoint_url``) at :attr:`FaultProxy.url`;
nothing is patched, and every failure is seen the way production sees it: a
refused connection, a read timeout, an HTTP 5xx, a throttling error, a
partial failure inside an HTTP 200, a reply lost after delivery, a redirect
to another host (:class:`Elsewhere` records what reaches it), an answer
dripped a byte at a time, or bytes that are no HTTP at all.

The proxy forwards the request line, headers (the ``Host`` header unchanged,
so a SigV4 signature made for the proxy's URL stays valid) and body to the
upstream, and relays the upstream's answer. Faults are switched at run time
from the test thread; every switch is guarded by one lock.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import traceback
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

PUT_EVENTS_TARGET = "AWSEvents.PutEvents"
AWS_JSON = "application/x-amz-json-1.1"

#: Headers that describe one hop, not the message (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)

#: Default AWS error type for an injected HTTP status (EventBridge's modeled 500
#: is ``InternalException``; 503 is the generic AWS ``ServiceUnavailable``).
ERROR_TYPES = {500: "InternalException", 503: "ServiceUnavailable"}
#: Default messages for entry-level error codes, as EventBridge words them.
ENTRY_ERROR_MESSAGES = {
    "InternalFailure": "Internal service failure.",
    "ThrottlingException": "Rate exceeded",
    "MalformedDetail": "Detail is malformed.",
}

#: Where :meth:`FaultProxy.drip` can be slow.
DRIP_PARTS = ("headers", "body", "chunks")

Headers = List[Tuple[str, str]]
EntrySelector = Union[None, Sequence[int], Callable[[int, Mapping[str, Any]], bool]]


@dataclass
class RequestRecord:
    """One request the proxy received, and what it did with it."""

    at: float
    method: str
    path: str
    target: Optional[str]
    body: bytes
    entries: List[Dict[str, Any]]
    outcome: str = "pending"
    status: Optional[int] = None

    @property
    def is_put_events(self) -> bool:
        """True for an EventBridge PutEvents call."""
        return self.target == PUT_EVENTS_TARGET

    @property
    def is_query(self) -> bool:
        """True for an AWS Query API call (Auto Scaling, CloudFormation): errors answer in XML."""
        return self.target is None and b"Action=" in self.body

    @property
    def action(self) -> Optional[str]:
        """The Query API operation called, if any."""
        if not self.is_query:
            return None
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"))).get("Action")


@dataclass
class _Fault:
    """A counted response fault; ``remaining`` None means until restore()."""

    kind: str
    remaining: Optional[int]
    params: Dict[str, Any] = field(default_factory=dict)

    def applies_to(self, record: RequestRecord) -> bool:
        """Entry rejection only makes sense for PutEvents; the rest hit any request."""
        return record.is_put_events if self.kind == "reject_entries" else True


@dataclass
class _Upstream:
    """A fully read upstream response."""

    status: int
    reason: str
    headers: Headers
    body: bytes


@dataclass
class _Plan:
    """What the proxy will do with one request, fixed when it arrives."""

    hang: bool
    delay: float
    delay_after: bool
    release: threading.Event
    rate_limited: bool = False
    fault: Optional[_Fault] = None


class TokenBucket:
    """Admit ``rate`` calls per second on average with bursts up to ``burst``.

    The same model AWS uses for API rate quotas, so a load test sees throttling
    set in once the burst is spent and then about ``rate`` successes a second.
    """

    def __init__(self, rate: float, burst: Optional[float] = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose connection threads are named and tracked.

    Tracking lets :meth:`FaultProxy.close` cut keep-alive connections and join
    every thread, so a test can assert nothing is left behind.
    """

    daemon_threads = True
    allow_reuse_address = True  # restore() must rebind the same port at once

    def __init__(self, address: Tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"faultproxy-conn-{self.server_address[1]}",
            daemon=True,
        )
        self.proxy._track(thread, request)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.proxy._untrack(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep tracebacks out of the test output; FaultProxy.handler_errors has them."""
        self.proxy._note_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the owning :class:`FaultProxy`."""

    protocol_version = "HTTP/1.1"  # keep-alive, like AWS endpoints
    # Headers and body go out in separate writes; with Nagle on, the client's
    # delayed ACK would add ~40 ms to every answer.
    disable_nagle_algorithm = True
    timeout = 60  # an idle keep-alive connection ends after this
    server: _Server

    def _dispatch(self) -> None:
        self.server.proxy._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: the proxy keeps its own request log."""


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Read a request body given by Content-Length or chunked encoding."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        return _read_chunked(handler)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


def _read_chunked(handler: BaseHTTPRequestHandler) -> bytes:
    """Decode a chunked request body (botocore uses it only for streaming uploads)."""
    parts: List[bytes] = []
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        parts.append(handler.rfile.read(size))
        handler.rfile.readline()


def _put_events_entries(target: Optional[str], body: bytes) -> List[Dict[str, Any]]:
    """The Entries of a PutEvents body, or [] for anything else."""
    if target != PUT_EVENTS_TARGET:
        return []
    try:
        entries = json.loads(body.decode("utf-8")).get("Entries", [])
    except (ValueError, AttributeError):
        return []
    return [e for e in entries if isinstance(e, dict)]


def _json_error(error_type: str, message: str) -> Tuple[Headers, bytes]:
    """Headers and body of an AWS JSON-protocol error, as botocore parses them."""
    body = json.dumps({"__type": error_type, "message": message}).encode()
    headers = [("Content-Type", AWS_JSON), ("x-amzn-ErrorType", error_type)]
    return headers, body


def _query_error(error_type: str, message: str) -> Tuple[Headers, bytes]:
    """Headers and body of an AWS Query-protocol error (Auto Scaling, CloudFormation)."""
    body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{error_type}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
            "</ErrorResponse>").encode()
    return [("Content-Type", "text/xml")], body


#: Query APIs name EventBridge's ThrottlingException ``Throttling``.
_QUERY_NAMES = {"ThrottlingException": "Throttling", "InternalException": "InternalFailure"}


def _error_for(record: RequestRecord, error_type: str, message: str) -> Tuple[Headers, bytes]:
    """An error in the protocol the request spoke."""
    if record.is_query:
        return _query_error(_QUERY_NAMES.get(error_type, error_type), message)
    return _json_error(error_type, message)


def _success_body(record: RequestRecord) -> bytes:
    """What a healthy endpoint answers: every PutEvents entry accepted, or a Query answer."""
    if record.is_put_events:
        entries = [{"EventId": str(uuid.uuid4())} for _ in record.entries]
        return json.dumps({"FailedEntryCount": 0, "Entries": entries}).encode()
    if record.is_query:
        return (f"<{record.action}Response><ResponseMetadata><RequestId>{uuid.uuid4()}"
                f"</RequestId></ResponseMetadata></{record.action}Response>").encode()
    return b"{}"


def _selected(selector: EntrySelector, index: int, entry: Mapping[str, Any]) -> bool:
    """Whether ``reject_entries`` rejects this entry."""
    if selector is None:
        return True
    if callable(selector):
        return bool(selector(index, entry))
    return index in selector


class FaultProxy:
    """HTTP reverse proxy on 127.0.0.1 in front of ``upstream`` with switchable faults.

    Faults (all thread-safe, effective for the next request):

    - :meth:`refuse` / :meth:`restore`: no listener at all, then the same port again;
    - :meth:`delay`, :meth:`hang`: slow or no answer;
    - :meth:`http_error`, :meth:`throttle`, :meth:`rate_limit`: HTTP-level errors;
    - :meth:`reject_entries`: an HTTP 200 partial failure of PutEvents;
    - :meth:`drop`, :meth:`drop_after_forward`: connection closed with no answer,
      before or after the upstream got the request;
    - :meth:`redirect`: a 3xx whose Location names another host;
    - :meth:`drip`: a whole, valid answer sent one piece per interval (in the
      status line and headers, the body, or chunked transfer), the slow
      server a socket timeout never catches;
    - :meth:`garbage`: these bytes, then the connection closed.

    Counted faults queue up in the order they were set and each is spent by
    the requests it applies to. :meth:`restore` clears every fault;
    :meth:`reset` also clears the counters and the log.
    """

    def __init__(
        self,
        upstream: str,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_timeout: float = 30.0,
        hang_limit: float = 300.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream = upstream
        self._up_host = parsed.hostname
        self._up_port = parsed.port or 80
        self.host = host
        self.upstream_timeout = upstream_timeout
        self.hang_limit = hang_limit
        self._lock = threading.Lock()
        self._conns: Dict[threading.Thread, socket.socket] = {}
        self._closed = False
        self._log: List[RequestRecord] = []
        self._errors: List[str] = []
        self._calls = 0
        self._entries_seen = 0
        self._entries_forwarded = 0
        self._faults: List[_Fault] = []
        self._delay = 0.0
        self._delay_after = False
        self._hanging = False
        self._bucket: Optional[TokenBucket] = None
        self._release = threading.Event()  # set by restore()/close(): ends hangs and delays
        self._server: Optional[_Server] = None
        self._serve_thread: Optional[threading.Thread] = None
        self.port = port
        self._listen()

    # -- listening -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint URL clients use instead of the upstream's."""
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        """False while refusing connections (or closed)."""
        return self._server is not None

    def _listen(self) -> None:
        """Bind (the same port after the first time) and serve in a daemon thread."""
        server = _Server((self.host, self.port), self)
        self.port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"faultproxy-serve-{self.port}",
            daemon=True,
        )
        self._server, self._serve_thread = server, thread
        thread.start()

    def _unlisten(self) -> None:
        """Stop accepting and close the listening socket and every open connection."""
        server, thread = self._server, self._serve_thread
        self._server = self._serve_thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        self._cut_connections()

    def _cut_connections(self) -> None:
        """Shut down every client socket so keep-alive connections end too."""
        with self._lock:
            sockets = list(self._conns.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _track(self, thread: threading.Thread, sock: socket.socket) -> None:
        with self._lock:
            self._conns[thread] = sock

    def _untrack(self, thread: threading.Thread) -> None:
        with self._lock:
            self._conns.pop(thread, None)

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    # -- fault switches ----------------------------------------------------------

    def refuse(self) -> None:
        """Stop listening: new connections are refused, open ones are cut."""
        self._release_waiters()
        self._unlisten()

    def restore(self) -> None:
        """Back to a healthy pass-through on the same port: clears every fault."""
        with self._lock:
            self._faults.clear()
            self._delay, self._delay_after, self._hanging = 0.0, False, False
            self._bucket = None
        self._release_waiters()
        if self._server is None and not self._closed:
            self._listen()

    def _release_waiters(self) -> None:
        """Wake hung and delayed requests; later ones get a fresh event."""
        with self._lock:
            released, self._release = self._release, threading.Event()
        released.set()

    def delay(self, seconds: float, after_forward: bool = False) -> None:
        """Answer every request ``seconds`` late, until restore().

        By default the request waits before it is forwarded (a slow network on
        the way there); with ``after_forward`` the upstream gets it at once and
        only the answer is late, so a client that times out still delivered.
        """
        with self._lock:
            self._delay, self._delay_after = float(seconds), after_forward

    def hang(self) -> None:
        """Accept and read requests but never answer, until restore()/close()."""
        with self._lock:
            self._hanging = True

    def http_error(
        self, status: int = 500, times: Optional[int] = 1, error_type: Optional[str] = None,
        retry_after_ms: Optional[int] = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and an AWS JSON error
        (with ``retry_after_ms``: and an ``x-amz-retry-after`` header saying so)."""
        kind = error_type or ERROR_TYPES.get(status, "InternalFailure")
        self._add("http_error", times, status=status, error_type=kind,
                  retry_after_ms=retry_after_ms)

    def throttle(self, times: Optional[int] = 1) -> None:
        """Answer the next ``times`` requests with HTTP 400 ThrottlingException."""
        self._add("throttle", times)

    def rate_limit(self, calls_per_second: Optional[float], burst: Optional[float] = None) -> None:
        """Throttle requests over ``calls_per_second`` (token bucket); None turns it off."""
        bucket = TokenBucket(calls_per_second, burst) if calls_per_second else None
        with self._lock:
            self._bucket = bucket

    def reject_entries(
        self,
        error_code: str = "InternalFailure",
        indexes: EntrySelector = None,
        times: Optional[int] = 1,
        error_message: Optional[str] = None,
    ) -> None:
        """Fail some PutEvents entries inside an HTTP 200, like a real partial failure.

        ``indexes``: None rejects every entry; a sequence of positions; or a
        callable ``(index, entry) -> bool``. Only accepted entries are forwarded.
        """
        message = error_message or ENTRY_ERROR_MESSAGES.get(error_code, error_code)
        self._add("reject_entries", times, code=error_code, message=message, indexes=indexes)

    def drop(self, times: Optional[int] = 1) -> None:
        """Close the connection without forwarding or answering (nothing delivered)."""
        self._add("drop", times)

    def drop_after_forward(self, times: Optional[int] = 1) -> None:
        """Forward, then close without answering: delivered, but the client sees an error."""
        self._add("drop_after_forward", times)

    def redirect(self, location: str, status: int = 302, times: Optional[int] = None) -> None:
        """Answer with ``status`` and ``Location: <location><request path>``; nothing forwarded.

        Point ``location`` at an :class:`Elsewhere` to see what a client that
        follows the redirect would hand another host.
        """
        if not 300 <= status < 400:
            raise ValueError("a redirect status is 3xx")
        self._add("redirect", times, status=status, location=location)

    def drip(self, part: str = "body", interval: float = 2.0, times: Optional[int] = None,
             forward: bool = False) -> None:
        """Send a whole, valid answer one piece every ``interval`` seconds.

        ``part``: ``"headers"`` drips the status line and headers a byte at a
        time; ``"body"`` sends the headers at once and drips the body a byte
        at a time; ``"chunks"`` uses chunked transfer and sends one
        one-byte chunk per interval. The answer is a PutEvents success
        (every entry accepted) or an empty Query answer, so a client that
        waited to the end would count it delivered; with ``forward`` it is
        the upstream's own answer, the request delivered. restore() and
        close() end a drip at once.
        """
        if part not in DRIP_PARTS:
            raise ValueError(f"part must be one of {', '.join(DRIP_PARTS)}")
        self._add("drip", times, part=part, interval=float(interval), forward=forward)

    def garbage(self, data: bytes, times: Optional[int] = 1) -> None:
        """Answer with ``data`` as raw bytes (no status line unless it has one), then close."""
        self._add("garbage", times, data=bytes(data))

    def _add(self, kind: str, times: Optional[int], **params: Any) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._faults.append(_Fault(kind, times, params))

    def _take_fault(self, record: RequestRecord) -> Optional[_Fault]:
        """Spend one use of the first queued fault that applies to this request."""
        with self._lock:
            for fault in self._faults:
                if not fault.applies_to(record):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    # -- counters and log ----------------------------------------------------------

    @property
    def calls(self) -> int:
        """PutEvents calls received (including the faulted ones)."""
        with self._lock:
            return self._calls

    @property
    def entries_seen(self) -> int:
        """PutEvents entries received."""
        with self._lock:
            return self._entries_seen

    @property
    def entries_forwarded(self) -> int:
        """PutEvents entries sent on to the upstream."""
        with self._lock:
            return self._entries_forwarded

    @property
    def requests(self) -> List[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def handler_errors(self) -> List[str]:
        """Tracebacks of unexpected exceptions in connection threads (should stay empty)."""
        with self._lock:
            return list(self._errors)

    def reset(self) -> None:
        """restore(), and zero the counters and the log."""
        self.restore()
        with self._lock:
            self._log.clear()
            self._errors.clear()
            self._calls = self._entries_seen = self._entries_forwarded = 0

    # -- request handling ------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        """Apply the faults in force when the request arrived.

        Deciding at arrival matters: a request that is delayed past a switch
        must not spend a fault meant for the next request.
        """
        record = self._record(h)
        plan = self._plan(record)
        if plan.hang:
            plan.release.wait(self.hang_limit)
            return self._abandon(h, record, "hung")
        if plan.delay and not plan.delay_after:
            plan.release.wait(plan.delay)
        if plan.rate_limited:
            return self._throttled(h, record, "rate_limited")
        if plan.fault is not None:
            return self._apply(h, record, plan.fault)
        late = plan.delay if plan.delay_after else 0.0
        return self._pass_through(h, record, late, plan.release)

    def _plan(self, record: RequestRecord) -> _Plan:
        """Snapshot the switches and spend the rate-limit token or counted fault."""
        with self._lock:
            plan = _Plan(self._hanging, self._delay, self._delay_after, self._release)
            bucket = self._bucket
        if plan.hang:
            return plan
        if bucket is not None and not bucket.take():
            plan.rate_limited = True
            return plan
        plan.fault = self._take_fault(record)
        return plan

    def _record(self, h: _Handler) -> RequestRecord:
        """Read the request and log it; count PutEvents calls and entries."""
        body = _read_body(h)
        target = h.headers.get("X-Amz-Target")
        entries = _put_events_entries(target, body)
        record = RequestRecord(time.time(), h.command, h.path, target, body, entries)
        with self._lock:
            self._log.append(record)
            if record.is_put_events:
                self._calls += 1
                self._entries_seen += len(entries)
        return record

    def _apply(self, h: _Handler, record: RequestRecord, fault: _Fault) -> None:
        """Carry out one counted fault."""
        if fault.kind == "http_error":
            headers, body = _error_for(record, fault.params["error_type"], "Injected by FaultProxy")
            if fault.params.get("retry_after_ms") is not None:
                headers = [*headers, ("x-amz-retry-after", str(fault.params["retry_after_ms"]))]
            return self._reply(
                h,
                record,
                f"http_error:{fault.params['status']}",
                fault.params["status"],
                headers,
                body,
            )
        if fault.kind == "throttle":
            return self._throttled(h, record, "throttled")
        if fault.kind == "reject_entries":
            return self._partial_failure(h, record, fault)
        if fault.kind == "drop":
            return self._abandon(h, record, "dropped")
        if fault.kind == "drop_after_forward":
            self._forward(h, record, record.body)
            return self._abandon(h, record, "dropped_after_forward")
        if fault.kind == "redirect":
            status, where = fault.params["status"], fault.params["location"].rstrip("/")
            return self._reply(h, record, f"redirected:{status}", status,
                               [("Location", where + h.path)], b"")
        if fault.kind == "drip":
            return self._drip(h, record, fault)
        if fault.kind == "garbage":
            record.outcome = "garbage"
            with contextlib.suppress(OSError):
                h.wfile.write(fault.params["data"])
                h.wfile.flush()
            return self._abandon(h, record, "garbage")
        raise AssertionError(f"unknown fault {fault.kind}")

    def _pass_through(
        self, h: _Handler, record: RequestRecord, late: float, release: threading.Event
    ) -> None:
        """Forward unchanged and relay the answer (``late`` seconds late)."""
        upstream = self._forward(h, record, record.body)
        if late:
            release.wait(late)
        if upstream is None:
            return self._upstream_failed(h, record)
        self._reply(
            h,
            record,
            "forwarded",
            upstream.status,
            upstream.headers,
            upstream.body,
            reason=upstream.reason,
        )

    def _partial_failure(self, h: _Handler, record: RequestRecord, fault: _Fault) -> None:
        """Forward the accepted entries only; answer 200 with per-entry results."""
        selector = fault.params["indexes"]
        rejected = {i for i, e in enumerate(record.entries) if _selected(selector, i, e)}
        accepted = [e for i, e in enumerate(record.entries) if i not in rejected]
        results: List[Dict[str, Any]] = []
        if accepted:
            upstream = self._forward(h, record, self._subset_body(record, accepted))
            if upstream is None:
                return self._upstream_failed(h, record)
            if upstream.status != 200:
                return self._reply(
                    h, record, "forwarded", upstream.status, upstream.headers, upstream.body
                )
            results = list(json.loads(upstream.body.decode("utf-8")).get("Entries", []))
        error = {"ErrorCode": fault.params["code"], "ErrorMessage": fault.params["message"]}
        merged = [
            dict(error) if i in rejected else results.pop(0) for i in range(len(record.entries))
        ]
        failed = sum(1 for r in merged if "ErrorCode" in r)
        body = json.dumps({"FailedEntryCount": failed, "Entries": merged}).encode()
        self._reply(h, record, "rejected_entries", 200, [("Content-Type", AWS_JSON)], body)

    @staticmethod
    def _subset_body(record: RequestRecord, accepted: List[Dict[str, Any]]) -> bytes:
        """The PutEvents body with only the accepted entries.

        Its SigV4 signature no longer matches; moto does not check signatures,
        and a real endpoint is never behind this proxy.
        """
        document = json.loads(record.body.decode("utf-8"))
        document["Entries"] = accepted
        return json.dumps(document).encode("utf-8")

    def _forward(self, h: _Handler, record: RequestRecord, body: bytes) -> Optional[_Upstream]:
        """Send the request upstream with a bounded timeout; None if that failed."""
        conn = http.client.HTTPConnection(
            self._up_host, self._up_port, timeout=self.upstream_timeout
        )
        try:
            conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for name, value in h.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            if "Host" not in h.headers:
                conn.putheader("Host", f"{self._up_host}:{self._up_port}")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()
        if record.is_put_events:
            with self._lock:
                self._entries_forwarded += len(_put_events_entries(record.target, body))
        return _Upstream(response.status, response.reason, response.getheaders(), payload)

    def _drip(self, h: _Handler, record: RequestRecord, fault: _Fault) -> None:
        """Write a valid answer one piece per interval; stop when the client leaves."""
        part, interval = fault.params["part"], fault.params["interval"]
        with self._lock:
            release = self._release
        status, headers, body = 200, [("Content-Type", AWS_JSON)], _success_body(record)
        if fault.params["forward"]:
            upstream = self._forward(h, record, record.body)
            if upstream is None:
                return self._upstream_failed(h, record)
            status, body = upstream.status, upstream.body
            headers = [(k, v) for k, v in upstream.headers if k.lower() not in HOP_BY_HOP]
        record.outcome, record.status = f"dripped_{part}", status
        framing = ("Transfer-Encoding", "chunked") if part == "chunks" else (
            "Content-Length", str(len(body)))
        head = "".join(f"{k}: {v}\r\n" for k, v in [*headers, framing])
        head_bytes = f"HTTP/1.1 {status} OK\r\n{head}\r\n".encode("latin-1")
        pieces: List[bytes]
        if part == "headers":
            pieces = [head_bytes[i:i + 1] for i in range(len(head_bytes))] + [body]
        elif part == "body":
            pieces = [head_bytes] + [body[i:i + 1] for i in range(len(body))]
        else:
            pieces = [head_bytes] + [b"1\r\n" + body[i:i + 1] + b"\r\n"
                                     for i in range(len(body))] + [b"0\r\n\r\n"]
        h.close_connection = True
        for n, piece in enumerate(pieces):
            if n and release.wait(interval):
                break  # restore()/close(): end the drip now
            try:
                h.wfile.write(piece)
                h.wfile.flush()
            except OSError:
                return  # the client gave up: what the fault is there to prove
        self._abandon(h, record, record.outcome)

    def _throttled(self, h: _Handler, record: RequestRecord, outcome: str) -> None:
        """HTTP 400 ThrottlingException, exactly as EventBridge answers an over-quota call."""
        headers, body = _error_for(record, "ThrottlingException", "Rate exceeded")
        self._reply(h, record, outcome, 400, headers, body)

    def _upstream_failed(self, h: _Handler, record: RequestRecord) -> None:
        """The upstream did not answer: a 502 like a load balancer would give."""
        headers, body = _error_for(record, "InternalFailure", "FaultProxy: upstream unreachable")
        self._reply(h, record, "upstream_error", 502, headers, body)

    def _abandon(self, h: _Handler, record: RequestRecord, outcome: str) -> None:
        """Close the connection without a byte of answer."""
        record.outcome = outcome
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)

    def _reply(
        self,
        h: _Handler,
        record: RequestRecord,
        outcome: str,
        status: int,
        headers: Headers,
        body: bytes,
        reason: Optional[str] = None,
    ) -> None:
        """Write a complete response; a client that already left is not an error."""
        record.outcome, record.status = outcome, status
        try:
            h.send_response_only(status, reason)
            names = {name.lower() for name, _ in headers}
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP:
                    h.send_header(name, value)
            if "x-amzn-requestid" not in names:
                h.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            h.send_header("Content-Length", str(len(body)))
            if h.close_connection:
                h.send_header("Connection", "close")
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
            h.wfile.flush()
        except OSError:
            h.close_connection = True

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening, end every connection and join every thread. Idempotent."""
        with self._lock:
            self._closed = True
        self._release_waiters()
        self._unlisten()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._conns)
            if not threads or time.monotonic() >= deadline:
                break
            self._cut_connections()
            for thread in threads:
                thread.join(timeout=max(0.0, min(0.2, deadline - time.monotonic())))

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.url} -> {self.upstream})"


@dataclass
class Received:
    """One request that reached :class:`Elsewhere`."""

    method: str
    path: str
    headers: Dict[str, str]
    body: bytes


class _ElsewhereHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ElsewhereServer

    def _answer(self) -> None:
        body = _read_body(self)
        target = self.headers.get("X-Amz-Target")
        record = RequestRecord(time.time(), self.command, self.path, target, body,
                               _put_events_entries(target, body))
        self.server.owner._note(Received(self.command, self.path, dict(self.headers.items()),
                                         body))
        if record.is_put_events and not record.entries:
            # A follower that turned the POST into a GET (urllib on 301/302/303)
            # lost the body: accept "its" one event anyway, as a trap would.
            record.entries = [{}]
        answer = _success_body(record)
        self.send_response(200)
        self.send_header("Content-Type", AWS_JSON)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: :attr:`Elsewhere.received` is the log."""


class _ElsewhereServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: Elsewhere, host: str) -> None:
        self.owner = owner
        super().__init__((host, 0), _ElsewhereHandler)


class Elsewhere:
    """Another host on loopback (127.0.0.2 by default) where a redirect points.

    It answers every request as a healthy endpoint would (a PutEvents with
    every entry accepted), so a client that followed a redirect would count
    its event delivered, and it records everything that reaches it: the
    ``Authorization`` and ``X-Amz-Security-Token`` a follower would hand over.
    """

    def __init__(self, host: str = "127.0.0.2") -> None:
        self._lock = threading.Lock()
        self._received: List[Received] = []
        self._server = _ElsewhereServer(self, host)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="faultproxy-elsewhere")
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def received(self) -> List[Received]:
        with self._lock:
            return list(self._received)

    def _note(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Elsewhere:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
