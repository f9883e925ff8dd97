"""Who is sending: the instance's identity, from the cheapest source that knows it.

Order: an explicit instance id (flag or BOSKY_INSTANCE_ID), then cloud-init's
world-readable ``instance-data.json`` (no network), then IMDSv2 with short,
explicit timeouts. Off EC2 none of them may answer, and that is fine: fields
that cannot be known are left out, never invented.
"""

from __future__ import annotations

import dataclasses
import errno
import http.client
import json
import os
import socket
from typing import Any, Dict, Mapping, Optional
from urllib.parse import urlsplit

from .files import read_json

INSTANCE_DATA = "/run/cloud-init/instance-data.json"
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
IMDS_DEFAULT = "http://169.254.169.254"
_IMDS_DEFAULTS = {"ipv4": IMDS_DEFAULT, "ipv6": "http://[fd00:ec2::254]"}
# Errors that say the service is not there at all (as opposed to slow or busy).
_NEVER = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL,
          errno.EAFNOSUPPORT)
# Off EC2 the link-local address usually does not answer at all, so each of
# the two IMDS requests gives up after this long (wall clock, whole answer).
IMDS_TIMEOUT = 1.0


@dataclasses.dataclass(frozen=True)
class Identity:
    instance_id: Optional[str] = None
    account_id: Optional[str] = None
    region: Optional[str] = None
    availability_zone: Optional[str] = None
    instance_type: Optional[str] = None
    image_id: Optional[str] = None
    hostname: Optional[str] = None
    boot_id: Optional[str] = None

    def detail_fields(self) -> Dict[str, str]:
        """The known fields, under the event detail's PascalCase names."""
        names = {
            "instance_id": "InstanceId",
            "account_id": "AccountId",
            "region": "Region",
            "availability_zone": "AvailabilityZone",
            "instance_type": "InstanceType",
            "image_id": "ImageId",
            "hostname": "Hostname",
            "boot_id": "BootId",
        }
        return {
            names[f.name]: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name)
        }


def resolve(
    instance_id: Optional[str],
    environ: Mapping[str, str],
    instance_data: str = INSTANCE_DATA,
    imds: bool = True,
) -> Identity:
    """The identity for an event, looking only as far as needed (``imds=False``:
    only what this machine knows without the network)."""
    local = {"hostname": _hostname(), "boot_id": read_boot_id()}
    found = from_instance_data(instance_data)
    if instance_id:
        # An explicit id means "this instance", often from another machine:
        # keep what the local record says only if it is about the same one.
        if found.instance_id != instance_id:
            return Identity(instance_id=instance_id, **local)
        return dataclasses.replace(found, **_fill(found, local))
    if imds and imds_would_help(found, environ):
        found = from_imds(environ)
    return dataclasses.replace(found, **_fill(found, local))


def imds_would_help(found: Identity, environ: Mapping[str, str]) -> bool:
    """True when :func:`resolve` would ask IMDS for what ``found`` lacks."""
    return not found.instance_id and not _imds_disabled(environ)


def _fill(found: Identity, local: Mapping[str, Optional[str]]) -> Dict[str, Optional[str]]:
    return {k: v for k, v in local.items() if not getattr(found, k)}


def from_instance_data(path: str = INSTANCE_DATA) -> Identity:
    """What cloud-init recorded about the instance; empty if there is no record."""
    return identity_from_record(read_instance_data(path))


def read_instance_data(path: str = INSTANCE_DATA) -> Optional[Dict[str, Any]]:
    """cloud-init's record of the instance (world-readable, no network); None without one."""
    return read_json(path)


def identity_from_record(data: Any) -> Identity:
    if not isinstance(data, dict):
        return Identity()
    v1 = _dict(data.get("v1"))
    ds = _dict(data.get("ds"))
    meta = _dict(ds.get("meta_data") or ds.get("meta-data"))
    doc = _dict(_dict(_dict(ds.get("dynamic")).get("instance-identity")).get("document"))
    return Identity(
        instance_id=_str(v1.get("instance_id") or doc.get("instanceId")),
        account_id=_str(doc.get("accountId")),
        region=_str(v1.get("region") or doc.get("region")),
        availability_zone=_str(v1.get("availability_zone") or doc.get("availabilityZone")),
        instance_type=_str(doc.get("instanceType") or meta.get("instance-type")),
        image_id=_str(doc.get("imageId") or meta.get("ami-id")),
        hostname=_str(v1.get("local_hostname")),
    )


def from_imds(environ: Mapping[str, str]) -> Identity:
    """The identity document from IMDSv2; empty when IMDS does not answer."""
    try:
        doc = json.loads(_imds_read(environ, "/latest/dynamic/instance-identity/document"))
    except (OSError, ValueError, http.client.HTTPException):
        return Identity()
    if not isinstance(doc, dict):
        return Identity()
    return Identity(
        instance_id=_str(doc.get("instanceId")),
        account_id=_str(doc.get("accountId")),
        region=_str(doc.get("region")),
        availability_zone=_str(doc.get("availabilityZone")),
        instance_type=_str(doc.get("instanceType")),
        image_id=_str(doc.get("imageId")),
    )


def imds_get(environ: Mapping[str, str], path: str) -> Optional[str]:
    """One IMDSv2 ``meta-data`` path's text, or None (absent, off EC2, disabled)."""
    if _imds_disabled(environ):
        return None
    try:
        return _imds_read(environ, f"/latest/meta-data/{path}").strip() or None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def imds_never(environ: Mapping[str, str]) -> Optional[str]:
    """Why the instance metadata service can never answer here, or None.

    One token request, bounded by IMDS_TIMEOUT: refused, unreachable, or not
    even a status line within it (off EC2 the link-local address usually
    drops the packets) is "never"; any HTTP answer, even a refusal or a slow
    body, is a service that may yet have a role attached, so None."""
    from .transport import DeadlinePassed

    if _imds_disabled(environ):
        return "disabled by AWS_EC2_METADATA_DISABLED"
    base = imds_base(environ)
    try:
        _imds_call(base, "/latest/api/token", method="PUT",
                   headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    except ValueError:
        return None  # botocore reports a bad endpoint itself
    except OSError as exc:
        cause = getattr(exc, "reason", exc)  # urllib wraps the socket's error
        if isinstance(cause, DeadlinePassed) and cause.answered:
            return None
        if isinstance(cause, (TimeoutError, socket.timeout)):
            return f"{base}: IMDS did not answer within {IMDS_TIMEOUT:g} s"
        if isinstance(cause, OSError) and cause.errno in _NEVER:
            return f"{base}: {os.strerror(cause.errno or 0).lower()}"
    except http.client.HTTPException:
        pass
    return None


def imds_base(environ: Mapping[str, str]) -> str:
    """The service's address as botocore picks it: the endpoint, else the mode's default."""
    mode = (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") or "ipv4").lower()
    return (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            or _IMDS_DEFAULTS.get(mode, IMDS_DEFAULT)).rstrip("/")


def _imds_read(environ: Mapping[str, str], path: str) -> str:
    """``path`` from IMDSv2: a session token first, then the request that carries it."""
    base = imds_base(environ)
    token = _imds_call(base, "/latest/api/token", method="PUT",
                       headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    return _imds_call(base, path, headers={"X-aws-ec2-metadata-token": token})


def _imds_call(base: str, path: str, method: str = "GET",
               headers: Optional[Dict[str, str]] = None) -> str:
    """One IMDS request, straight to the service: never through an HTTP proxy,
    whatever HTTP_PROXY says, never a redirect followed (a 3xx is no answer),
    and never longer than IMDS_TIMEOUT of wall clock, however slowly it answers."""
    from .transport import request

    url = urlsplit(base)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"not an IMDS endpoint: {base}")
    answer = request(base + path, IMDS_TIMEOUT, method=method, headers=headers or {},
                     proxies=False, limit=64 * 1024)
    if answer.status != 200:
        raise OSError(f"IMDS answered {answer.status} for {path}")
    return answer.body.decode("utf-8")


def _imds_disabled(environ: Mapping[str, str]) -> bool:
    return environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true"


def read_boot_id(path: str = BOOT_ID_FILE) -> Optional[str]:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, ValueError):
        return None


def _hostname() -> Optional[str]:
    try:
        return socket.gethostname() or None
    except OSError:
        return None


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> Optional[str]:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
