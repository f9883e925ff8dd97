"""Acting on the verdict: which lifecycle hook to complete, which stack to signal.

The verdict decides the answer (pass CONTINUE/SUCCESS; fail and timeout
ABANDON/FAILURE; degraded as configured); this package decides where it goes
(the hook, its group, the stack and resource, from the stanza, else the
instance's own tags, else DescribeAutoScalingInstances) and turns both into
:class:`~cc_bosky.delivery.action.Action` records for the one outbox.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, List, Mapping, Optional

from ..delivery.action import Action
from ..event import stable_event_id

LOG = logging.getLogger("bosky.actions")
GROUP_TAG = "aws:autoscaling:groupName"
STACK_TAG = "aws:cloudformation:stack-name"
LOGICAL_ID_TAG = "aws:cloudformation:logical-id"
LIFECYCLE_STATE = "autoscaling/target-lifecycle-state"
# Verdicts that keep the instance: everything else (fail, timeout) abandons it.
_GOOD = ("pass",)


@dataclasses.dataclass(frozen=True)
class HookSpec:
    name: str
    group: Optional[str] = None
    degraded: str = "continue"
    heartbeat: int = 300


@dataclasses.dataclass(frozen=True)
class SignalSpec:
    stack: Optional[str] = None
    resource: Optional[str] = None
    degraded: str = "success"


def hook_spec(value: Any) -> Optional[HookSpec]:
    """The ``lifecycle_hook`` setting (a name, or its full form), or None."""
    if isinstance(value, str) and value:
        return HookSpec(value)
    if isinstance(value, dict) and value.get("name"):
        return HookSpec(str(value["name"]), value.get("group") or None,
                        str(value.get("degraded") or "continue"),
                        int(value.get("heartbeat", 300)))
    return None


def signal_spec(value: Any) -> Optional[SignalSpec]:
    """The ``cfn_signal`` setting (true, or its full form), or None."""
    if value is True:
        return SignalSpec()
    if isinstance(value, dict):
        return SignalSpec(value.get("stack") or None, value.get("resource") or None,
                          str(value.get("degraded") or "success"))
    return None


def hook_result(status: str, spec: HookSpec) -> str:
    if status == "degraded":
        return "ABANDON" if spec.degraded == "abandon" else "CONTINUE"
    return "CONTINUE" if status in _GOOD else "ABANDON"


def signal_status(status: str, spec: SignalSpec) -> str:
    if status == "degraded":
        return "FAILURE" if spec.degraded == "failure" else "SUCCESS"
    return "SUCCESS" if status in _GOOD else "FAILURE"


@dataclasses.dataclass
class Facts:
    """What the instance knows about its place: tags and the warm-pool state."""

    tags: Dict[str, str] = dataclasses.field(default_factory=dict)
    target_state: Optional[str] = None


def facts_from_record(record: Any) -> Facts:
    """Tags and lifecycle state cloud-init copied from the metadata service
    into instance-data.json's ``ds`` (instance metadata tags must be on)."""
    ds = _dict(_dict(record).get("ds"))
    meta = _dict(ds.get("meta_data") or ds.get("meta-data"))
    tags = _dict(_dict(meta.get("tags")).get("instance"))
    state = _dict(meta.get("autoscaling")).get("target-lifecycle-state")
    return Facts({str(k): str(v).strip() for k, v in tags.items() if isinstance(v, str)},
                 state.strip() if isinstance(state, str) and state.strip() else None)


def complete_facts(facts: Facts, environ: Mapping[str, str], wanted: List[str]) -> Facts:
    """``facts`` with the ``wanted`` tags and the lifecycle state asked of IMDS
    where instance-data.json did not have them (older cloud-init, no record)."""
    from ..identity import imds_get

    tags = dict(facts.tags)
    for key in wanted:
        if key not in tags:
            value = imds_get(environ, f"tags/instance/{key}")
            if value:
                tags[key] = value
    state = facts.target_state or imds_get(environ, LIFECYCLE_STATE)
    return Facts(tags, state)


def describe_group(instance_id: str, region: str, endpoint: Optional[str],
                   environ: Mapping[str, str], budget: float = 5.0) -> Optional[str]:
    """The instance's group from DescribeAutoScalingInstances; None if in none
    (or the call failed, which is logged)."""
    from ..delivery import query
    from ..delivery.sender import Target, call

    outcome = call("DescribeAutoScalingInstances", {"InstanceIds.member.1": instance_id},
                   Target(region, endpoint, budget, "autoscaling"), environ)
    if not outcome.delivered:
        LOG.warning("cannot tell this instance's Auto Scaling group: %s", outcome.reason())
        return None
    groups = query.texts(outcome.response, "AutoScalingGroupName")
    return groups[0] if groups else None


@dataclasses.dataclass
class Plan:
    """Where this instance's verdict goes, resolved before the verdict is known."""

    hook: Optional[HookSpec] = None
    group: Optional[str] = None
    signal: Optional[SignalSpec] = None
    stack: Optional[str] = None
    resource: Optional[str] = None
    target_state: Optional[str] = None

    def actions(self, status: str, instance_id: str, boot_key: str) -> List[Action]:
        """The calls ``status`` asks for; ids stable per instance, boot and target,
        so a restarted reporter spools the same ones again, not new ones."""
        found: List[Action] = []
        if self.hook and self.group:
            found.append(Action("lifecycle", stable_event_id(
                instance_id, boot_key, "lifecycle", self.group, self.hook.name,
                self.target_state or "-"), {
                "AutoScalingGroupName": self.group,
                "LifecycleHookName": self.hook.name,
                "InstanceId": instance_id,
                "LifecycleActionResult": hook_result(status, self.hook),
            }))
        if self.signal and self.stack and self.resource:
            found.append(Action("signal", stable_event_id(
                instance_id, boot_key, "signal", self.stack, self.resource), {
                "StackName": self.stack,
                "LogicalResourceId": self.resource,
                "UniqueId": instance_id,
                "Status": signal_status(status, self.signal),
            }))
        return found


def resolve(hook: Optional[HookSpec], signal: Optional[SignalSpec], facts: Facts,
            instance_id: Optional[str], region: Optional[str],
            autoscaling_endpoint: Optional[str], environ: Mapping[str, str],
            describe: bool = True) -> Plan:
    """Find the group, stack and resource, each from the cheapest source that
    knows it (``describe=False``: no DescribeAutoScalingInstances); what
    cannot be found gets one INFO line, never an error."""
    plan = Plan(hook=hook, signal=signal, target_state=facts.target_state)
    if not (hook or signal):
        return plan
    if not instance_id or not region:
        LOG.info("no instance id or region known: no lifecycle hook or stack signal")
        return plan
    if hook:
        plan.group = hook.group or facts.tags.get(GROUP_TAG) or (describe_group(
            instance_id, region, autoscaling_endpoint, environ) if describe else None)
        if not plan.group:
            LOG.info("instance %s is not in an Auto Scaling group: lifecycle hook %s is not "
                     "completed", instance_id, hook.name)
    if signal:
        plan.stack = signal.stack or facts.tags.get(STACK_TAG)
        plan.resource = signal.resource or facts.tags.get(LOGICAL_ID_TAG)
        if not (plan.stack and plan.resource):
            LOG.info("no stack/resource configured or tagged on %s: no CloudFormation signal",
                     instance_id)
    return plan


def wanted_tags(hook: Optional[HookSpec], signal: Optional[SignalSpec]) -> List[str]:
    wanted: List[str] = []
    if hook and not hook.group:
        wanted.append(GROUP_TAG)
    if signal and not signal.stack:
        wanted.append(STACK_TAG)
    if signal and not signal.resource:
        wanted.append(LOGICAL_ID_TAG)
    return wanted


def heartbeat(plan: Plan, instance_id: str, region: str, endpoint: Optional[str],
              environ: Mapping[str, str], budget: float = 3.0) -> bool:
    """One RecordLifecycleActionHeartbeat; False once there is nothing to keep alive."""
    from ..delivery.action import NO_ACTIVE_ACTION
    from ..delivery.sender import Target, call

    if not (plan.hook and plan.group):
        return False
    outcome = call("RecordLifecycleActionHeartbeat", {
        "AutoScalingGroupName": plan.group, "LifecycleHookName": plan.hook.name,
        "InstanceId": instance_id}, Target(region, endpoint, budget, "autoscaling"), environ)
    if outcome.delivered:
        return True
    if NO_ACTIVE_ACTION in (outcome.error_message or ""):
        LOG.info("lifecycle hook %s: no pending action to keep alive", plan.hook.name)
        return False
    LOG.warning("lifecycle hook %s: heartbeat failed: %s", plan.hook.name, outcome.reason())
    return outcome.retryable


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}
