"""The Auto Scaling / CloudFormation emulator behaves like the real APIs where
bosky depends on it: driven here by boto3 itself, whose requests are what AWS
accepts, and by hand-made requests that AWS would refuse."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.actions_emulator import ActionsEmulator, Hook
from tests.support.emulator import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY

INSTANCE = "i-0123456789abcdef0"


@pytest.fixture
def emulator() -> Iterator[ActionsEmulator]:
    with ActionsEmulator() as server:
        server.add_group("web-asg", [Hook("boot-check", heartbeat_timeout=60)])
        server.add_stack("web-stack", ["WebGroup"])
        yield server


def client(emulator: ActionsEmulator, service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=emulator.url,
                        aws_access_key_id=DUMMY_ACCESS_KEY,
                        aws_secret_access_key=DUMMY_SECRET_KEY)


def complete(asg: Any, result: str = "CONTINUE") -> Any:
    return asg.complete_lifecycle_action(AutoScalingGroupName="web-asg",
                                         LifecycleHookName="boot-check", InstanceId=INSTANCE,
                                         LifecycleActionResult=result)


def test_continue_lets_the_instance_proceed_and_a_second_completion_finds_no_action(
        emulator) -> None:
    emulator.launch(INSTANCE, "web-asg")
    asg = client(emulator, "autoscaling")
    assert emulator.state(INSTANCE) == "Pending:Wait"
    complete(asg)
    assert emulator.state(INSTANCE) == "Pending:Proceed"
    with pytest.raises(ClientError) as again:
        complete(asg)
    assert again.value.response["Error"]["Code"] == "ValidationError"
    assert "No active Lifecycle Action found" in again.value.response["Error"]["Message"]
    assert len(emulator.completions) == 1


def test_abandon_terminates(emulator) -> None:
    emulator.launch(INSTANCE, "web-asg")
    complete(client(emulator, "autoscaling"), "ABANDON")
    assert emulator.state(INSTANCE) == "Terminating"


def test_heartbeat_timeout_applies_the_default_result_and_ends_the_action(emulator) -> None:
    emulator.add_group("short", [Hook("boot-check", heartbeat_timeout=0.2)])
    emulator.launch(INSTANCE, "short")
    asg = client(emulator, "autoscaling")
    asg.record_lifecycle_action_heartbeat(AutoScalingGroupName="short",
                                          LifecycleHookName="boot-check", InstanceId=INSTANCE)
    import time

    time.sleep(0.4)
    assert emulator.state(INSTANCE) == "Terminating"  # DefaultResult ABANDON
    with pytest.raises(ClientError, match="No active Lifecycle Action found"):
        asg.complete_lifecycle_action(AutoScalingGroupName="short", LifecycleHookName="boot-check",
                                      InstanceId=INSTANCE, LifecycleActionResult="CONTINUE")


def test_describe_finds_the_group_of_an_instance_and_nothing_for_a_stranger(emulator) -> None:
    emulator.launch(INSTANCE, "web-asg")
    asg = client(emulator, "autoscaling")
    found = asg.describe_auto_scaling_instances(InstanceIds=[INSTANCE, "i-0fffffffffffffff0"])
    (only,) = found["AutoScalingInstances"]
    assert (only["AutoScalingGroupName"], only["LifecycleState"]) == ("web-asg", "Pending:Wait")
    hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName="web-asg")["LifecycleHooks"]
    assert [h["LifecycleHookName"] for h in hooks] == ["boot-check"]


def test_stack_signals_are_recorded_and_unknown_resources_refused(emulator) -> None:
    cfn = client(emulator, "cloudformation")
    cfn.signal_resource(StackName="web-stack", LogicalResourceId="WebGroup", UniqueId=INSTANCE,
                        Status="FAILURE")
    assert emulator.signals == [{"Action": "SignalResource", "Version": "2010-05-15",
                                 "StackName": "web-stack", "LogicalResourceId": "WebGroup",
                                 "UniqueId": INSTANCE, "Status": "FAILURE"}]
    with pytest.raises(ClientError, match="does not exist"):
        cfn.signal_resource(StackName="web-stack", LogicalResourceId="Nope", UniqueId=INSTANCE,
                            Status="SUCCESS")


def post(emulator: ActionsEmulator, body: str, authorization: str = "") -> Any:
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Amz-Date": "20260101T000000Z"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(emulator.url + "/", data=body.encode(), headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    return refused.value.code, refused.value.read().decode()


SIGNED_ASG = ("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/autoscaling/aws4_request, "
              "SignedHeaders=host, Signature=00")


@pytest.mark.parametrize("body, authorization, status, code", [
    ("Action=CompleteLifecycleAction&Version=2011-01-01&AutoScalingGroupName=g"
     "&LifecycleHookName=h&LifecycleActionResult=CONTINUE", "", 403, "MissingAuthentication"),
    ("Action=CompleteLifecycleAction&Version=2011-01-01&AutoScalingGroupName=g"
     "&LifecycleActionResult=CONTINUE", SIGNED_ASG, 400, "Member must not be null"),
    ("Action=CompleteLifecycleAction&Version=2011-01-01&AutoScalingGroupName=g"
     "&LifecycleHookName=h&LifecycleActionResult=CONTINUE&Colour=blue", SIGNED_ASG, 400,
     "Unknown parameter"),
    ("Action=CompleteLifecycleAction&Version=2011-01-01&AutoScalingGroupName=g"
     "&LifecycleHookName=h&LifecycleActionResult=CONTINUE&InstanceId=" + "i" * 20, SIGNED_ASG,
     400, "length"),
    ("Action=PutLifecycleHookColour&Version=2011-01-01", SIGNED_ASG, 400, "InvalidAction"),
    ("Action=CompleteLifecycleAction&Version=2010-05-15&AutoScalingGroupName=g"
     "&LifecycleHookName=h&LifecycleActionResult=CONTINUE", SIGNED_ASG, 400, "Version"),
])
def test_requests_aws_would_refuse_are_refused(emulator, body, authorization, status,
                                               code) -> None:
    got_status, text = post(emulator, body, authorization)
    assert got_status == status and code in text, text


def test_denied_operations_answer_access_denied(emulator) -> None:
    emulator.launch(INSTANCE, "web-asg")
    emulator.denied.add("CompleteLifecycleAction")
    with pytest.raises(ClientError) as refused:
        complete(client(emulator, "autoscaling"))
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert emulator.state(INSTANCE) == "Pending:Wait"
