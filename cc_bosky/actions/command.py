"""``bosky --fail "migrations failed" --abandon``: the command's side of acting.

A script that decides for itself completes the hook (``--continue`` /
``--abandon``) and signals the stack (``--signal``) with the event it sends,
through the same outbox, so an undelivered completion is spooled and retried
by ``bosky flush`` like an undelivered event.
"""

from __future__ import annotations

import dataclasses
from typing import List, Mapping, Optional

from .. import config
from ..delivery.action import Action
from ..errors import UsageError
from ..event import new_event_id
from ..identity import Identity, read_instance_data
from . import (
    SignalSpec,
    complete_facts,
    facts_from_record,
    hook_spec,
    resolve,
    signal_spec,
    wanted_tags,
)


def command_actions(settings: config.Settings, status: str, hook_result: Optional[str],
                    hook_name: Optional[str], signal: bool, ident: Identity,
                    environ: Mapping[str, str], instance_data: str,
                    dry_run: bool = False) -> List[Action]:
    """The actions the flags ask for, resolved like the boot's; UsageError if
    they cannot be carried out as asked. A dry run asks nothing of the network."""
    if hook_name is not None:
        config.checked({"lifecycle_hook": hook_name}, "--lifecycle-hook")
    if not hook_result and not signal:
        return []
    if signal and status not in ("pass", "fail"):
        raise UsageError("--signal needs --pass (SUCCESS) or --fail (FAILURE)")
    hook = (hook_spec(hook_name) or hook_spec(settings.lifecycle_hook)) if hook_result else None
    if hook_result and hook is None:
        raise UsageError(f"--{hook_result.lower()} needs a hook: --lifecycle-hook NAME or "
                         "'lifecycle_hook:' in the config file")
    spec: Optional[SignalSpec] = (signal_spec(settings.cfn_signal) or SignalSpec()) \
        if signal else None
    if not ident.instance_id:
        raise UsageError("no instance id known for the lifecycle hook or stack signal: pass "
                         "--instance-id or run on the instance")
    region = ident.region or settings.region
    if not region:
        raise UsageError("no AWS region for the lifecycle hook or stack signal: pass --region")
    facts = facts_from_record(read_instance_data(instance_data))
    if not dry_run:
        facts = complete_facts(facts, environ, wanted_tags(hook, spec))
    plan = resolve(hook, spec, facts, ident.instance_id, region,
                   settings.autoscaling_endpoint_url, environ, describe=not dry_run)
    if hook and not plan.group:
        raise UsageError(f"instance {ident.instance_id} is in no Auto Scaling group known here"
                         f"{' (a dry run does not look it up)' if dry_run else ''}: set the "
                         "group in 'lifecycle_hook: {name: ..., group: ...}'")
    if spec and not (plan.stack and plan.resource):
        raise UsageError("no stack and resource to signal: set 'cfn_signal: {stack: ..., "
                         "resource: ...}' or tag the instance")
    # The hook gets the flag's answer, whatever the status; the signal follows --pass/--fail.
    answers = {"lifecycle": ("LifecycleActionResult", hook_result or ""),
               "signal": ("Status", "SUCCESS" if status == "pass" else "FAILURE")}
    found = []
    for action in plan.actions(status, ident.instance_id, new_event_id()):
        key, value = answers[action.kind]
        found.append(dataclasses.replace(action, params={**action.params, key: value}))
    return found


__all__ = ["command_actions"]
