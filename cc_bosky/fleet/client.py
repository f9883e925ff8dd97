"""One CloudWatch Logs client for both engines, and what its errors mean to a user.

botocore is imported only when a client is made: the rest of bosky never
pays for it.

Every botocore call ends by the report's deadline (:meth:`LogsClient.within`).
botocore's timeouts bound each socket read, not a whole answer: an endpoint
that drips its headers, body or chunks a byte at a time (or an instance-role
lookup from a dripping IMDS) would hold ``bosky fleet`` without end. Each
call runs as a :class:`~cc_bosky.transport.Pending` and is waited for with
what is left of ``--timeout``. This keeps botocore's own HTTP layer (its
proxies, CA bundle, client certificate, signing, endpoint rules, adaptive
retries, and its no-redirect rule) exactly as any AWS tool has it; sending
through bosky's own attempt from a ``before-send`` handler would have
swapped those for urllib's. A call cut off is left to end in its daemon
thread; the command exits right after.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, TypeVar

from ..errors import BoskyError, UsageError

_TIMEOUT = 10.0  # each HTTP attempt: connect and read
STOP_GRACE = 2.0  # StopQuery after the deadline or Ctrl-C: an abandoned query runs, billed

T = TypeVar("T")


class LogsClient:
    """Where the log group is and how long the whole report may take."""

    def __init__(self, group: str, region: str, endpoint_url: Optional[str],
                 environ: Mapping[str, str], budget: float) -> None:
        self.group, self.region, self.budget, self.environ = group, region, budget, environ
        self.endpoint_url = (endpoint_url or environ.get("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
                             or environ.get("AWS_ENDPOINT_URL") or None)
        self.deadline = time.monotonic() + budget

    def client(self, retries: Dict[str, Any]) -> Any:
        # botocore is imported here, not in the bounded thread: a slow import
        # is no endpoint's fault and must not use up a short --timeout.
        import botocore.session  # noqa: F401

        from ..delivery.sender import load_credentials

        return self.within(functools.partial(self._client, retries, load_credentials))

    def _client(self, retries: Dict[str, Any], load_credentials: Callable[..., Any]) -> Any:
        import botocore.config
        import botocore.exceptions
        import botocore.session

        # The sender's credential chain, read from this command's environment.
        credentials = load_credentials(self.environ)
        if credentials is None:
            raise BoskyError("no AWS credentials found (environment, profile, container or "
                             "instance role)")
        try:
            frozen = credentials.get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:  # a refresh that failed
            raise BoskyError(f"cannot load AWS credentials: {exc}") from None
        try:
            return botocore.session.get_session().create_client(
                "logs", region_name=self.region, endpoint_url=self.endpoint_url,
                aws_access_key_id=frozen.access_key, aws_secret_access_key=frozen.secret_key,
                aws_session_token=frozen.token,
                config=botocore.config.Config(connect_timeout=_TIMEOUT, read_timeout=_TIMEOUT,
                                              retries=retries))
        except ValueError as exc:  # botocore's check of the endpoint URL
            raise UsageError(f"--endpoint-url: {exc}") from None

    def within(self, call: Callable[[], T]) -> T:
        """``call()`` (botocore's), ended by the report's deadline whatever the endpoint does."""
        from ..transport import DeadlinePassed, Pending

        try:
            return Pending(call).wait(self.deadline - time.monotonic())
        except DeadlinePassed:
            raise self._late() from None

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise self._late()

    def _late(self) -> BoskyError:
        return BoskyError(f"reading {self.group} took longer than --timeout "
                          f"{self.budget:g} s; narrow --since or --project")


def stop_all(calls: Iterable[Callable[[], Any]]) -> None:
    """Run ``calls`` (StopQuery) at once, for at most :data:`STOP_GRACE` together; their
    errors are ignored (already ended, or unreachable: nothing left to stop)."""
    from ..transport import Pending

    ends = time.monotonic() + STOP_GRACE
    for pending in [Pending(call) for call in calls]:
        with contextlib.suppress(Exception):
            pending.wait(ends - time.monotonic())


@contextlib.contextmanager
def refused(logs: LogsClient) -> Iterator[None]:
    """botocore's errors as one line a user can act on."""
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        if code == "ResourceNotFoundException":
            raise BoskyError(
                f"CloudWatch Logs has no log group {logs.group} in {logs.region} "
                "(ResourceNotFoundException): the consumer stack names it in its output "
                "LogGroupName, /aws/events/bosky/PROJECT for infra/consumer.yaml; "
                "check --log-group and --region") from None
        raise BoskyError(f"CloudWatch Logs refused: {code}: "
                         f"{error.get('Message', '')}".rstrip(": ")) from None
    except botocore.exceptions.ParamValidationError as exc:
        raise UsageError(f"CloudWatch Logs would refuse this request: {exc}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise BoskyError(f"cannot read {logs.group}: {exc}") from None
