"""The consumer stack shows the fleet: metric filters, the alarm and the dashboard.

The stack is deployed into moto, real bosky verdicts go through its rules
into its log group, and the template's own metric filter patterns are
evaluated on exactly what the log group holds. moto 5.2 deploys the
dashboard but skips AWS::Logs::MetricFilter and AWS::CloudWatch::Alarm in
CloudFormation, and its filter_log_events ignores JSON patterns (it returns
every event): so the patterns are evaluated with tests/support/logpattern.py,
and the filters and the alarm are put through moto's own APIs, which check
them against botocore's service model.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Dict, List

import pytest

from cc_bosky.event import make_event
from tests.support import logpattern
from tests.support.verdicts import morning_of_boots, send_all
from tests.test_infra import CONSUMER, Resolver, consumer_stack, load_template  # noqa: F401


@pytest.fixture
def stack(eventbridge: Any, consumer_stack: Any) -> Dict[str, Any]:  # noqa: F811
    project, outputs = consumer_stack
    # moto cannot deliver to SNS targets (PutEvents answers HTTP 500); tests/test_infra.py
    # checks the topic's wiring.
    eventbridge.client("events").remove_targets(Rule=outputs["RuleArn"].rsplit("/", 1)[-1],
                                                Ids=["alert-topic"])
    template = load_template(CONSUMER)
    resolve = Resolver(template, {"ProjectName": project,
                                  "LogGroupName": outputs["LogGroupName"]})
    resolve.values["VerdictLog"] = outputs["LogGroupName"]  # Ref of the log group: its name
    return {"project": project, "outputs": outputs, "template": template, "resolve": resolve}


def resolved(stack: Dict[str, Any], logical_id: str) -> Dict[str, Any]:
    props: Dict[str, Any] = stack["resolve"](stack["template"]["Resources"][logical_id]
                                             ["Properties"])
    return props


def logged(eventbridge: Any, group: str, expected: int) -> List[Dict[str, Any]]:
    """Every event in the log group, as the history rule wrote it."""
    logs = eventbridge.client("logs")
    events: List[Dict[str, Any]] = []
    token = None
    while True:
        page = logs.filter_log_events(logGroupName=group, **({"nextToken": token} if token
                                                               else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    assert len(events) == expected
    return events


@pytest.fixture
def history(eventbridge: Any, aws_env: Dict[str, str], stack: Dict[str, Any]) -> List[str]:
    """60 boot verdicts and 2 events of the bosky command, through the deployed rules."""
    boots = morning_of_boots(stack["project"], 60)
    commands = [make_event(source=stack["project"], detail_type="User Data", status=s,
                           message="deploy step", identity={}, origin="command")
                for s in ("fail", "info")]
    send_all(boots + commands, eventbridge.url, aws_env)
    return [e["message"] for e in logged(eventbridge, stack["outputs"]["LogGroupName"], 62)]


def test_the_metric_filters_count_real_verdicts(stack: Dict[str, Any], history: List[str]) -> None:
    details = [json.loads(m)["detail"] for m in history]
    boots = [d for d in details if d["Origin"] == "boot"]
    verdicts = resolved(stack, "VerdictsMetric")
    hits = [m for m in history if logpattern.matches(verdicts["FilterPattern"], m)]
    assert len(hits) == len(boots) == 60  # the command's own events are not boots
    (transform,) = verdicts["MetricTransformations"]
    dims = {d["Key"]: d["Value"] for d in transform["Dimensions"]}
    by_status = Counter(logpattern.select(json.loads(m), dims["Status"]) for m in hits)
    assert by_status == Counter(d["Status"] for d in boots)
    assert {logpattern.select(json.loads(m), dims["Project"]) for m in hits} == {stack["project"]}

    failed = resolved(stack, "FailedBootsMetric")
    hits = [m for m in history if logpattern.matches(failed["FilterPattern"], m)]
    assert len(hits) == by_status["fail"] + by_status["timeout"] > 0

    seconds = resolved(stack, "BootSecondsMetric")
    hits = [json.loads(m) for m in history if logpattern.matches(seconds["FilterPattern"], m)]
    (transform,) = seconds["MetricTransformations"]
    values = sorted(logpattern.select(e, transform["MetricValue"]) for e in hits)
    # A timeout has no BootSeconds yet: it is not counted as a 0-second boot.
    assert values == sorted(d["BootSeconds"] for d in boots if "BootSeconds" in d)
    assert len(values) == len(boots) - by_status["timeout"]


def test_moto_does_not_evaluate_json_patterns(eventbridge: Any, stack: Dict[str, Any],
                                              history: List[str]) -> None:
    """Why the patterns are evaluated here: moto returns every event for them."""
    pattern = resolved(stack, "FailedBootsMetric")["FilterPattern"]
    page = eventbridge.client("logs").filter_log_events(
        logGroupName=stack["outputs"]["LogGroupName"], filterPattern=pattern)
    assert len(page["events"]) == len(history)


def test_the_filters_and_the_alarm_are_accepted_by_the_service_model(
        eventbridge: Any, stack: Dict[str, Any]) -> None:
    logs = eventbridge.client("logs")
    group = stack["outputs"]["LogGroupName"]
    for logical_id in ("VerdictsMetric", "FailedBootsMetric", "BootSecondsMetric"):
        props = resolved(stack, logical_id)
        transforms = [{
            "metricName": t["MetricName"], "metricNamespace": t["MetricNamespace"],
            "metricValue": t["MetricValue"], "unit": t["Unit"],
            **({"defaultValue": float(t["DefaultValue"])} if "DefaultValue" in t else {}),
            **({"dimensions": {d["Key"]: d["Value"] for d in t["Dimensions"]}}
               if "Dimensions" in t else {}),
        } for t in props["MetricTransformations"]]
        assert props["LogGroupName"] == group
        logs.put_metric_filter(logGroupName=group, filterName=props["FilterName"],
                               filterPattern=props["FilterPattern"],
                               metricTransformations=transforms)
    names = {f["filterName"] for f in logs.describe_metric_filters(logGroupName=group)
             ["metricFilters"]}
    assert names == {"bosky-verdicts", "bosky-failed-boots", "bosky-boot-seconds"}

    alarm = resolved(stack, "FailedBootsAlarm")
    assert alarm["Period"] == 300 and alarm["MetricName"] == "FailedBoots"
    assert alarm["AlarmActions"] == ["<AlertTopic>"]  # the stack's SNS topic
    assert alarm["Threshold"] == 3  # FailedBootsThreshold's default
    cloudwatch = eventbridge.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=f"{stack['project']}-failed-boots",
        AlarmDescription=alarm["AlarmDescription"], Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"], Statistic=alarm["Statistic"], Period=alarm["Period"],
        EvaluationPeriods=alarm["EvaluationPeriods"], Threshold=float(alarm["Threshold"]),
        ComparisonOperator=alarm["ComparisonOperator"],
        TreatMissingData=alarm["TreatMissingData"],
        AlarmActions=[stack["outputs"]["AlertTopicArn"]])
    (made,) = cloudwatch.describe_alarms(AlarmNames=[f"{stack['project']}-failed-boots"])[
        "MetricAlarms"]
    assert made["AlarmActions"] == [stack["outputs"]["AlertTopicArn"]]


def test_the_dashboard_is_json_naming_the_stacks_own_log_group(eventbridge: Any,
                                                               stack: Dict[str, Any]) -> None:
    cloudwatch = eventbridge.client("cloudwatch")
    name = stack["outputs"]["DashboardName"]
    body = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
    widgets = {w["properties"]["title"].split(" (")[0]: w for w in body["widgets"]}
    # The log widgets run bosky fleet's own queries (tests/test_fleet_insights.py
    # holds their text equal to cc_bosky/fleet/insights.py's).
    assert set(widgets) == {"Boot verdicts by status", "Boot seconds, p50 and p95",
                            "Boots by image, instance type and status",
                            "BootSeconds p50 and p95 by image and instance type",
                            "Top failing modules", "Latest failed and timed-out boots"}
    group = stack["outputs"]["LogGroupName"]
    logs = [w for w in body["widgets"] if w["type"] == "log"]
    assert len(logs) == 4
    for widget in logs:
        query = widget["properties"]["query"]
        assert re.match(rf"SOURCE '{re.escape(group)}' \|", query), query
    statuses = [m[-1] for m in widgets["Boot verdicts by status"]["properties"]["metrics"]]
    assert statuses == ["pass", "degraded", "fail", "timeout"]
    metrics = widgets["Boot seconds, p50 and p95"]["properties"]["metrics"]
    assert [m[-1]["stat"] for m in metrics] == ["p50", "p95"]
    assert all(stack["project"] in m for m in metrics)
    assert {w["properties"]["region"] for w in body["widgets"]} == {"us-east-1"}


@pytest.mark.parametrize("pattern, message, expected", [
    ('{ $.eventType = "UpdateTrail" }', '{"eventType": "UpdateTrail"}', True),
    ('{ $.eventType = "Update*" }', '{"eventType": "UpdateTrail"}', True),
    ('{ $.eventType != "Update*" }', '{"eventType": "UpdateTrail"}', False),
    ('{ $.latency > 1000 }', '{"latency": 1500}', True),
    ('{ $.latency > 1000 }', '{"latency": "1500"}', False),
    ('{ $.a[1].b = 2 }', '{"a": [{}, {"b": 2}]}', True),
    ('{ ($.x = 1) && (($.y = "a") || ($.y = "b")) }', '{"x": 1, "y": "b"}', True),
    ('{ ($.x = 1) && (($.y = "a") || ($.y = "b")) }', '{"x": 2, "y": "b"}', False),
    ('{ $.error IS TRUE }', '{"error": true}', True),
    ('{ $.gone NOT EXISTS }', '{"here": 1}', True),
    ('{ $.here EXISTS }', '{"here": null}', True),
    ('{ $.x = 1 }', "not json", False),
])
def test_the_pattern_evaluator_follows_the_documented_syntax(pattern: str, message: str,
                                                             expected: bool) -> None:
    assert logpattern.matches(pattern, message) is expected


def test_the_pattern_evaluator_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValueError):
        logpattern.matches('{ $.x ~= "a" }', "{}")
    with pytest.raises(ValueError):
        logpattern.matches("ERROR", "{}")


def test_every_detail_field_the_stack_names_is_in_the_detail_schema() -> None:
    """One definition of the event's fields: the schema the sender is tested against."""
    from cc_bosky.schemas import load

    text = CONSUMER.read_text()
    named = set(re.findall(r"\$\.detail\.(\w+)", text)) | set(re.findall(r"detail\.(\w+)", text))
    assert {"Origin", "Status", "BootSeconds", "FailedModules", "InstanceId", "ImageId",
            "InstanceType", "BootId", "EventId"} <= named
    assert named <= set(load("detail")["properties"]), named - set(load("detail")["properties"])
