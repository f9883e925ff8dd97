"""A platform engineer's `bosky` calls, end to end: the installed command as a
subprocess, moto's EventBridge over HTTP, a rule with the documented pattern,
and the event as the consumer's SQS queue receives it."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Dict, List

import pytest

from tests.conftest import assert_valid_event
from tests.support.bounds import SLACK
from tests.support.emulator import make_consumer

NO_TRACEBACK = "Traceback"


def one_event(consumer: Any) -> Dict[str, Any]:
    events = consumer.receive(expected=1, timeout=10)
    events += consumer.drain(settle=0.5)
    assert len(events) == 1, events
    return events[0]


@pytest.mark.parametrize(
    "flags, status",
    [
        (["--pass"], "pass"), (["-p"], "pass"), (["--success"], "pass"),
        (["--fail"], "fail"), (["-f"], "fail"), (["--failure"], "fail"),
        (["--info"], "info"), (["-i"], "info"), (["--status", "deploying"], "deploying"),
    ],
)
def test_each_status_flag_reaches_the_consumer(bosky, env, consumer, detail_validator,
                                               flags: List[str], status: str) -> None:
    done = bosky([*flags, "artifact download returned 404", "--project", consumer.project],
                 env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
    event = one_event(consumer)
    assert event["detail-type"] == "User Data"
    assert event["source"] == consumer.project
    detail = assert_valid_event(event, detail_validator)
    assert detail["Status"] == status
    assert detail["Message"] == "artifact download returned 404"
    assert detail["Origin"] == "command"


def test_a_rule_written_for_the_original_still_matches(bosky, env, eventbridge) -> None:
    project = f"legacy-{time.time_ns()}"
    rule = make_consumer(eventbridge, pattern={"source": [project], "detail": {"Status": ["fail"]}})
    try:
        assert bosky(["--fail", "boom", "--project", project], env=env).returncode == 0
        assert bosky(["--pass", "fine", "--project", project], env=env).returncode == 0
        events = rule.receive(expected=1) + rule.drain(settle=0.5)
        assert [e["detail"]["Status"] for e in events] == ["fail"]
    finally:
        rule.close()


def test_project_from_the_environment_like_the_original(bosky, env, consumer) -> None:
    done = bosky(["--info", "hello"], env={**env, "BOSKY_PROJECT": consumer.project})
    assert done.returncode == 0, done.stderr
    assert one_event(consumer)["source"] == consumer.project


def test_flag_beats_environment_beats_config_file(bosky, env, consumer, tmp_path) -> None:
    cfg = tmp_path / "bosky.yaml"
    cfg.write_text("project: from-file\ndetail_type: User Data\n")
    done = bosky(["--pass", "x", "--config", str(cfg), "--project", consumer.project],
                 env={**env, "BOSKY_PROJECT": "from-env"})
    assert done.returncode == 0, done.stderr
    assert one_event(consumer)["source"] == consumer.project


def test_instance_id_becomes_the_resource_and_detail(bosky, env, consumer, detail_validator):
    done = bosky(["--pass", "ok", "--project", consumer.project, "--instance-id", "i-0abc"],
                 env=env)
    assert done.returncode == 0, done.stderr
    event = one_event(consumer)
    assert event["resources"] == ["i-0abc"]  # no account known: the bare id, as the original
    assert assert_valid_event(event, detail_validator)["InstanceId"] == "i-0abc"


def test_identity_and_arn_come_from_imds_when_nothing_else_knows(bosky, env, consumer, imds,
                                                                 detail_validator) -> None:
    on_ec2 = {**env, "AWS_EC2_METADATA_DISABLED": "false",
              "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
    done = bosky(["--pass", "ok", "--project", consumer.project], env=on_ec2)
    assert done.returncode == 0, done.stderr
    event = one_event(consumer)
    detail = assert_valid_event(event, detail_validator)
    doc = imds.metadata.identity_document()
    assert detail["InstanceId"] == doc["instanceId"]
    assert detail["AccountId"] == doc["accountId"]
    assert detail["AvailabilityZone"] == doc["availabilityZone"]
    assert event["resources"] == [
        f"arn:aws:ec2:{doc['region']}:{doc['accountId']}:instance/{doc['instanceId']}"]


def test_event_bus_by_name_and_by_arn(bosky, env, eventbridge) -> None:
    bus = f"platform-{time.time_ns()}"
    project = f"bus-{time.time_ns()}"
    rule = make_consumer(eventbridge, bus_name=bus,
                         pattern={"detail-type": ["User Data"], "source": [project]})
    try:
        arn = eventbridge.client("events").describe_event_bus(Name=bus)["Arn"]
        for target in (bus, arn):
            done = bosky(["--pass", target, "--project", project, "--event-bus", target], env=env)
            assert done.returncode == 0, done.stderr
        events = rule.receive(expected=2) + rule.drain(settle=0.5)
        assert sorted(e["detail"]["Message"] for e in events) == sorted([bus, arn])
    finally:
        rule.close()


def test_an_over_long_message_is_cut_to_one_billing_unit(bosky, env, consumer,
                                                         detail_validator) -> None:
    message = "é" * 100_000  # 200 kB of UTF-8
    done = bosky(["--fail", "-", "--project", consumer.project], env=env, input=message)
    assert done.returncode == 0, done.stderr
    event = one_event(consumer)
    detail = assert_valid_event(event, detail_validator)
    assert detail["Truncated"] is True
    assert message.startswith(detail["Message"]) and len(detail["Message"]) > 30_000
    entry_size = sum(len(s.encode()) for s in (consumer.project, "User Data",
                                               json.dumps(detail, ensure_ascii=False,
                                                          separators=(",", ":"))))
    assert entry_size <= 64 * 1024


def test_non_ascii_and_control_characters_arrive_intact(bosky, env, consumer) -> None:
    message = "déploiement échoué ✗ 部署失败 \u0007bell\ttab"
    done = bosky(["--fail", message, "--project", consumer.project], env=env)
    assert done.returncode == 0, done.stderr
    assert one_event(consumer)["detail"]["Message"] == message


def test_message_from_standard_input(bosky, env, consumer) -> None:
    done = bosky(["--info", "-", "--project", consumer.project], env=env,
                 input="line one\nline two\n")
    assert done.returncode == 0, done.stderr
    assert one_event(consumer)["detail"]["Message"] == "line one\nline two"


def test_dry_run_prints_the_entry_and_sends_nothing(bosky, env, consumer) -> None:
    done = bosky(["--fail", "nope", "--project", consumer.project, "--dry-run"], env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    (entry,) = out["Entries"]
    assert entry["Source"] == consumer.project and entry["DetailType"] == "User Data"
    assert json.loads(entry["Detail"])["Status"] == "fail"
    assert out["SizeBytes"] == len(consumer.project) + len("User Data") + len(
        entry["Detail"].encode()) and out["BillingUnits"] == 1
    assert consumer.drain(settle=1.0) == []


def test_permissions_prints_a_least_privilege_policy(bosky, env) -> None:
    done = bosky(["--permissions", "--project", "web", "--event-bus", "ops"], env=env)
    assert done.returncode == 0, done.stderr
    (statement,) = json.loads(done.stdout)["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == "arn:aws:events:us-east-1:*:event-bus/ops"
    assert statement["Condition"]["StringEquals"] == {"events:source": "web",
                                                      "events:detail-type": "User Data"}


def test_generated_config_template_is_valid_once_uncommented(bosky, env, tmp_path) -> None:
    import yaml

    done = bosky(["--generate-config"], env=env)
    assert done.returncode == 0
    settings = [ln[1:] for ln in done.stdout.splitlines()
                if re.match(r"#[a-z_]+: ", ln) and "<unset>" not in ln]
    assert len(settings) >= 10
    lines = settings
    data = yaml.safe_load("\n".join(lines))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert bosky(["--pass", "x", "--config", str(cfg), "--dry-run"], env=env).returncode == 0


def test_version(bosky, env) -> None:
    from cc_bosky.version import __version__

    done = bosky(["--version"], env=env)
    assert done.returncode == 0 and done.stdout.strip() == f"bosky {__version__}"


# -- failures: exit 1 within the bound, one line, no traceback -------------------


def assert_one_line(text: str) -> None:
    assert NO_TRACEBACK not in text
    assert len(text.strip().splitlines()) == 1, text
    assert text.startswith("bosky: ")


def test_entry_rejected_inside_http_200_is_exit_1(bosky, env, consumer, fault_proxy) -> None:
    fault_proxy.reject_entries("MalformedDetail", times=None)
    done = bosky(["--fail", "x", "--project", consumer.project],
                 env={**env, "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url})
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "MalformedDetail" in done.stderr
    assert consumer.drain(settle=0.5) == []


def test_retryable_entry_failure_is_retried_until_accepted(bosky, env, consumer,
                                                           fault_proxy) -> None:
    fault_proxy.reject_entries("ThrottlingException", times=2)
    done = bosky(["--fail", "x", "--project", consumer.project],
                 env={**env, "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url})
    assert done.returncode == 0, done.stderr
    assert len(one_event(consumer)) > 0
    assert fault_proxy.calls == 3


@pytest.mark.parametrize("fault", ["refuse", "hang", "http_500"])
def test_unreachable_or_slow_endpoint_is_exit_1_within_the_bound(bosky, env, fault_proxy,
                                                                 fault: str) -> None:
    if fault == "refuse":
        fault_proxy.refuse()
    elif fault == "hang":
        fault_proxy.hang()
    else:
        fault_proxy.http_error(500, times=None)
    began = time.monotonic()
    done = bosky(["--fail", "x", "--timeout", "3", "--no-spool"],
                 env={**env, "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url})
    took = time.monotonic() - began
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert took < 3 + SLACK  # the --timeout bound, plus what a loaded machine adds


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--pass", "--fail", "x"], "not allowed with"),
        (["x"], "one of --pass"),
        (["--bogus"], "unrecognized"),
        (["--pass", "x", "--timeout", "soon"], "invalid float"),
        (["--pass", "x", "--project", "aws.ec2"], "project"),
        (["--pass", "x", "--detail-type", ""], "detail_type"),
        (["--pass", "x", "--config", "/nonexistent/bosky.yaml"], "does not exist"),
        (["--status", "", "x"], "must not be empty"),
    ],
)
def test_bad_flags_are_exit_2_with_one_line(bosky, env, args: List[str], needle: str) -> None:
    done = bosky(args, env=env)
    assert done.returncode == 2, done
    assert_one_line(done.stderr)
    assert needle in done.stderr


@pytest.mark.parametrize(
    "content, needle",
    [
        ("projcet: web\n", "projcet: unknown key"),
        ("send_timeout: soon\n", "send_timeout: expected number"),
        ("project: [a, b]\n", "project: expected string"),
        ("region: : :\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_config_file_is_exit_2_naming_the_key(bosky, env, tmp_path, content: str,
                                                  needle: str) -> None:
    cfg = tmp_path / "bosky.yaml"
    cfg.write_text(content)
    done = bosky(["--pass", "x", "--config", str(cfg)], env=env)
    assert done.returncode == 2
    assert_one_line(done.stderr)
    assert needle in done.stderr


def test_missing_region_is_exit_2_saying_how_to_set_one(bosky, env) -> None:
    no_region = {k: v for k, v in env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    done = bosky(["--pass", "x"], env=no_region)
    assert done.returncode == 2
    assert_one_line(done.stderr)
    assert "--region" in done.stderr and "AWS_REGION" in done.stderr


def test_undelivered_event_is_spooled_and_flushed_later(bosky, env, consumer,
                                                        fault_proxy) -> None:
    down = {**env, "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url}
    fault_proxy.refuse()
    done = bosky(["--fail", "later", "--project", consumer.project, "--timeout", "2"], env=down)
    assert done.returncode == 1 and "spooled" in done.stderr
    status = json.loads(bosky(["status", "--json"], env=down).stdout)
    (waiting,) = status["spool"]["events"]
    assert waiting["Status"] == "fail" and "ConnectionError" in waiting["LastError"]
    fault_proxy.restore()
    flushed = bosky(["flush"], env=down)
    assert flushed.returncode == 0, flushed.stderr
    event = one_event(consumer)
    assert event["detail"]["EventId"] == waiting["EventId"]
    assert json.loads(bosky(["status", "--json"], env=down).stdout)["spool"]["events"] == []


def spooled_for_a_wrong_endpoint(bosky, env, consumer, fault_proxy,
                                 *flags: str) -> Dict[str, Any]:
    """An event sent through an endpoint that does not answer (a typo'd VPC
    endpoint): exit 1, and spooled with that endpoint stored. Returns the env
    of an operator's shell: region set, no endpoint variable."""
    shell = {k: v for k, v in env.items() if not k.startswith("AWS_ENDPOINT_URL")}
    fault_proxy.refuse()
    done = bosky(["--fail", "migration failed", "--project", consumer.project, "--timeout", "1",
                  "--endpoint-url", fault_proxy.url, *flags], env=shell)
    assert done.returncode == 1 and "spooled" in done.stderr, done.stderr
    return shell


def spooled_events(bosky, env, *flags: str) -> List[Dict[str, Any]]:
    done = bosky(["status", "--json", *flags], env=env)
    assert done.returncode == 0, done.stderr
    found: List[Dict[str, Any]] = json.loads(done.stdout)["spool"]["events"]
    return found


def test_after_fixing_the_endpoint_flush_sends_through_the_fixed_one(
        bosky, env, consumer, fault_proxy, eventbridge) -> None:
    shell = spooled_for_a_wrong_endpoint(bosky, env, consumer, fault_proxy)
    (waiting,) = spooled_events(bosky, shell)
    assert waiting["SendsTo"] == {"Region": "us-east-1", "EndpointUrl": fault_proxy.url}
    # Without a flag, flush keeps to the endpoint stored with the event: still down.
    again = bosky(["flush", "--timeout", "1"], env=shell)
    assert again.returncode == 1 and "still spooled 1" in again.stdout, again.stdout
    # status with the flag says where flush with the same flag will send it ...
    (planned,) = spooled_events(bosky, shell, "--endpoint-url", eventbridge.url)
    assert planned["SendsTo"]["EndpointUrl"] == eventbridge.url
    text = bosky(["status", "--endpoint-url", eventbridge.url], env=shell).stdout
    assert f"flush sends it to us-east-1 via {eventbridge.url}" in text, text
    # ... and the flag wins over the stored endpoint: the consumer gets the event.
    flushed = bosky(["flush", "--endpoint-url", eventbridge.url], env=shell)
    assert flushed.returncode == 0, flushed.stderr
    assert "delivered 1, still spooled 0" in flushed.stdout
    assert one_event(consumer)["detail"]["EventId"] == waiting["EventId"]
    assert spooled_events(bosky, shell) == []


def test_the_endpoint_configured_now_also_wins_over_the_stored_one(
        bosky, env, consumer, fault_proxy, eventbridge, tmp_path) -> None:
    shell = spooled_for_a_wrong_endpoint(bosky, env, consumer, fault_proxy)
    fixed = tmp_path / "config.yaml"
    fixed.write_text(f"endpoint_url: {eventbridge.url}\n")
    flushed = bosky(["flush", "--config", str(fixed)], env=shell)
    assert flushed.returncode == 0, flushed.stderr
    assert one_event(consumer)["detail"]["Status"] == "fail"


def test_a_spooled_event_keeps_its_region_unless_flush_is_given_one(
        bosky, env, consumer, fault_proxy, eventbridge) -> None:
    """The event was made for eu-west-3; the operator's shell defaults to
    us-east-1, which says nothing about old events. Only --region moves it."""
    shell = spooled_for_a_wrong_endpoint(bosky, env, consumer, fault_proxy,
                                         "--region", "eu-west-3")
    assert shell["AWS_REGION"] == "us-east-1"
    fixed = ["--endpoint-url", eventbridge.url]
    (waiting,) = spooled_events(bosky, shell, *fixed)
    assert waiting["SendsTo"]["Region"] == "eu-west-3"
    (moved,) = spooled_events(bosky, shell, *fixed, "--region", "us-east-1")
    assert moved["SendsTo"] == {"Region": "us-east-1", "EndpointUrl": eventbridge.url}
    flushed = bosky(["flush", *fixed, "--region", "us-east-1"], env=shell)
    assert flushed.returncode == 0, flushed.stderr
    assert one_event(consumer)["detail"]["EventId"] == waiting["EventId"]


@pytest.mark.parametrize("sub", ["flush", "status"])
@pytest.mark.parametrize("flags, needle", [
    (["--region", "Mars"], "region: 'Mars' does not match"),
    (["--endpoint-url"], "expected one argument"),
    (["--event-bus", "x"], "unrecognized arguments"),
])
def test_connection_flags_of_flush_and_status_are_checked_like_the_commands(
        bosky, env, sub: str, flags: List[str], needle: str) -> None:
    done = bosky([sub, *flags], env=env)
    assert done.returncode == 2, done.stdout
    assert_one_line(done.stderr)
    assert needle in done.stderr, done.stderr


@pytest.mark.parametrize("verdict, spooled, says", [
    (None, [], "no verdict yet"),
    ({"Status": "pass", "EventId": "e1", "Time": "t", "Sent": False}, [], "not sent"),
    ({"Status": "fail", "EventId": "e1", "Time": "t", "Sent": True}, ["e1"],
     "waiting in the spool"),
    ({"Status": "fail", "EventId": "e1", "Time": "t", "Sent": True}, [], "fail sent as e1"),
])
def test_status_says_what_became_of_this_boots_verdict(verdict, spooled, says) -> None:
    from cc_bosky.tools.spooled import render_status

    report = {"verdict": verdict, "reporter": "not running",
              "spool": {"directory": "/s", "bytes": 0, "dropped": 0, "corrupt": [],
                        "rejected": [], "events": [
                            {"EventId": e, "Status": "fail", "AgeSeconds": 1.0, "Attempts": 1,
                             "LastError": "ConnectionError",
                             "SendsTo": {"Region": "r", "EndpointUrl": None}}
                            for e in spooled]}}
    assert says in render_status(report).splitlines()[0]
