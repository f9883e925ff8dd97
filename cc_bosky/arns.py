"""Partitions, ARNs and endpoints, derived from a region.

The original bosky hard-coded the ``aws`` partition, which gives wrong ARNs in
China and GovCloud. The partition follows from the region as botocore
resolves it: the first partition that lists the region or whose region
pattern matches it, else the first partition (``aws``). The partitions, their
DNS suffixes and region patterns are the installed botocore's own
(``botocore/data/partitions.json``), so a new partition (``aws-eusc``:
``eusc-de-east-1``, ``amazonaws.eu``) needs no release of bosky. The file is
read as a file, found without importing botocore: ``import botocore`` alone
takes 6-10 ms (``python -X importtime`` on the development machine), reading
the 7 KB of JSON ~0.2 ms, and the cloud-init stage must not load botocore at
all. An older botocore (Debian 11's 1.20) has no partitions.json:
:data:`FALLBACK` stands in.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from typing import Any, FrozenSet, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Partition:
    name: str
    dns_suffix: str
    region_regex: str
    regions: FrozenSet[str] = frozenset()

    def has(self, region: str) -> bool:
        return region in self.regions or bool(re.match(self.region_regex, region))


# Without partitions.json: the partitions as botocore 1.44's data has them.
FALLBACK: Tuple[Partition, ...] = (
    Partition("aws", "amazonaws.com", r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$"),
    Partition("aws-cn", "amazonaws.com.cn", r"^cn\-\w+\-\d+$"),
    Partition("aws-eusc", "amazonaws.eu", r"^eusc\-(de)\-\w+\-\d+$"),
    Partition("aws-iso", "c2s.ic.gov", r"^us\-iso\-\w+\-\d+$"),
    Partition("aws-iso-b", "sc2s.sgov.gov", r"^us\-isob\-\w+\-\d+$"),
    Partition("aws-iso-e", "cloud.adc-e.uk", r"^eu\-isoe\-\w+\-\d+$"),
    Partition("aws-iso-f", "csp.hci.ic.gov", r"^us\-isof\-\w+\-\d+$"),
    Partition("aws-us-gov", "amazonaws.com", r"^us\-gov\-\w+\-\d+$"),
)


@functools.cache
def partitions() -> Tuple[Partition, ...]:
    """The installed botocore's partitions, in its order; :data:`FALLBACK` without them."""
    path = botocore_data("partitions.json")
    try:
        with open(path or "", encoding="utf-8") as f:
            return tuple(_partition(p) for p in json.load(f)["partitions"])
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return FALLBACK


def botocore_data(name: str) -> Optional[str]:
    """Where the installed botocore keeps data file ``name``, found without importing it."""
    from importlib.util import find_spec

    try:
        spec = find_spec("botocore")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(next(iter(spec.submodule_search_locations)), "data", name)


def _partition(data: Any) -> Partition:
    return Partition(str(data["id"]), str(data["outputs"]["dnsSuffix"]),
                     str(data["regionRegex"]), frozenset(map(str, data.get("regions") or ())))


def partition_of(region: Optional[str]) -> Partition:
    """The partition ``region`` is in, as botocore resolves it (``aws.partition``):
    the first that lists it or whose pattern matches it, else the first of all."""
    known = partitions()
    return next((p for p in known if region and p.has(region)), known[0])


def partition(region: Optional[str]) -> str:
    return partition_of(region).name


def dns_suffix(region: str) -> str:
    return partition_of(region).dns_suffix


def events_endpoint(region: str) -> str:
    return endpoint("events", region)


def endpoint(service: str, region: str) -> str:
    """The regional endpoint of ``events``, ``autoscaling`` or ``cloudformation``."""
    return f"https://{service}.{region}.{dns_suffix(region)}"


def autoscaling_group_arn(group: str, region: Optional[str], account_id: Optional[str]) -> str:
    """The group's ARN for an IAM policy (its uuid part is not knowable: ``*``)."""
    return (f"arn:{partition(region)}:autoscaling:{region or '*'}:{account_id or '*'}"
            f":autoScalingGroup:*:autoScalingGroupName/{group}")


def stack_arn(stack: str, region: Optional[str], account_id: Optional[str]) -> str:
    if stack.startswith("arn:"):
        return stack
    return (f"arn:{partition(region)}:cloudformation:{region or '*'}:{account_id or '*'}"
            f":stack/{stack}/*")


def instance_arn(instance_id: str, region: Optional[str], account_id: Optional[str]) -> str:
    """The instance's ARN, or its bare id when region or account is unknown.

    A bare id is what the first original bosky sent, so a rule matching it
    still matches; an ARN with a guessed account would match nothing.
    """
    if not (region and account_id):
        return instance_id
    return f"arn:{partition(region)}:ec2:{region}:{account_id}:instance/{instance_id}"


def event_bus_arn(bus: Optional[str], region: Optional[str], account_id: Optional[str]) -> str:
    """The bus's ARN for an IAM policy; ``*`` stands in for what is unknown."""
    if bus and bus.startswith("arn:"):
        return bus
    return (
        f"arn:{partition(region)}:events:{region or '*'}:{account_id or '*'}"
        f":event-bus/{bus or 'default'}"
    )


def bus_region(event_bus: Optional[str]) -> Optional[str]:
    """The region in an event bus ARN (``arn:aws:events:REGION:ACCOUNT:event-bus/NAME``)."""
    if event_bus and event_bus.startswith("arn:"):
        parts = event_bus.split(":")
        if len(parts) >= 6 and parts[3]:
            return parts[3]
    return None


def send_region(event_bus: Optional[str], configured: Optional[str],
                instance_region: Optional[str]) -> Optional[str]:
    """Where PutEvents must go: a bus given by ARN lives in the ARN's region,
    whatever the environment's default region says; then the configured
    region, then the instance's own."""
    return bus_region(event_bus) or configured or instance_region


def log_group_arn(group: str, region: Optional[str], account_id: Optional[str]) -> str:
    """A log group's ARN as IAM matches it (with the ``:*`` its streams add)."""
    return (f"arn:{partition(region)}:logs:{region or '*'}:{account_id or '*'}"
            f":log-group:{group}:*")
