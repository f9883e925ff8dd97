"""The outbox's one protocol: an event and an action are spooled, read back,
settled and listed by ``bosky status`` the same way, whatever their kind."""

from __future__ import annotations

from pathlib import Path

from cc_bosky import config
from cc_bosky.boot.state import describe
from cc_bosky.delivery.action import DONE, GONE, REJECTED, RETRY, Action
from cc_bosky.delivery.deliverable import listing, settle
from cc_bosky.delivery.sender import Outcome
from cc_bosky.delivery.spool import Spool
from cc_bosky.event import make_event

EVENT = make_event(source="web", detail_type="User Data", status="fail", message="migrations",
                   identity={}, origin="command",
                   event_bus="arn:aws:events:eu-west-1:123456789012:event-bus/ops")
HOOK = Action("lifecycle", "a-1", {"AutoScalingGroupName": "web-asg",
                                   "LifecycleHookName": "boot-check",
                                   "LifecycleActionResult": "ABANDON"})
SIGNAL = Action("signal", "a-2", {"StackName": "web", "LogicalResourceId": "Group",
                                  "UniqueId": "i-1", "Status": "FAILURE"})


def test_a_waiting_event_and_actions_are_listed_alike(tmp_path: Path) -> None:
    settings = config.Settings(spool_dir=str(tmp_path / "spool"), run_dir=str(tmp_path / "run"),
                               autoscaling_endpoint_url="http://127.0.0.1:1/")
    spool = Spool(settings.spool_dir)
    for item in (EVENT, HOOK, SIGNAL):
        spool.put(item, "us-east-2", None, "not sent yet")
    assert [r.event for r in spool.records()[0]] == [EVENT, HOOK, SIGNAL]  # read back whole

    listed = describe(settings, None)["spool"]["events"]
    assert [set(item) for item in listed] == [set(listed[0])] * 3
    assert [(i["Kind"], i["Status"], i["Source"]) for i in listed] == [
        ("event", "fail", "web"),
        ("lifecycle", "ABANDON", "autoscaling:CompleteLifecycleAction"),
        ("signal", "FAILURE", "cloudformation:SignalResource"),
    ]
    # A bus named by ARN keeps its region; an action goes to its own service's endpoint.
    assert [tuple(i["SendsTo"].values()) for i in listed] == [
        ("eu-west-1", None), ("us-east-2", "http://127.0.0.1:1/"), ("us-east-2", None)]
    assert listing(HOOK).what == "lifecycle hook boot-check of group web-asg: ABANDON"


def test_each_kind_settles_by_its_own_rules() -> None:
    def failed(code: str, message: str = "", retryable: bool = False) -> Outcome:
        return Outcome(False, error_code=code, error_message=message, retryable=retryable)

    nothing_pending = failed("ValidationError", "No active Lifecycle Action found for instance")
    assert settle(EVENT, Outcome(True)) == settle(HOOK, Outcome(True)) == DONE
    assert settle(EVENT, failed("MalformedDetail")) == REJECTED
    assert settle(EVENT, failed("ThrottlingException", retryable=True)) == RETRY
    assert settle(HOOK, nothing_pending) == GONE
    assert settle(SIGNAL, nothing_pending) == REJECTED
    assert settle(SIGNAL, failed("Throttling", retryable=True)) == RETRY
