"""The one sender: PutEvents, and the verdict's Query API calls, with bounded retries.

Both the command and the boot reporter send through :func:`put_events`, and
the lifecycle-hook completions and stack signals through :func:`call`.
botocore does what must not be written by hand (the credential chain,
SigV4 signing); the request itself goes over the standard library's HTTP
client, one attempt at a time through :mod:`cc_bosky.transport` (no redirect
followed, a wall-clock deadline per attempt). A botocore client object
would add ~150 ms and ~15 MB of service model loading to every boot and
every ``bosky`` call for one API call.

Retries follow the one policy of :mod:`.retry` (botocore's retryable codes,
full-jitter backoff, ``x-amz-retry-after``) within one time budget, and an
HTTP 200 whose entries failed is treated as the failure it is: retryable
entry errors are retried alone, the others are reported with their code.
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import json
import os
import ssl
import time
import urllib.error
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import arns, transport
from ..text import printable
from ..transport import DeadlinePassed, Pending, Response
from ..version import __version__
from .retry import (
    RETRY_AFTER_HEADER,
    Retry,
    retry_after,
    retryable_code,
    retryable_entry_code,
    retryable_status,
)

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024 - 1  # a request's entries must total under 256 KB
# One attempt's wall-clock deadline: credentials, connect, request and the whole answer.
_ATTEMPT_TIMEOUT = 10.0
# The request was signed with credentials that expired meanwhile: fetch them again.
_REFRESH_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how long to send."""

    region: str
    endpoint_url: Optional[str] = None
    budget: float = 30.0
    service: str = "events"  # the SigV4 signing name: events, autoscaling, cloudformation

    @property
    def url(self) -> str:
        return (self.endpoint_url or arns.endpoint(self.service, self.region)).rstrip("/") + "/"


@dataclasses.dataclass
class Outcome:
    """What became of one entry."""

    delivered: bool = False
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    retryable: bool = True
    attempts: int = 0
    response: bytes = b""  # a Query call's answer (the XML body)

    def reason(self) -> str:
        if self.error_code and self.error_message:
            return f"{self.error_code}: {self.error_message}"
        return self.error_code or self.error_message or "not sent"


class _CallFailed(Exception):
    def __init__(self, code: str, message: str, retryable: bool, refresh: bool = False,
                 after: Optional[float] = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retryable, self.refresh = code, message, retryable, refresh
        self.after = after  # x-amz-retry-after, in seconds


def put_events(
    entries: Sequence[Mapping[str, Any]],
    target: Target,
    environ: Optional[Mapping[str, str]] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> List[Outcome]:
    """Send ``entries``, retrying what may succeed later, until ``target.budget`` runs out.

    Returns one :class:`Outcome` per entry, in order. Never raises for
    network, credential or service errors: they are outcomes.
    """
    env = os.environ if environ is None else environ
    outcomes = [Outcome() for _ in entries]
    session = _Session(target, env)
    retry = Retry(target.budget, clock, sleep)  # one budget for every batch
    for batch in batches([dict(e) for e in entries]):
        _send_batch(entries, batch, outcomes, session, retry)
    return outcomes


def call(
    operation: str,
    params: Mapping[str, str],
    target: Target,
    environ: Optional[Mapping[str, str]] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """One Query API call (``target.service``: autoscaling, cloudformation),
    retried with the same backoff as PutEvents until ``target.budget`` runs out.

    Never raises for network, credential or service errors: they are the outcome.
    """
    env = os.environ if environ is None else environ
    outcome = Outcome()
    session = _Session(target, env)
    retry = Retry(target.budget, clock, sleep)
    for timeout in retry.attempts(_ATTEMPT_TIMEOUT):
        outcome.attempts += 1
        try:
            response = session.query(operation, params, timeout)
        except _CallFailed as exc:
            _fail(outcome, exc.code, exc.message, exc.retryable)
            if not exc.retryable:
                break
            _prepare_retry(session, retry, exc)
        else:
            return Outcome(delivered=True, attempts=outcome.attempts, response=response)
    if not outcome.attempts:  # what came before used up the budget: kept for later
        _fail(outcome, "NotTried", "no time left of the budget (--timeout)", True)
    return outcome


def batches(entries: Sequence[Mapping[str, Any]]) -> List[List[int]]:
    """Indexes of ``entries`` grouped into PutEvents-sized requests."""
    from ..event import entry_size

    groups: List[List[int]] = []
    current: List[int] = []
    size = 0
    for i, entry in enumerate(entries):
        n = entry_size(entry)
        if current and (len(current) == MAX_BATCH_ENTRIES or size + n > MAX_BATCH_BYTES):
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        groups.append(current)
    return groups


def _send_batch(
    entries: Sequence[Mapping[str, Any]],
    batch: List[int],
    outcomes: List[Outcome],
    session: _Session,
    retry: Retry,
) -> None:
    pending = list(batch)
    for timeout in retry.attempts(_ATTEMPT_TIMEOUT):
        for i in pending:
            outcomes[i].attempts += 1
        try:
            results = session.call([entries[i] for i in pending], timeout)
        except _CallFailed as exc:
            for i in pending:
                _fail(outcomes[i], exc.code, exc.message, exc.retryable)
            if not exc.retryable:
                return
            _prepare_retry(session, retry, exc)
        else:
            still: List[int] = []
            for i, result in zip(pending, results):
                code = result.get("ErrorCode")
                if not code:
                    outcomes[i] = Outcome(delivered=True, attempts=outcomes[i].attempts)
                    continue
                again = retryable_entry_code(str(code))
                _fail(outcomes[i], code, str(result.get("ErrorMessage") or ""), again)
                if again:
                    still.append(i)
            pending = still
            if not pending:
                return


def _prepare_retry(session: _Session, retry: Retry, failed: _CallFailed) -> None:
    if failed.refresh:
        session.forget_credentials()
    retry.after(failed.after)


def _fail(outcome: Outcome, code: str, message: str, retryable: bool) -> None:
    outcome.delivered = False
    outcome.error_code, outcome.error_message, outcome.retryable = code, message, retryable


class _Session:
    """Credentials and signing for one delivery, loaded on first use."""

    def __init__(self, target: Target, environ: Mapping[str, str]) -> None:
        self.target = target
        self.environ = environ
        self._credentials: Any = None
        self._loading: Optional[Pending[Any]] = None

    def forget_credentials(self) -> None:
        self._credentials = None

    def call(self, entries: Sequence[Mapping[str, Any]], timeout: float) -> List[Dict[str, Any]]:
        body = json.dumps({"Entries": list(entries)}, ensure_ascii=False).encode("utf-8")
        payload = self._post(body, {"Content-Type": "application/x-amz-json-1.1",
                                    "X-Amz-Target": "AWSEvents.PutEvents"}, timeout)
        return _entry_results(payload, len(entries))

    def query(self, operation: str, params: Mapping[str, str], timeout: float) -> bytes:
        from . import query

        body = query.encode(self.target.service, operation, params)
        return self._post(body, {"Content-Type": query.CONTENT_TYPE}, timeout)

    def _post(self, body: bytes, kind: Mapping[str, str], timeout: float) -> bytes:
        """One attempt, credentials included, ended at ``timeout`` seconds of wall clock."""
        deadline = time.monotonic() + timeout
        headers = self._signed_headers(body, kind, timeout)
        try:
            context = _tls(self.environ) if self.target.url.startswith("https:") else None
            answer = transport.request(self.target.url, max(0.0, deadline - time.monotonic()),
                                       body=body, headers=headers, context=context)
        except urllib.error.URLError as exc:
            raise _CallFailed("ConnectionError", _reason(exc.reason), True) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # timeouts, the deadline, resets, bad status lines, a body cut short
            raise _CallFailed("ConnectionError", _reason(exc), True) from None
        if 300 <= answer.status < 400:
            # Following it would re-send Authorization and the session token to
            # wherever Location points, and count that host's 200 as delivered.
            raise _CallFailed("Redirect", f"HTTP {answer.status} {answer.reason}: the endpoint "
                              "answered with a redirect, and bosky follows none", True)
        if not 200 <= answer.status < 300:
            raise _http_error(answer)
        return answer.body

    def _signed_headers(self, body: bytes, kind: Mapping[str, str],
                        timeout: float) -> Dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        frozen = self._frozen_credentials(timeout)
        request = AWSRequest(method="POST", url=self.target.url, data=body, headers={
            **kind, "User-Agent": f"bosky/{__version__}"})
        SigV4Auth(frozen, self.target.service, self.target.region).add_auth(request)
        return {k: str(v) for k, v in request.headers.items()}

    def _frozen_credentials(self, timeout: float) -> Any:
        """This attempt's credentials, within its deadline.

        The chain may ask IMDS or a container endpoint through botocore's own
        HTTP client, whose sockets bosky cannot reach: the lookup runs aside
        and the attempt stops waiting at its deadline. A lookup still under
        way is waited for again by the next attempt, never started twice.
        """
        if self._loading is None or self._loading.done:
            # Imported here, not in the thread: loading botocore takes no
            # network, and a slow machine's import time must not eat the deadline.
            import botocore.credentials
            import botocore.utils  # noqa: F401

            self._loading = Pending(self._load_frozen)
        try:
            return self._loading.wait(timeout)
        except DeadlinePassed:
            raise _CallFailed("NoCredentials", f"timed out looking up AWS credentials (the "
                              f"attempt's {timeout:g} s deadline)", True) from None

    def _load_frozen(self) -> Any:
        credentials = self._credentials or _load_or_fail(self.environ)
        if credentials is None:
            raise _CallFailed(
                "NoCredentials",
                "no AWS credentials found (environment, profile, container or instance role)",
                True,
            )
        self._credentials = credentials
        try:  # refreshable (instance role) credentials may fetch anew here
            return credentials.get_frozen_credentials()
        except Exception as exc:
            self._credentials = None
            raise _CallFailed("NoCredentials", f"cannot refresh AWS credentials: {exc}", True) \
                from None


def _load_or_fail(environ: Mapping[str, str]) -> Any:
    """Credentials, or None while there are none yet.

    The chain raises for a half-written credentials file, an IMDS that
    answers garbage, a partial environment: the same "not yet" as no
    credentials at all, retried within the budget, never an escape.
    """
    try:
        return load_credentials(environ)
    except Exception as exc:
        raise _CallFailed("NoCredentials", f"cannot load AWS credentials: {exc}", True) \
            from None


def _entry_results(payload: bytes, count: int) -> List[Dict[str, Any]]:
    try:
        data = json.loads(payload)
        results = data["Entries"]
        if not isinstance(results, list) or len(results) != count:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise _CallFailed("InvalidResponse", "EventBridge answered with an unreadable body", True) \
            from None
    return [r if isinstance(r, dict) else {} for r in results]


def _http_error(answer: Response) -> _CallFailed:
    code, message = _error_fields(answer.body[:64 * 1024], answer.header("x-amzn-ErrorType"))
    code = code or f"HTTP{answer.status}"
    message = message or f"HTTP {answer.status} {answer.reason}"
    retryable = retryable_status(answer.status) or retryable_code(code)
    refresh = code in _REFRESH_CODES
    return _CallFailed(code, message, retryable or refresh, refresh,
                       retry_after(answer.header(RETRY_AFTER_HEADER)))


def _error_fields(body: bytes, header: str) -> Tuple[str, str]:
    code = header.split(":", 1)[0]
    message = ""
    if body.lstrip().startswith(b"<"):  # a Query API (Auto Scaling, CloudFormation) error
        from .query import error_fields

        return error_fields(body)
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            code = code or str(data.get("__type") or data.get("code") or "")
            message = str(data.get("message") or data.get("Message") or "")
    except ValueError:
        pass
    return code.rsplit("#", 1)[-1], message


def _reason(error: object) -> str:
    """One clipped, printable line: a broken answer's text comes from the server."""
    text = str(error) or type(error).__name__
    if isinstance(error, DeadlinePassed):
        return text
    if isinstance(error, TimeoutError) or "timed out" in text:
        return "timed out"
    if isinstance(error, http.client.HTTPException):
        text = f"{type(error).__name__}: {text}"
    return printable(text[:200])


def _tls(environ: Mapping[str, str]) -> ssl.SSLContext:
    return _tls_for(environ.get("AWS_CA_BUNDLE") or None)


@functools.lru_cache(maxsize=4)
def _tls_for(cafile: Optional[str]) -> ssl.SSLContext:
    # Loading the CA store costs ~30 ms of CPU: once per process, not per attempt.
    return ssl.create_default_context(cafile=cafile)


def load_credentials(environ: Mapping[str, str]) -> Any:
    """AWS credentials from the standard chain, or None.

    On an instance the chain ends at the instance role, which the lean
    providers reach without a botocore session; a profile-based setup (SSO,
    assume-role, credential_process) gets botocore's full chain.
    """
    from botocore import credentials as bc

    env_creds = bc.EnvProvider(environ=dict(environ)).load()
    if env_creds is not None:
        return env_creds
    if _uses_profiles(environ):
        import botocore.session

        # The profile this environment names (``bosky --profile`` sets it),
        # not only os.environ's.
        profile = environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or None
        return botocore.session.Session(profile=profile).get_credentials()
    from botocore.utils import InstanceMetadataFetcher

    providers: List[Any] = [bc.ContainerProvider(environ=dict(environ))]
    if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
        config = {"ec2_metadata_service_endpoint": environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")}
        fetcher = InstanceMetadataFetcher(timeout=1, num_attempts=2, env=dict(environ),
                                          config={k: v for k, v in config.items() if v})
        providers.append(bc.InstanceMetadataProvider(iam_role_fetcher=fetcher))
    return bc.CredentialResolver(providers).load_credentials()


def _uses_profiles(environ: Mapping[str, str]) -> bool:
    """True when a profile could supply credentials the lean chain cannot see."""
    names = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")
    if any(environ.get(n) for n in names):
        return True
    home = environ.get("HOME") or os.path.expanduser("~")
    files = (
        environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"),
        environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"),
    )
    return any(os.path.exists(f) for f in files)
