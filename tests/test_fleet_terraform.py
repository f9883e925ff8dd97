"""infra/terraform/: the same resources as the CloudFormation stacks, compared piece by piece.

No Terraform provider can be downloaded here, so the modules are parsed with
python-hcl2, their interpolations filled with the values the CloudFormation
side resolves to (tests/test_infra.py's Resolver), and each event pattern,
e-mail transformer, metric filter, alarm, dashboard body, saved query and IAM
statement is compared with its counterpart: the stacks, ``bosky
--permissions`` (cc_bosky/tools/policy.py) and cc_bosky/fleet/insights.py.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest

from cc_bosky import arns
from cc_bosky.fleet import insights
from cc_bosky.tools.policy import action_statements, put_events_policy
from tests.support import needs
from tests.support.emulator import DEFAULT_ACCOUNT, DEFAULT_REGION
from tests.test_infra import CONSUMER, INFRA, ROLE, Resolver, load_template

TERRAFORM = INFRA / "terraform"
PROJECT = "web"
STATUSES = ["fail", "timeout", "degraded"]


def module(name: str) -> Dict[str, Any]:
    needs.module("hcl2", "a test requirement: python-hcl2")
    import hcl2

    merged: Dict[str, Any] = {}
    for path in sorted((TERRAFORM / name).glob("*.tf")):
        with open(path) as f:
            for key, blocks in hcl2.load(f).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def blocks(tf: Mapping[str, Any], kind: str, type_: str) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for block in tf.get(kind, []):
        for t, named in block.items():
            if t.strip('"') == type_:
                out.update({n.strip('"'): body for n, body in named.items()})
    return out


def text(value: Any) -> str:
    """A parsed HCL string: quotes and escapes removed, a heredoc dedented."""
    assert isinstance(value, str), value
    if re.fullmatch(r"\$\{[^}]+\}", value):  # a bare expression: interpolate() fills it
        return value
    assert value.startswith('"') and value.endswith('"'), value
    inner = value[1:-1]
    if inner.startswith("<<-EOT\n"):
        body = inner[len("<<-EOT\n"):].rsplit("\n", 1)[0]
        return textwrap.dedent(body).rstrip("\n")
    loaded: str = json.loads(value)
    return loaded


def interpolate(value: str, values: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"no value for ${{{match.group(1)}}}"
        return values[match.group(1)]

    return re.sub(r"\$\{([^}]+)\}", one, value)


@pytest.fixture(scope="module")
def consumer() -> Dict[str, Any]:
    return module("consumer")


@pytest.fixture(scope="module")
def cfn() -> Dict[str, Any]:
    template = load_template(CONSUMER)
    resolve = Resolver(template, {"ProjectName": PROJECT})
    return {name: resolve(r.get("Properties", {})) for name, r in template["Resources"].items()}


@pytest.fixture(scope="module")
def values(cfn: Dict[str, Any]) -> Dict[str, str]:
    return {"var.project": PROJECT, "jsonencode(var.project)": json.dumps(PROJECT),
            "jsonencode(var.detail_type)": json.dumps("User Data"),
            "jsonencode(var.statuses)": json.dumps(STATUSES), "var.metric_namespace": "bosky",
            "var.slow_boot_seconds": "300", "var.failed_boots_threshold": "3",
            "data.aws_region.current.name": DEFAULT_REGION,
            # a Ref, as Resolver writes one
            "aws_cloudwatch_log_group.verdicts.name": "<VerdictLog>"}


def test_the_rules_match_the_same_events(consumer: Dict[str, Any], cfn: Dict[str, Any],
                                         values: Dict[str, str]) -> None:
    rules = blocks(consumer, "resource", "aws_cloudwatch_event_rule")
    for tf_name, cfn_name in (("verdicts", "VerdictRule"), ("history", "HistoryRule")):
        pattern = json.loads(interpolate(text(rules[tf_name]["event_pattern"]), values))
        assert pattern == cfn[cfn_name]["EventPattern"], tf_name
    assert cfn["VerdictRule"]["EventPattern"]["detail"]["Status"] == STATUSES


def test_the_email_is_the_same_readable_alert(consumer: Dict[str, Any],
                                              cfn: Dict[str, Any]) -> None:
    target = blocks(consumer, "resource", "aws_cloudwatch_event_target")["alerts"]
    (transformer,) = target["input_transformer"]
    (cfn_target,) = [t for t in cfn["VerdictRule"]["Targets"] if t["Id"] == "alert-topic"]
    want = cfn_target["InputTransformer"]
    assert {k: text(v) for k, v in transformer["input_paths"].items()} == want["InputPathsMap"]
    assert text(transformer["input_template"]) == want["InputTemplate"]
    targets = blocks(consumer, "resource", "aws_cloudwatch_event_target")
    assert {text(t["target_id"]) for t in targets.values()} == {
        t["Id"] for rule in ("VerdictRule", "HistoryRule") for t in cfn[rule]["Targets"]}


def test_the_metric_filters_and_the_alarm_are_the_same(consumer: Dict[str, Any],
                                                       cfn: Dict[str, Any],
                                                       values: Dict[str, str]) -> None:
    filters = {text(f["name"]): f for f in
               blocks(consumer, "resource", "aws_cloudwatch_log_metric_filter").values()}
    wanted = {r["FilterName"]: r for r in cfn.values() if "FilterName" in r}
    assert set(filters) == set(wanted) and len(wanted) == 3
    for name, want in wanted.items():
        got = filters[name]
        assert text(got["pattern"]) == want["FilterPattern"].strip(), name
        (transformation,) = got["metric_transformation"]
        (cfn_t,) = want["MetricTransformations"]
        assert interpolate(text(transformation["namespace"]), values) == cfn_t["MetricNamespace"]
        assert text(transformation["name"]) == cfn_t["MetricName"]
        assert text(transformation["value"]) == cfn_t["MetricValue"]
        assert text(transformation["unit"]) == cfn_t["Unit"]
        assert ("default_value" in transformation) == ("DefaultValue" in cfn_t)
        if "DefaultValue" in cfn_t:
            assert float(text(transformation["default_value"])) == float(cfn_t["DefaultValue"])
        dims = {k: text(v) for k, v in (transformation.get("dimensions") or {}).items()}
        assert dims == {d["Key"]: d["Value"] for d in cfn_t.get("Dimensions", [])}
    alarm = blocks(consumer, "resource", "aws_cloudwatch_metric_alarm")["failed_boots"]
    want = cfn["FailedBootsAlarm"]
    assert text(alarm["metric_name"]) == want["MetricName"]
    assert interpolate(text(alarm["namespace"]), values) == want["Namespace"]
    for tf_key, cfn_key in (("statistic", "Statistic"),
                            ("comparison_operator", "ComparisonOperator"),
                            ("treat_missing_data", "TreatMissingData")):
        assert text(alarm[tf_key]) == want[cfn_key]
    assert (alarm["period"], alarm["evaluation_periods"]) == (want["Period"],
                                                              want["EvaluationPeriods"])
    assert interpolate(alarm["threshold"], values) == str(want["Threshold"])
    assert " ".join(interpolate(text(alarm["alarm_description"]), values).split()) == \
        " ".join(want["AlarmDescription"].split())


def test_the_dashboard_is_the_same(consumer: Dict[str, Any], cfn: Dict[str, Any],
                                   values: Dict[str, str]) -> None:
    dashboard = blocks(consumer, "resource", "aws_cloudwatch_dashboard")["fleet"]
    got = json.loads(interpolate(text(dashboard["dashboard_body"]), values))
    assert got == json.loads(cfn["FleetDashboard"]["DashboardBody"])


def test_the_saved_queries_are_bosky_fleet_s(consumer: Dict[str, Any]) -> None:
    queries = blocks(consumer, "resource", "aws_cloudwatch_query_definition")
    assert sorted(queries) == sorted(insights.NAMES)
    for name, query in queries.items():
        assert text(query["query_string"]) == insights.query_text(name)
        assert text(query["name"]) == f"bosky/${{var.project}}/{name}"


def test_the_log_group_and_its_policy_are_the_same(consumer: Dict[str, Any],
                                                   cfn: Dict[str, Any],
                                                   values: Dict[str, str]) -> None:
    group = blocks(consumer, "resource", "aws_cloudwatch_log_group")["verdicts"]
    assert interpolate(text(group["name"]), values) == cfn["VerdictLog"]["LogGroupName"]
    policy = blocks(consumer, "resource", "aws_cloudwatch_log_resource_policy")["verdicts"]
    want = json.loads(cfn["VerdictLogPolicy"]["PolicyDocument"])["Statement"][0]
    body = policy["policy_document"]
    for key in ("Sid", "Effect"):
        assert f'{key} = "{want[key]}"' in body or want[key] in body
    for action in want["Action"]:
        assert action in body
    for service in want["Principal"]["Service"]:
        assert service in body


# -- the instance role ----------------------------------------------------------------------


def statements(tf: Mapping[str, Any], group: str, stack: str) -> List[Dict[str, Any]]:
    """The role's policy document as IAM JSON, for a named group and stack."""
    local = text(json.dumps(tf["locals"][0]["bus_arn"]))
    bus_arn = re.search(r': "(arn:.*)"\}$', local)
    assert bus_arn, local
    values = {"data.aws_partition.current.partition": "aws",
              "data.aws_region.current.name": DEFAULT_REGION,
              "data.aws_caller_identity.current.account_id": DEFAULT_ACCOUNT,
              "var.event_bus_name": "default", "var.project": PROJECT,
              "var.detail_type": "User Data"}
    values["local.bus_arn"] = interpolate(bus_arn.group(1), values)
    doc = blocks(tf, "data", "aws_iam_policy_document")["bosky"]
    out = []
    found = list(doc["statement"])
    for dynamic in doc.get("dynamic", []):
        (body,) = dynamic.values()
        named = group if "auto_scaling_group_name" in body["for_each"] else stack
        found += [{**c, "_value": named} for c in body["content"]]
    for s in found:
        local_values = {**values, "statement.value": s.get("_value", "")}
        actions = [interpolate(text(a), local_values) for a in s["actions"]]
        statement: Dict[str, Any] = {
            "Sid": text(s["sid"]), "Effect": text(s["effect"]),
            "Action": actions[0] if len(actions) == 1 else actions,
            "Resource": next(interpolate(text(r), local_values) for r in s["resources"])}
        conditions: Dict[str, Dict[str, str]] = {}
        for c in s.get("condition", []):
            (value,) = [interpolate(v, local_values) for v in c["values"]]
            conditions.setdefault(text(c["test"]), {})[text(c["variable"])] = value
        if conditions:
            statement["Condition"] = conditions
        out.append(statement)
    return out


def test_the_instance_role_grants_what_bosky_permissions_prints() -> None:
    tf = module("instance-role")
    want = put_events_policy(PROJECT, "User Data", "default", DEFAULT_REGION,
                             DEFAULT_ACCOUNT)["Statement"]
    want += action_statements({"name": "boot-check", "group": "bosky-web"},
                              {"stack": "web-stack"}, DEFAULT_REGION, DEFAULT_ACCOUNT)
    assert statements(tf, "bosky-web", "web-stack") == want
    assert want[0]["Resource"] == arns.event_bus_arn("default", DEFAULT_REGION, DEFAULT_ACCOUNT)
    # The CloudFormation role's first statement is the same one.
    template = load_template(ROLE)
    role = Resolver(template, {"ProjectName": PROJECT})(
        template["Resources"]["BoskyInstanceRole"]["Properties"])
    (cfn_statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert cfn_statement == want[0]


def test_the_asg_example_holds_boots_with_a_hook_and_cloud_init_user_data() -> None:
    tf = module("asg-example")
    group = blocks(tf, "resource", "aws_autoscaling_group")["web"]
    (hook,) = group["initial_lifecycle_hook"]
    assert text(hook["lifecycle_transition"]) == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert text(hook["default_result"]) == "ABANDON" and hook["heartbeat_timeout"] == 2400
    config = blocks(tf, "data", "cloudinit_config")["web"]
    (part,) = config["part"]
    assert text(part["content_type"]) == "text/cloud-config"
    assert "lifecycle_hook" in part["content"] and text(hook["name"]) == "boot-check"
    template = blocks(tf, "resource", "aws_launch_template")["web"]
    assert template["user_data"] == "${data.cloudinit_config.web.rendered}"
    (role,) = [m for m in tf["module"] if '"role"' in m or "role" in m]
    body = role.get("role") or role.get('"role"')
    assert text(body["source"]) == "../instance-role"


def test_every_module_is_documented_in_the_readme() -> None:
    readme = (Path(INFRA).parent / "README.md").read_text()
    for name in ("consumer", "instance-role", "asg-example"):
        assert f"infra/terraform/{name}" in readme, name
