"""Checks of the way to EventBridge: credentials, a TCP connection to the endpoint
(through the proxy the sender would use), and, when asked, one test event."""

from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request
from typing import Any, Dict, Mapping, Optional, Tuple

# A public name of urllib.request that typeshed's stubs leave out.
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

from .. import awsconfig
from ..awsconfig import Profile
from . import FAIL, OK, WARN, Check
from .settings import ConfigView

CONNECT_TIMEOUT = 3.0
SEND_TEST_BUDGET = 15.0


def check_credentials(environ: Mapping[str, str], instance: bool,
                      chosen: Optional[Profile] = None) -> Check:
    """``environ`` is the one the sender sees (``awsconfig.sending_environ``);
    ``chosen`` the AWS profile, for the command's at-once "none anywhere"."""
    name = "credentials"
    if not instance:
        return Check(name, WARN, "not checked for an image: the instance needs a role "
                     "allowing events:PutEvents (infra/instance-role.yaml)")
    missing = awsconfig.no_credentials(chosen, environ) if chosen else None
    if missing:
        return Check(name, FAIL, missing, "put credentials in one of those places, or attach "
                     "an instance profile allowing events:PutEvents ('bosky --permissions' "
                     "prints the policy)")
    from ..delivery.sender import load_credentials

    try:
        credentials = load_credentials(environ)
    except Exception as exc:  # botocore raises many kinds; never show a secret
        return Check(name, FAIL, f"loading AWS credentials failed ({type(exc).__name__})",
                     "run 'aws sts get-caller-identity' to see why")
    if credentials is None:
        return Check(name, FAIL, "no AWS credentials (environment, profile, container or "
                     "instance role)", "attach an instance profile allowing events:PutEvents "
                     "('bosky --permissions' prints the policy)")
    return Check(name, OK, f"found (provider: {getattr(credentials, 'method', 'unknown')})")


def endpoint_url(view: ConfigView, region: Optional[str]) -> Optional[str]:
    from ..arns import events_endpoint

    return view.settings.endpoint_url or (events_endpoint(region) if region else None)


def check_endpoint(url: Optional[str], environ: Mapping[str, str], instance: bool = True,
                   timeout: float = CONNECT_TIMEOUT) -> Check:
    name = "endpoint"
    if not url:
        return Check(name, WARN, "skipped: no region to derive the endpoint from")
    if not instance:
        return Check(name, WARN, f"{url} not checked for an image")
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    if not parts.hostname or not port:
        return Check(name, FAIL, f"{url!r} is not an http(s) URL", "correct endpoint_url")
    host, via = parts.hostname, ""
    proxy = proxy_for(url, environ)
    if proxy:
        host, port, via = proxy[0], proxy[1], f" via proxy {proxy[0]}:{proxy[1]}"
    error = tcp_connect(host, port, timeout)
    if error:
        return Check(name, FAIL, f"cannot connect to {host}:{port}{via} ({url}): {error}",
                     "allow outbound HTTPS to EventBridge (security group, network ACL, route, "
                     "proxy) or use a VPC endpoint as endpoint_url")
    return Check(name, OK, f"{host}:{port}{via} accepts connections ({url})")


def proxy_for(url: str, environ: Mapping[str, str]) -> Optional[Tuple[str, int]]:
    """The proxy the sender would use for ``url`` (host, port), or None when it goes direct.

    The verdict is the standard library's, as the sender's urllib reaches it
    (``ProxyHandler``: the ``<scheme>_proxy`` variable, then
    ``proxy_bypass_environment`` on the request's host, its port included when
    the URL names one), only read from ``environ`` rather than os.environ.
    """
    proxies = proxies_from(environ)
    proxy = proxies.get(urllib.parse.urlsplit(url).scheme)
    if not proxy or proxy_bypass_environment(urllib.request.Request(url).host, proxies):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = parts.port or 80
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def proxies_from(environ: Mapping[str, str]) -> Dict[str, str]:
    """``urllib.request.getproxies_environment()`` for ``environ``: that function reads
    only os.environ. Lowercase names win; an empty one unsets; a CGI request's
    HTTP_PROXY is ignored (CVE-2016-1000110), as there."""
    proxies = {name.lower()[:-6]: value for name, value in environ.items()
               if value and name.lower().endswith("_proxy")}
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            if value:
                proxies[name.lower()[:-6]] = value
            else:
                proxies.pop(name.lower()[:-6], None)
    return proxies


def tcp_connect(host: str, port: int, timeout: float) -> Optional[str]:
    """None when ``host:port`` accepts a TCP connection within ``timeout``, else why not.

    The attempt runs in a thread so the name lookup, which takes no timeout
    of its own, is bounded too.
    """
    outcome: Dict[str, str] = {}

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome["ok"] = ""
        except OSError as exc:
            outcome["error"] = exc.strerror or str(exc) or type(exc).__name__

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if "ok" in outcome:
        return None
    return outcome.get("error") or f"no answer within {timeout:g} s"


def check_send_test(view: ConfigView, region: Optional[str], ident: Any,
                    environ: Mapping[str, str]) -> Check:
    """Send one event with Status 'test', without spooling it when it fails."""
    name = "send test"
    if not region:
        return Check(name, FAIL, "cannot send: no region", "set region (see the region check)")
    from ..arns import instance_arn
    from ..delivery.outbox import send
    from ..delivery.sender import Target
    from ..event import make_event

    s = view.settings
    event = make_event(
        source=s.project, detail_type=s.detail_type, status="test",
        message="bosky doctor --send-test", identity=ident.detail_fields(), origin="command",
        resources=(instance_arn(ident.instance_id, region, ident.account_id),)
        if ident.instance_id else (),
        event_bus=s.event_bus,
    )
    target = Target(region, s.endpoint_url, min(s.send_timeout, SEND_TEST_BUDGET))
    (result,) = send([event], target, None, environ)
    where = f"Source {s.project!r}, bus {s.event_bus or 'default'} in {region}"
    if result.outcome.delivered:
        return Check(name, OK, f"EventBridge accepted test event {event.event_id} ({where})")
    return Check(name, FAIL, f"test event not accepted ({where}): {result.outcome.reason()}",
                 "see the credentials and endpoint checks; 'bosky --permissions' prints the "
                 "policy the role needs")
