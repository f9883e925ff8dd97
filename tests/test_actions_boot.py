"""The verdict acts: real cloud-init boots complete their Auto Scaling
lifecycle hook and signal their CloudFormation stack.

Each test boots a Debian-packaged cloud-init release (all of them unless
``BOSKY_RELEASES`` says otherwise) on the Ec2 datasource against the metadata
emulator, whose tags and lifecycle state are what a real instance in a group
sees. Auto Scaling and CloudFormation are tests/support/actions_emulator.py
(requests checked against botocore's models); EventBridge is moto.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Iterator, List

import pytest

from cc_bosky.delivery.deliverable import listing
from cc_bosky.delivery.spool import Spool
from tests.support.actions_emulator import ActionsEmulator, Hook
from tests.support.faultproxy import FaultProxy
from tests.support.scenes import restored_after
from tests.test_spool import arrived

pytestmark = [pytest.mark.cloudinit]

TAGS = {"aws:autoscaling:groupName": "web-asg", "aws:cloudformation:stack-name": "web-stack",
        "aws:cloudformation:logical-id": "WebGroup"}
FAILING_SCRIPT = "#!/bin/bash\necho 'running migrations'\nexit 1\n"


@pytest.fixture
def asg() -> Iterator[ActionsEmulator]:
    with ActionsEmulator() as server:
        server.add_group("web-asg", [Hook("boot-check")])
        server.add_stack("web-stack", ["WebGroup"])
        yield server


@pytest.fixture
def member(instance: Callable[..., Any], imds: Any, eventbridge: Any,
           asg: ActionsEmulator) -> Callable[..., Any]:
    """An instance that is launching into web-asg (its hook pending), reaching
    Auto Scaling and CloudFormation at ``endpoint`` (default: the emulator)."""
    imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1")

    def make(tags: bool = True, launched: bool = True, endpoint: str = "",
             **metadata: Any) -> Any:
        imds.metadata = dataclasses.replace(imds.metadata, tags=dict(TAGS) if tags else None,
                                            **metadata)
        if launched:
            asg.launch(imds.metadata.instance_id, "web-asg")
        url = endpoint or asg.url
        env = {"AWS_ENDPOINT_URL_EVENTS": eventbridge.url,
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
               "AWS_ENDPOINT_URL_AUTO_SCALING": url, "AWS_ENDPOINT_URL_CLOUDFORMATION": url}
        return instance(env=env)

    return make


def cloud_config(consumer: Any, **settings: Any) -> str:
    stanza = {"project": consumer.project, "flush_window": 20, **settings}
    return "#cloud-config\nbosky: " + json.dumps(stanza) + "\n"


def with_script(config: str, script: str) -> str:
    return "\n".join([
        'Content-Type: multipart/mixed; boundary="BOSKY"', "MIME-Version: 1.0", "",
        "--BOSKY", "Content-Type: text/cloud-config", "", config,
        "--BOSKY", "Content-Type: text/x-shellscript", "", script, "--BOSKY--", ""])


def bosky_log(inst: Any) -> str:
    path = inst.paths.var_log / "bosky.log"
    return path.read_text() if path.exists() else ""


def results(asg: ActionsEmulator) -> List[str]:
    return [c["LifecycleActionResult"] for c in asg.completions]


@pytest.mark.every_build
def test_failing_script_abandons_the_instance_and_fails_the_stack(member, consumer, asg) -> None:
    inst = member()
    inst.boot(user_data=with_script(
        cloud_config(consumer, lifecycle_hook="boot-check", cfn_signal=True), FAILING_SCRIPT),
        wait_reporter=90)
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Status"] == "fail"
    assert results(asg) == ["ABANDON"]
    assert asg.state(inst.imds.metadata.instance_id) == "Terminating"
    (signal,) = asg.signals
    assert (signal["StackName"], signal["LogicalResourceId"], signal["Status"]) == \
        ("web-stack", "WebGroup", "FAILURE")
    assert signal["UniqueId"] == inst.imds.metadata.instance_id
    assert not asg.ops("DescribeAutoScalingInstances")  # the group came from the tag


@pytest.mark.every_build
def test_clean_boot_continues_and_succeeds_with_the_group_found_by_describe(
        member, consumer, asg) -> None:
    inst = member(tags=False)
    inst.boot(user_data=cloud_config(
        consumer, lifecycle_hook="boot-check",
        cfn_signal={"stack": "web-stack", "resource": "WebGroup"}), wait_reporter=90)
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Status"] == "pass"
    assert results(asg) == ["CONTINUE"]
    assert asg.state(inst.imds.metadata.instance_id) == "Pending:Proceed"
    assert [s["Status"] for s in asg.signals] == ["SUCCESS"]
    assert len(asg.ops("DescribeAutoScalingInstances")) == 1
    assert Spool(str(inst.paths.var_lib_bosky / "spool")).records()[0] == []


def test_a_hang_is_abandoned_at_the_deadline_and_the_late_verdict_completes_nothing(
        member, consumer, asg) -> None:
    inst = member()
    inst.boot(user_data=with_script(cloud_config(consumer, lifecycle_hook="boot-check",
                                                 deadline=3), "#!/bin/sh\nsleep 9\n"),
              wait_reporter=120)
    statuses = [e["detail"]["Status"] for e in arrived(consumer, 2)]
    assert statuses == ["timeout", "pass"]
    assert results(asg) == ["ABANDON"]
    assert len(asg.ops("CompleteLifecycleAction")) == 1  # the late pass did not try again


def test_a_slow_boot_keeps_its_hook_alive_with_heartbeats(member, consumer, asg) -> None:
    # The hook would time out (its DefaultResult: ABANDON) 15 s after launch,
    # half-way through this boot, without the heartbeats.
    asg.add_group("web-asg", [Hook("boot-check", heartbeat_timeout=15)])
    inst = member()
    inst.boot(user_data=with_script(
        cloud_config(consumer, lifecycle_hook={"name": "boot-check", "heartbeat": 2}),
        "#!/bin/sh\nsleep 25\n"), wait_reporter=120)
    arrived(consumer, 1)
    assert asg.heartbeats, bosky_log(inst)
    assert results(asg) == ["CONTINUE"]  # without heartbeats the hook would have timed out


def test_endpoint_down_during_the_boot_and_back_later_completes_exactly_once(
        member, consumer, asg) -> None:
    with FaultProxy(asg.url) as proxy:
        proxy.refuse()
        inst = member(endpoint=proxy.url)
        spool = Spool(str(inst.paths.var_lib_bosky / "spool"))

        def failed_once() -> bool:
            return any(r.attempts >= 1 and r.path.endswith(".action")
                       for r in spool.records()[0])

        with restored_after(proxy, failed_once, 90,
                            "the reporter to spool the completion and fail to make it"):
            inst.boot(user_data=cloud_config(consumer, lifecycle_hook="boot-check",
                                             send_timeout=2, flush_window=60), wait_reporter=120)
    assert results(asg) == ["CONTINUE"]
    assert spool.records()[0] == []


def test_an_instance_in_no_group_says_so_once_and_boots_as_usual(member, consumer,
                                                                 asg) -> None:
    inst = member(tags=False, launched=False)
    inst.boot(user_data=cloud_config(consumer, lifecycle_hook="boot-check"), wait_reporter=90)
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Status"] == "pass"
    assert asg.completions == [] and not asg.ops("CompleteLifecycleAction")
    log = bosky_log(inst)
    assert log.count("is not in an Auto Scaling group") == 1, log
    assert " ERROR " not in log and " WARNING " not in log, log


def test_without_the_keys_no_call_is_made(member, consumer, asg) -> None:
    inst = member()
    inst.boot(user_data=with_script(cloud_config(consumer), FAILING_SCRIPT), wait_reporter=90)
    arrived(consumer, 1)
    assert asg.requests == []
    assert asg.state(inst.imds.metadata.instance_id) == "Pending:Wait"


def test_a_warm_pool_boot_completes_its_transition_once(member, consumer, asg) -> None:
    inst = member(target_lifecycle_state="Warmed:Stopped")
    inst.boot(user_data=cloud_config(consumer, lifecycle_hook="boot-check"), wait_reporter=90)
    arrived(consumer, 1)
    assert results(asg) == ["CONTINUE"]
    assert "target lifecycle state: Warmed:Stopped" in bosky_log(inst)




@pytest.mark.parametrize("later", ["next boot", "bosky flush"])
def test_a_completion_that_could_not_be_made_during_the_boot_is_made_later(
        member, consumer, asg, bosky, env, later) -> None:
    with FaultProxy(asg.url) as proxy:
        proxy.refuse()
        inst = member(endpoint=proxy.url)
        spool = Spool(str(inst.paths.var_lib_bosky / "spool"))
        inst.boot(user_data=with_script(cloud_config(
            consumer, lifecycle_hook="boot-check", send_timeout=2, flush_window=2),
            FAILING_SCRIPT), wait_reporter=60)
        (waiting,) = [r for r in spool.records()[0] if r.path.endswith(".action")]
        assert listing(waiting.event).status == "ABANDON" and waiting.attempts >= 1
        assert asg.state(inst.imds.metadata.instance_id) == "Pending:Wait"
        proxy.restore()
        if later == "next boot":
            inst.boot(wait_reporter=60)
        else:
            operator = {**env, "BOSKY_SPOOL_DIR": spool.directory,
                        "AWS_ENDPOINT_URL_AUTO_SCALING": proxy.url}
            done = bosky(["flush"], env=operator)
            assert done.returncode == 0, done.stderr
    assert results(asg) == ["ABANDON"]  # the first boot's verdict, once
    assert asg.state(inst.imds.metadata.instance_id) == "Terminating"
    assert [r for r in spool.records()[0] if r.path.endswith(".action")] == []
