"""One HTTP attempt, as every bosky request makes it: no redirect followed, a wall-clock deadline.

Two rules hold for every call bosky makes itself (EventBridge, Auto Scaling,
CloudFormation, IMDS):

* A 3xx is an answer, never an instruction. urllib's default opener turns a
  POST answered with 301/302/303 into a GET to the new location with the same
  headers, ``Authorization`` and the session token included, and a 200 from
  there would count as delivered. The opener here has no
  ``HTTPRedirectHandler``: the caller sees the 3xx and treats it as the
  failed attempt it is.
* The attempt ends at its deadline however the server behaves. A socket
  timeout bounds each read, not the whole answer, so a server that drips a
  byte a second (in the status line, the headers, the body or the chunks)
  never trips it. A watchdog timer shuts the connection's socket down at the
  deadline; the blocked read then sees end-of-file and the attempt fails as
  timed out, whatever was read so far. A host name is resolved aside, within
  the same deadline (getaddrinfo knows no timeout of its own).

:class:`Pending` gives the same deadline to work whose sockets bosky cannot
reach (botocore's credential chain asking IMDS).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.request
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, Tuple, TypeVar

T = TypeVar("T")


class DeadlinePassed(TimeoutError):
    """The attempt's wall-clock deadline passed before a whole answer arrived."""

    def __init__(self, seconds: float, answered: bool = False) -> None:
        super().__init__(f"timed out: no whole answer within the attempt's {seconds:g} s deadline")
        #: The status line and headers had arrived: a slow answer, not a silent server.
        self.answered = answered


@dataclasses.dataclass(frozen=True)
class Response:
    """A whole answer, whatever its status (3xx and errors included)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def request(
    url: str,
    timeout: float,
    method: str = "POST",
    body: Optional[bytes] = None,
    headers: Optional[Mapping[str, str]] = None,
    context: Optional[ssl.SSLContext] = None,
    proxies: bool = True,
    limit: int = 4 * 1024 * 1024,
) -> Response:
    """Send one request and read its whole answer within ``timeout`` seconds of wall clock.

    Nothing is followed: a 3xx comes back as a :class:`Response` like any
    other status. ``proxies`` uses the environment's HTTP(S)_PROXY and
    NO_PROXY as urllib does; IMDS passes False (it is never proxied).
    Raises :class:`DeadlinePassed` at the deadline, and OSError (URLError,
    resets, socket timeouts), ValueError or http.client.HTTPException for the
    rest. At most ``limit`` bytes of the body are read.
    """
    watchdog = _Watchdog(timeout)
    handlers: List[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler(None if proxies else {}),
        _HTTPHandler(watchdog),
        _HTTPSHandler(watchdog, context),
        urllib.request.UnknownHandler(),
    ]
    opener = urllib.request.OpenerDirector()
    for handler in handlers:
        opener.add_handler(handler)
    req = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    answered = False
    try:
        # No HTTPErrorProcessor either: every status is the caller's to judge.
        with watchdog, opener.open(req, timeout=timeout) as answer:
            answered = True
            payload: bytes = answer.read(limit)
            status, reason = int(answer.status), str(answer.reason)
            names = {k.lower(): v for k, v in answer.headers.items()}
    except Exception:
        # A loaded machine may run a socket's own timeout (set to the whole
        # budget) before the watchdog's timer thread: past the deadline, either
        # way it is the deadline that ended the attempt.
        if watchdog.fired or watchdog.remaining() <= 0:
            raise DeadlinePassed(timeout, answered) from None
        raise
    if watchdog.fired:  # a read cut short by the watchdog looks like a short answer
        raise DeadlinePassed(timeout, answered)
    return Response(status, reason, names, payload)


class Pending(Generic[T]):
    """Work started once in a daemon thread, waited for with a deadline, as often as needed.

    For calls whose sockets bosky cannot reach. At the deadline the waiter
    gets :class:`DeadlinePassed` and the thread is left to finish or hang on
    its own: a daemon never holds the process open, and waiting again on the
    same object never starts the work twice.
    """

    def __init__(self, work: Callable[[], T]) -> None:
        self._done = threading.Event()
        self._result: Optional[T] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True,
                                        name="bosky-bounded")
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._result = work()
        except BaseException as exc:  # handed to the waiter, who re-raises it
            self._error = exc
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> T:
        if not self._done.wait(max(0.0, timeout)):
            raise DeadlinePassed(timeout)
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class _Watchdog:
    """Shuts every socket of one attempt down when its deadline passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, seconds)
        self.fired = False
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True
        self._end = time.monotonic() + self.seconds

    def __enter__(self) -> _Watchdog:
        self._end = time.monotonic() + self.seconds
        self._timer.start()
        return self

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()

    def watch(self, sock: socket.socket) -> None:
        # A duplicate of the descriptor: shutting it down ends reads on the
        # original (TLS-wrapped or not), and it can never name a reused fd.
        dup = sock.dup()
        with self._lock:
            if not self.fired:
                self._socks.append(dup)
                return
        _shutdown(dup)
        dup.close()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watched_connection(watchdog: _Watchdog, address: Tuple[str, int], *args: Any,
                        **kwargs: Any) -> socket.socket:
    host, port = address
    if not _is_address(host):
        # getaddrinfo blocks in C, beyond any socket timeout (a broken resolver
        # takes 5 s a try): resolved aside, within what is left of the deadline.
        found = Pending(lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        addresses = [info[4][0] for info in found.wait(watchdog.remaining())]
    else:
        addresses = [host]
    error: Optional[OSError] = None
    for ip in dict.fromkeys(addresses):  # in the resolver's order, each once
        try:
            sock = socket.create_connection((str(ip), port), *args, **kwargs)
        except OSError as exc:
            error = exc
            continue
        watchdog.watch(sock)
        return sock
    raise error or OSError(f"{host} has no address")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _WatchedHTTP(http.client.HTTPConnection):
    def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Covers a proxy's CONNECT and the TLS handshake too: both come after.
        self._create_connection = functools.partial(_watched_connection, watchdog)


class _WatchedHTTPS(http.client.HTTPSConnection):
    def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(_watched_connection, watchdog)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._watchdog = watchdog

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_WatchedHTTP, watchdog=self._watchdog), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog, context: Optional[ssl.SSLContext]) -> None:
        super().__init__(context=context)
        self._watchdog = watchdog
        self._tls = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        kwargs: Dict[str, Any] = {"context": self._tls} if self._tls is not None else {}
        return self.do_open(functools.partial(_WatchedHTTPS, watchdog=self._watchdog), req,
                            **kwargs)
