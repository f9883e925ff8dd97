"""Partitions, ARNs and endpoints, derived from a region.

The original bosky hard-coded the ``aws`` partition, which gives wrong ARNs in
China and GovCloud. The partition follows from the region's prefix.
"""

from __future__ import annotations

from typing import Optional, Tuple

# (region prefix, partition, DNS suffix); the first match wins, so the longer
# prefixes come first.
_PARTITIONS: Tuple[Tuple[str, str, str], ...] = (
    ("cn-", "aws-cn", "amazonaws.com.cn"),
    ("us-gov-", "aws-us-gov", "amazonaws.com"),
    ("us-isob-", "aws-iso-b", "sc2s.sgov.gov"),
    ("us-iso-", "aws-iso", "c2s.ic.gov"),
    ("eu-isoe-", "aws-iso-e", "cloud.adc-e.uk"),
    ("us-isof-", "aws-iso-f", "csp.hci.ic.gov"),
)


def partition(region: Optional[str]) -> str:
    for prefix, name, _ in _PARTITIONS:
        if region and region.startswith(prefix):
            return name
    return "aws"


def dns_suffix(region: str) -> str:
    for prefix, _, suffix in _PARTITIONS:
        if region.startswith(prefix):
            return suffix
    return "amazonaws.com"


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
