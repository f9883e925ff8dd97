"""``bosky doctor``'s checks for acting on the verdict: can the group, the
hook and the stack that are configured be resolved from this instance?"""

from __future__ import annotations

from typing import List, Mapping, Optional

from .. import config
from ..actions import (
    Plan,
    complete_facts,
    facts_from_record,
    hook_spec,
    resolve,
    signal_spec,
    wanted_tags,
)
from ..delivery import query
from ..delivery.sender import Outcome, Target, call
from ..identity import Identity, read_instance_data
from . import FAIL, OK, WARN, Check

_BUDGET = 5.0
_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


def action_checks(settings: config.Settings, ident: Identity, environ: Mapping[str, str],
                  instance: bool, instance_data: str) -> List[Check]:
    hook, signal = hook_spec(settings.lifecycle_hook), signal_spec(settings.cfn_signal)
    names = (["lifecycle hook"] if hook else []) + (["stack signal"] if signal else [])
    if not names:
        return []
    if not instance:
        return [Check(n, WARN, "not checked for an image: resolved on each instance")
                for n in names]
    region = ident.region or settings.region
    facts = complete_facts(facts_from_record(read_instance_data(instance_data)), environ,
                           wanted_tags(hook, signal))
    plan = resolve(hook, signal, facts, ident.instance_id, region,
                   settings.autoscaling_endpoint_url, environ)
    checks: List[Check] = []
    if hook:
        checks.append(_check_hook(plan, region, settings, environ))
    if signal:
        checks.append(_check_stack(plan, region, settings, environ))
    return checks


def _ask(service: str, operation: str, params: Mapping[str, str], region: str,
         settings: config.Settings, environ: Mapping[str, str]) -> Outcome:
    endpoint = settings.endpoints().get(service)
    return call(operation, params, Target(region, endpoint, _BUDGET, service), environ)


def _check_hook(plan: Plan, region: Optional[str], settings: config.Settings,
                environ: Mapping[str, str]) -> Check:
    name = "lifecycle hook"
    assert plan.hook is not None
    if not region:
        return Check(name, FAIL, "no region known", "set region")
    if not plan.group:
        return Check(name, WARN, f"this instance is in no Auto Scaling group (no "
                     f"aws:autoscaling:groupName tag, DescribeAutoScalingInstances found none): "
                     f"{plan.hook.name} will not be completed",
                     "set lifecycle_hook's group, or turn instance metadata tags on")
    outcome = _ask("autoscaling", "DescribeLifecycleHooks", {
        "AutoScalingGroupName": plan.group, "LifecycleHookNames.member.1": plan.hook.name},
        region, settings, environ)
    where = f"hook {plan.hook.name} of group {plan.group}"
    if not outcome.delivered:
        return _unreadable(name, where, outcome, "autoscaling:DescribeLifecycleHooks")
    if plan.hook.name not in query.texts(outcome.response, "LifecycleHookName"):
        return Check(name, FAIL, f"group {plan.group} has no lifecycle hook {plan.hook.name}",
                     "correct lifecycle_hook, or add the hook to the group")
    timeouts = query.texts(outcome.response, "HeartbeatTimeout")
    timeout = int(timeouts[0]) if timeouts and timeouts[0].isdigit() else None
    beat = plan.hook.heartbeat
    if timeout and (not beat or beat >= timeout) and settings.deadline >= timeout:
        return Check(name, WARN, f"{where}: its HeartbeatTimeout ({timeout} s) ends before "
                     f"bosky's deadline ({settings.deadline} s) and no heartbeat comes sooner",
                     f"set lifecycle_hook's heartbeat below {timeout}")
    return Check(name, OK, f"{where} found" + (f" (HeartbeatTimeout {timeout} s)"
                                              if timeout else ""))


def _check_stack(plan: Plan, region: Optional[str], settings: config.Settings,
                 environ: Mapping[str, str]) -> Check:
    name = "stack signal"
    if not region:
        return Check(name, FAIL, "no region known", "set region")
    if not (plan.stack and plan.resource):
        return Check(name, FAIL, "no stack and resource: none configured and no "
                     "aws:cloudformation:* tags", "set cfn_signal: {stack: ..., resource: ...}")
    where = f"resource {plan.resource} of stack {plan.stack}"
    outcome = _ask("cloudformation", "DescribeStackResource", {
        "StackName": plan.stack, "LogicalResourceId": plan.resource}, region, settings, environ)
    if not outcome.delivered:
        return _unreadable(name, where, outcome, "cloudformation:DescribeStackResource")
    return Check(name, OK, f"{where} found")


def _unreadable(name: str, where: str, outcome: Outcome, permission: str) -> Check:
    if outcome.error_code in _DENIED:
        return Check(name, WARN, f"{where}: cannot look it up ({permission} is not allowed; "
                     "bosky itself does not need it)")
    return Check(name, FAIL, f"{where}: {outcome.reason()}",
                 "check the name, the region and the endpoint")


