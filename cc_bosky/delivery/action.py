"""An action: one AWS call a verdict asks for, delivered beside the events.

Completing the Auto Scaling lifecycle hook and signalling CloudFormation go
through the same outbox as the EventBridge entry: spooled before they are
attempted, retried with backoff, flushed at the next boot and by
``bosky flush``, listed by ``bosky status``. What differs by kind is only the
call and what counts as done (:mod:`.deliverable` is the protocol both follow).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Dict, Mapping, Tuple

if TYPE_CHECKING:  # the spool reads actions without loading the sender
    from .sender import Outcome

# kind -> (SigV4 service, operation, the parameter that carries the answer)
KINDS: Dict[str, Tuple[str, str, str]] = {
    "lifecycle": ("autoscaling", "CompleteLifecycleAction", "LifecycleActionResult"),
    "signal": ("cloudformation", "SignalResource", "Status"),
}
# What Auto Scaling answers when the instance has no pending action: the
# completion landed before (its answer was lost), the hook timed out, or the
# instance is not waiting on this hook at all. Nothing is left to do.
NO_ACTIVE_ACTION = "No active Lifecycle Action found"
DONE, GONE, REJECTED, RETRY = "done", "gone", "rejected", "retry"


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str
    action_id: str
    params: Mapping[str, str]

    @property
    def service(self) -> str:
        return KINDS[self.kind][0]

    @property
    def operation(self) -> str:
        return KINDS[self.kind][1]

    @property
    def answer(self) -> str:
        """What the call says: the hook's result or the signal's status."""
        return str(self.params.get(KINDS[self.kind][2], ""))

    def body(self) -> Dict[str, Any]:
        return {"kind": self.kind, "id": self.action_id, "params": dict(self.params)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Action:
        kind = str(body["kind"])
        if kind not in KINDS:
            raise ValueError(f"unknown action kind {kind!r}")
        params = body["params"]
        if not isinstance(params, dict):
            raise ValueError("action params are not a mapping")
        return cls(kind, str(body["id"]), {str(k): str(v) for k, v in params.items()})

    def settle(self, outcome: Outcome) -> str:
        """DONE, GONE (nothing was pending: counts as done), REJECTED (refused
        for good: set aside) or RETRY."""
        if outcome.delivered:
            return DONE
        if (self.kind == "lifecycle" and outcome.error_code == "ValidationError"
                and NO_ACTIVE_ACTION in (outcome.error_message or "")):
            return GONE
        return RETRY if outcome.retryable else REJECTED

    def describe(self) -> str:
        p = self.params
        if self.kind == "lifecycle":
            return (f"lifecycle hook {p.get('LifecycleHookName')} of group "
                    f"{p.get('AutoScalingGroupName')}: {self.answer}")
        return f"stack {p.get('StackName')} resource {p.get('LogicalResourceId')}: {self.answer}"
