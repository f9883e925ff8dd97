"""An EC2 instance metadata service (IMDS) emulator on 127.0.0.1.

Both cloud-init's Ec2 datasource and botocore (bosky's credentials and region)
talk to it, so it follows the real service where they look:

* IMDSv2: ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``
  (1..21600) returns a token; with ``http_tokens="required"`` (the default,
  like a hardened instance) every GET without a valid
  ``X-aws-ec2-metadata-token`` gets 401. ``http_tokens="optional"`` also
  serves plain IMDSv1 GETs.
* Directory listings are newline-separated names, sub-directories with a
  trailing ``/`` (what cloud-init's ``MetadataMaterializer`` crawls); a leaf
  asked for with a trailing slash still returns its value (botocore asks for
  ``placement/availability-zone/``).
* ``/latest/...`` and every dated API version (``/2009-04-04``,
  ``/2016-09-02``, ``/2018-09-24``, ``/2021-03-23`` ... as listed by
  ``GET /``) serve the same tree; unknown versions are 404.
* ``/latest/user-data`` is 404 when the instance has no user data.

Everything served is derived, at request time, from the mutable
:class:`InstanceMetadata` in ``server.metadata``, so a test can change user
data or credentials between two boots of one instance. Every request is
recorded in ``server.requests``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Optional, Union

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TOKEN_TTL = 21600

#: The API versions the real service lists at ``GET /`` (all share one tree
#: here). cloud-init asks for 2009-04-04 (its minimum) and, newest first,
#: 2021-03-23 (22.x and later), 2018-09-24 and 2016-09-02.
API_VERSIONS: tuple[str, ...] = (
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "2024-04-11",
    "latest",
)

Tree = dict[str, Any]  # values: str/bytes (leaf), dict (directory), None (absent)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Credentials:
    """The instance role's temporary credentials (``iam/security-credentials/<role>``)."""

    access_key_id: str = "ASIAIMDSEMULATOR0001"
    secret_access_key: str = "imds-emulator-secret-access-key-0000000001"
    token: str = "IQoJb3JpZ2luX2VjEImdsEmulatorSessionToken"
    expiration: Optional[datetime] = None  # default: six hours after each request


@dataclass
class InstanceMetadata:
    """Everything the emulator serves about the one instance it pretends to run.

    ``availability_zone`` defaults to ``region + "a"``; ``role=None`` means no
    instance profile (no ``iam/`` directory, as on a real instance).
    """

    instance_id: str = "i-0b05e1a5e0b05e1a5"
    region: str = "eu-west-1"
    availability_zone: Optional[str] = None
    account_id: str = "123456789012"
    instance_type: str = "t3.micro"
    image_id: str = "ami-0b05e1a5e0b05e1a5"
    architecture: str = "x86_64"
    mac: str = "0a:b0:5e:1a:5e:01"
    private_ip: str = "172.31.16.10"
    role: Optional[str] = "bosky-test-role"
    credentials: Credentials = field(default_factory=Credentials)
    user_data: Optional[bytes] = None
    tags: Optional[dict[str, str]] = None
    #: ``autoscaling/target-lifecycle-state`` (e.g. "InService", "Warmed:Stopped");
    #: None: the instance is not in an Auto Scaling group, the path is absent.
    target_lifecycle_state: Optional[str] = None
    partition: str = "aws"
    pending_time: datetime = field(
        default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0)
    )

    @property
    def zone(self) -> str:
        return self.availability_zone or f"{self.region}a"

    @property
    def hostname(self) -> str:
        return f"ip-{self.private_ip.replace('.', '-')}.{self.region}.compute.internal"

    def identity_document(self) -> dict[str, Any]:
        """``dynamic/instance-identity/document`` as the real service shapes it."""
        return {
            "accountId": self.account_id,
            "architecture": self.architecture,
            "availabilityZone": self.zone,
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": self.image_id,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "kernelId": None,
            "pendingTime": _iso(self.pending_time),
            "privateIp": self.private_ip,
            "ramdiskId": None,
            "region": self.region,
            "version": "2017-09-30",
        }

    def _credentials_document(self) -> dict[str, Any]:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        creds = self.credentials
        return {
            "Code": "Success",
            "LastUpdated": _iso(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.token,
            "Expiration": _iso(creds.expiration or now + timedelta(hours=6)),
        }

    def meta_data_tree(self) -> Tree:
        """The ``meta-data/`` tree; rebuilt per request so edits show at once."""
        interface = {
            "device-number": "0",
            "interface-id": "eni-0b05e1a5e0b05e1a5",
            "local-hostname": self.hostname,
            "local-ipv4s": self.private_ip,
            "mac": self.mac,
            "owner-id": self.account_id,
            "security-group-ids": "sg-0b05e1a5e0b05e1a5",
            "security-groups": "default",
            "subnet-id": "subnet-0b05e1a5e0b05e1a5",
            "subnet-ipv4-cidr-block": "172.31.16.0/20",
            "vpc-id": "vpc-0b05e1a5",
            "vpc-ipv4-cidr-block": "172.31.0.0/16",
            "vpc-ipv4-cidr-blocks": "172.31.0.0/16",
        }
        tree: Tree = {
            "ami-id": self.image_id,
            "ami-launch-index": "0",
            "ami-manifest-path": "(unknown)",
            "block-device-mapping": {"ami": "/dev/xvda", "root": "/dev/xvda"},
            "hostname": self.hostname,
            "instance-action": "none",
            "instance-id": self.instance_id,
            "instance-life-cycle": "on-demand",
            "instance-type": self.instance_type,
            "local-hostname": self.hostname,
            "local-ipv4": self.private_ip,
            "mac": self.mac,
            "network": {"interfaces": {"macs": {self.mac: interface}}},
            "placement": {
                "availability-zone": self.zone,
                "availability-zone-id": "euw1-az1",
                "region": self.region,
            },
            "profile": "default-hvm",
            "reservation-id": "r-0b05e1a5e0b05e1a5",
            "security-groups": "default",
            "services": {"domain": "amazonaws.com", "partition": self.partition},
        }
        if self.role:
            tree["iam"] = {
                "info": json.dumps(
                    {
                        "Code": "Success",
                        "LastUpdated": _iso(datetime.now(timezone.utc)),
                        "InstanceProfileArn": (
                            f"arn:{self.partition}:iam::{self.account_id}"
                            f":instance-profile/{self.role}"
                        ),
                        "InstanceProfileId": "AIPAIMDSEMULATOR00001",
                    },
                    indent=2,
                ),
                "security-credentials": {
                    self.role: json.dumps(self._credentials_document(), indent=2)
                },
            }
        if self.tags is not None:
            tree["tags"] = {"instance": dict(self.tags)}
        if self.target_lifecycle_state is not None:
            tree["autoscaling"] = {"target-lifecycle-state": self.target_lifecycle_state}
        return tree

    def version_tree(self) -> Tree:
        """One API version's root: ``meta-data/``, ``dynamic/``, ``user-data``."""
        tree: Tree = {
            "meta-data": self.meta_data_tree(),
            "dynamic": {
                "instance-identity": {"document": json.dumps(self.identity_document(), indent=2)}
            },
        }
        if self.user_data is not None:
            tree["user-data"] = self.user_data
        return tree


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered (for assertions on who asked what)."""

    method: str
    path: str
    status: int
    had_token: bool
    headers: dict[str, str]
    time: float


def _listing(directory: Tree) -> bytes:
    names = [f"{k}/" if isinstance(v, dict) else k for k, v in directory.items() if v is not None]
    return "\n".join(names).encode()


def _resolve(tree: Tree, parts: list[str]) -> Union[Tree, str, bytes, None]:
    node: Union[Tree, str, bytes, None] = tree
    for part in parts:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


class _Handler(BaseHTTPRequestHandler):
    server: _IMDSHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; ``requests`` records everything."""

    # -- plumbing ----------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", extra: Optional[dict[str, str]] = None) -> None:
        owner = self.server.owner
        owner._record(self, status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _injected(self) -> Optional[int]:
        """A status forced by the test for this path (``server.fail_paths``)."""
        path = self.path.split("?", 1)[0]
        for prefix, status in self.server.owner.fail_paths.items():
            if path.startswith(prefix):
                return status
        return None

    # -- verbs -------------------------------------------------------------

    def do_PUT(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        owner._maybe_delay()
        forced = self._injected()
        if forced is not None:
            self._send(forced)
            return
        if self.path.split("?", 1)[0] != "/latest/api/token":
            self._send(405 if self.path.startswith("/latest/") else 404)
            return
        if self.headers.get("X-Forwarded-For"):
            self._send(403)  # the real service refuses proxied token requests
            return
        ttl_text = self.headers.get(TOKEN_TTL_HEADER, "")
        try:
            ttl = int(ttl_text)
        except ValueError:
            self._send(400)
            return
        if not 1 <= ttl <= MAX_TOKEN_TTL:
            self._send(400)
            return
        token = owner._issue_token(ttl)
        self._send(200, token.encode(), {TOKEN_TTL_HEADER: str(ttl)})

    def do_GET(self) -> None:
        owner = self.server.owner
        owner._maybe_delay()
        forced = self._injected()
        if forced is not None:
            self._send(forced)
            return
        token = self.headers.get(TOKEN_HEADER)
        if token is not None and not owner._token_valid(token):
            self._send(401)
            return
        if token is None and owner.http_tokens == "required":
            self._send(401)
            return
        status, body = owner._lookup(self.path.split("?", 1)[0])
        self._send(status, body)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self._send(405)

    do_DELETE = do_POST


class _IMDSHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: MetadataServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class MetadataServer:
    """The emulator; a context manager whose ``url`` is ``http://127.0.0.1:PORT``.

    ``MetadataServer(instance_id="i-1", region="us-east-2", user_data=b"...")``
    sets :class:`InstanceMetadata` fields; ``metadata=`` passes a whole one.
    ``fail_paths`` maps a path prefix to a status code the server answers with
    instead (to test IMDS failures); ``delay`` (seconds) slows every answer.
    """

    def __init__(
        self,
        metadata: Optional[InstanceMetadata] = None,
        *,
        http_tokens: str = "required",
        **fields: Any,
    ) -> None:
        if http_tokens not in ("required", "optional"):
            raise ValueError("http_tokens must be 'required' or 'optional'")
        self.metadata: InstanceMetadata = replace(metadata or InstanceMetadata(), **fields)
        self.http_tokens = http_tokens
        self.fail_paths: dict[str, int] = {}
        self.delay: float = 0.0
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._requests: list[RequestRecord] = []
        self._httpd: Optional[_IMDSHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> MetadataServer:
        """Bind a free loopback port and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        self._httpd = _IMDSHTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="imds-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> MetadataServer:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("MetadataServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- inspection ----------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def paths(self, method: Optional[str] = None) -> list[str]:
        """The requested paths (optionally of one method), for quick assertions."""
        return [r.path for r in self.requests if method is None or r.method == method]

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (clients must PUT for a new one)."""
        with self._lock:
            self._tokens.clear()

    # -- internals used by the handler -----------------------------------------

    def _record(self, handler: BaseHTTPRequestHandler, status: int) -> None:
        record = RequestRecord(
            method=handler.command,
            path=handler.path,
            status=status,
            had_token=TOKEN_HEADER.lower() in (k.lower() for k in handler.headers),
            headers={k: v for k, v in handler.headers.items()},
            time=time.time(),
        )
        with self._lock:
            self._requests.append(record)

    def _maybe_delay(self) -> None:
        if self.delay > 0:
            time.sleep(self.delay)

    def _issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(40)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def _token_valid(self, token: str) -> bool:
        with self._lock:
            expires = self._tokens.get(token)
        return expires is not None and expires > time.monotonic()

    def _lookup(self, path: str) -> tuple[int, bytes]:
        """Map a GET path to (status, body) against the current metadata."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return 200, "\n".join(API_VERSIONS).encode()
        if parts[0] not in API_VERSIONS:
            return 404, b""
        node = _resolve(self.metadata.version_tree(), parts[1:])
        if node is None:
            return 404, b""
        if isinstance(node, dict):
            return 200, _listing(node)
        return 200, node if isinstance(node, bytes) else node.encode()
