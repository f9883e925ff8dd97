"""A script that decides for itself: `bosky --fail "migrations failed" --abandon`.

The command completes the Auto Scaling lifecycle hook and signals the stack
through the same outbox as its event: spooled first, retried through faults,
flushed later, listed by `bosky status`. Auto Scaling and CloudFormation are
the emulator in tests/support/actions_emulator.py (checked against botocore's
models), faults come from the fault proxy in front of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from cc_bosky.delivery.action import Action
from cc_bosky.delivery.spool import Spool
from tests.support.actions_emulator import ActionsEmulator, Hook
from tests.support.faultproxy import FaultProxy
from tests.test_spool import arrived, spool_report

INSTANCE = "i-0a1b2c3d4e5f60718"


@pytest.fixture
def asg() -> Iterator[ActionsEmulator]:
    with ActionsEmulator() as server:
        server.add_group("web-asg", [Hook("boot-check")])
        server.add_stack("web-stack", ["WebGroup"])
        server.launch(INSTANCE, "web-asg")
        yield server


@pytest.fixture
def proxy(asg: ActionsEmulator) -> Iterator[FaultProxy]:
    with FaultProxy(asg.url) as made:
        yield made


def act_env(env: Dict[str, str], url: str, tmp_path: Path, **settings: str) -> Dict[str, str]:
    config = tmp_path / "bosky.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
    return {**env, "AWS_ENDPOINT_URL_AUTO_SCALING": url,
            "AWS_ENDPOINT_URL_CLOUDFORMATION": url, "BOSKY_CONFIG": str(config)}


def test_a_failed_migration_abandons_the_instance_and_says_why(bosky, env, consumer, asg,
                                                               tmp_path) -> None:
    done = bosky(["--fail", "migrations failed", "--abandon", "--lifecycle-hook", "boot-check",
                  "--instance-id", INSTANCE, "--project", consumer.project],
                 env=act_env(env, asg.url, tmp_path))
    assert done.returncode == 0, done.stderr
    assert asg.state(INSTANCE) == "Terminating"
    (completion,) = asg.completions
    assert completion["AutoScalingGroupName"] == "web-asg"  # found by DescribeAutoScalingInstances
    assert completion["LifecycleActionResult"] == "ABANDON"
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Status"] == "fail"
    assert spool_report(bosky, env)["events"] == []


def test_a_passing_script_continues_and_signals_the_stack(bosky, env, consumer, asg,
                                                          tmp_path) -> None:
    settings = act_env(env, asg.url, tmp_path,
                       lifecycle_hook="{name: boot-check, group: web-asg}",
                       cfn_signal="{stack: web-stack, resource: WebGroup}")
    done = bosky(["--pass", "deployed", "--continue", "--signal", "--instance-id", INSTANCE,
                  "--project", consumer.project], env=settings)
    assert done.returncode == 0, done.stderr
    assert asg.state(INSTANCE) == "Pending:Proceed"
    assert [s["Status"] for s in asg.signals] == ["SUCCESS"]
    assert asg.signals[0]["UniqueId"] == INSTANCE
    assert not asg.ops("DescribeAutoScalingInstances")  # the group was given


def test_usage_errors_say_what_is_missing(bosky, env, asg, tmp_path) -> None:
    settings = act_env(env, asg.url, tmp_path)
    no_hook = bosky(["--fail", "x", "--abandon", "--instance-id", INSTANCE], env=settings)
    assert no_hook.returncode == 2 and "--lifecycle-hook NAME" in no_hook.stderr
    info = bosky(["--info", "x", "--signal", "--instance-id", INSTANCE], env=settings)
    assert info.returncode == 2 and "--signal needs --pass" in info.stderr
    stranger = bosky(["--fail", "x", "--abandon", "--lifecycle-hook", "boot-check",
                      "--instance-id", "i-0fffffffffffffff0"], env=settings)
    assert stranger.returncode == 2 and "no Auto Scaling group" in stranger.stderr
    assert asg.completions == [] and "Traceback" not in stranger.stderr


def test_dry_run_shows_the_calls_and_makes_none(bosky, env, asg, tmp_path) -> None:
    settings = act_env(env, asg.url, tmp_path, lifecycle_hook="{name: boot-check, group: web-asg}")
    done = bosky(["--fail", "x", "--abandon", "--instance-id", INSTANCE, "--dry-run"],
                 env=settings)
    assert done.returncode == 0, done.stderr
    assert '"LifecycleActionResult": "ABANDON"' in done.stdout
    assert asg.completions == []


GIVEN = {"lifecycle_hook": "{name: boot-check, group: web-asg}"}


def abandon(bosky: Any, env: Dict[str, str]) -> Any:
    return bosky(["--fail", "migrations failed", "--abandon", "--instance-id", INSTANCE,
                  "--timeout", "3"], env=env)


def test_endpoint_down_spools_the_completion_and_flush_completes_it_once(
        bosky, env, asg, proxy, tmp_path) -> None:
    settings = act_env(env, proxy.url, tmp_path, **GIVEN)
    proxy.refuse()
    done = abandon(bosky, settings)
    assert done.returncode == 1 and "spooled, 'bosky flush' retries it" in done.stderr
    (waiting,) = [e for e in spool_report(bosky, settings)["events"] if e["Kind"] == "lifecycle"]
    assert waiting["Status"] == "ABANDON" and "ConnectionError" in waiting["LastError"]
    assert asg.state(INSTANCE) == "Pending:Wait"

    proxy.restore()
    flushed = bosky(["flush"], env=settings)
    assert flushed.returncode == 0, flushed.stderr
    assert asg.state(INSTANCE) == "Terminating" and len(asg.completions) == 1
    assert spool_report(bosky, settings)["events"] == []
    assert bosky(["flush"], env=settings).returncode == 0 and len(asg.completions) == 1


@pytest.mark.parametrize("fault", ["5xx", "throttling"])
def test_passing_faults_are_retried_within_the_call(bosky, env, asg, proxy, tmp_path,
                                                    fault) -> None:
    if fault == "5xx":
        proxy.http_error(503, times=2)
    else:
        proxy.throttle(times=2)
    done = abandon(bosky, act_env(env, proxy.url, tmp_path, **GIVEN))
    assert done.returncode == 0, done.stderr
    assert len(asg.completions) == 1 and asg.state(INSTANCE) == "Terminating"
    assert [r.action for r in proxy.requests].count("CompleteLifecycleAction") == 3


def test_a_lost_answer_after_the_completion_landed_counts_as_done(bosky, env, asg, proxy,
                                                                 tmp_path) -> None:
    proxy.drop_after_forward(times=1)
    done = abandon(bosky, act_env(env, proxy.url, tmp_path, **GIVEN))
    assert done.returncode == 0, done.stderr
    assert len(asg.completions) == 1  # the retry found "No active Lifecycle Action": done
    assert [r.error for r in asg.ops("CompleteLifecycleAction")][1].startswith("ValidationError")
    assert spool_report(bosky, env)["events"] == [] and spool_report(bosky, env)["rejected"] == []


def test_a_refusal_for_good_is_set_aside_and_reported(bosky, env, asg, tmp_path) -> None:
    asg.denied.add("CompleteLifecycleAction")
    settings = act_env(env, asg.url, tmp_path, **GIVEN)
    done = abandon(bosky, settings)
    assert done.returncode == 1 and "AccessDenied" in done.stderr
    assert "set aside as rejected" in done.stderr
    report = spool_report(bosky, settings)
    assert report["events"] == [] and len(report["rejected"]) == 1
    assert len(asg.ops("CompleteLifecycleAction")) == 1  # not retried
    status = bosky(["status"], env=settings)
    assert "rejected by AWS (not retried)" in status.stdout


def test_an_action_record_is_kept_beside_events_and_read_back(tmp_path) -> None:
    spool = Spool(str(tmp_path / "spool"))
    action = Action("signal", "a-1", {"StackName": "s", "LogicalResourceId": "R",
                                      "UniqueId": INSTANCE, "Status": "FAILURE"})
    record = spool.put(action, "us-east-1", None, "not sent yet")
    assert record.path.endswith(".action")  # an older bosky lists only .event files
    (back,), corrupt = spool.records()
    assert back.event == action and corrupt == []


# -- bosky doctor --------------------------------------------------------------


def doctor_checks(asg: ActionsEmulator, env: Dict[str, str], tmp_path: Path, **settings: Any):
    from cc_bosky import config
    from cc_bosky.checks.actions import action_checks
    from cc_bosky.identity import Identity

    endpoints = {"autoscaling_endpoint_url": asg.url, "cloudformation_endpoint_url": asg.url}
    return {c.name: c for c in action_checks(
        config.Settings(**settings, **endpoints),
        Identity(instance_id=INSTANCE, region="us-east-1"),
        env, True, str(tmp_path / "no-instance-data.json"))}


def test_doctor_resolves_the_group_the_hook_and_the_stack(asg, env, tmp_path) -> None:
    found = doctor_checks(asg, env, tmp_path, lifecycle_hook="boot-check",
                          cfn_signal={"stack": "web-stack", "resource": "WebGroup"})
    assert found["lifecycle hook"].status == "ok", found
    assert "hook boot-check of group web-asg found" in found["lifecycle hook"].detail
    assert found["stack signal"].status == "ok", found


def test_doctor_names_what_does_not_resolve(asg, env, tmp_path) -> None:
    found = doctor_checks(asg, env, tmp_path, lifecycle_hook="boot-chek",
                          cfn_signal={"stack": "web-stack", "resource": "WebGrup"})
    assert found["lifecycle hook"].status == "fail"
    assert "group web-asg has no lifecycle hook boot-chek" in found["lifecycle hook"].detail
    assert found["stack signal"].status == "fail" and "WebGrup" in found["stack signal"].detail
    assert doctor_checks(asg, env, tmp_path) == {}  # nothing configured, nothing checked


def test_doctor_warns_when_the_hook_would_time_out_before_the_deadline(asg, env,
                                                                      tmp_path) -> None:
    asg.add_group("web-asg", [Hook("boot-check", heartbeat_timeout=600)])
    found = doctor_checks(asg, env, tmp_path, lifecycle_hook={"name": "boot-check",
                                                              "heartbeat": 0})
    assert found["lifecycle hook"].status == "warn"
    assert "HeartbeatTimeout (600 s)" in found["lifecycle hook"].detail
