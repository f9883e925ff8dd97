"""The files in cloud-config-examples/ do what their headers promise.

Users copy these files as they are, so each one is checked the two ways a
user depends on:

* it is valid: ``bosky schema FILE`` accepts the file as it stands (the
  MIME example too: bosky reads it as cloud-init does, part by part) under
  the Python of every supported cloud-init release, i.e. against that
  release's own cloud-config schema extended with bosky's stanza; and a copy
  with a typo or a wrong type is rejected, naming the key (and the part);
* it works: it boots through real cloud-init (tests/harness) and a consumer,
  an EventBridge rule with an SQS queue on the moto emulator, receives the
  event the header describes. Only what cannot exist here is rewritten: the
  project becomes the consumer's own, a bus ARN's account becomes moto's,
  the VPC endpoint becomes a proxy in front of the emulator, a deadline
  shrinks to seconds.

Every example boots on the newest selected release; the three an old golden
image is most likely to meet (minimal user data, the drop-in, MIME user data)
boot on every release.
"""

from __future__ import annotations

import dataclasses
import email
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

from cc_bosky.errors import EXIT_OK, EXIT_USAGE
from tests.conftest import assert_valid_event
from tests.harness.boot import Instance
from tests.harness.fixtures import selected_releases
from tests.harness.imds import MetadataServer
from tests.harness.releases import Release, ensure_release, release_key
from tests.support.bounds import ARRIVAL
from tests.support.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    Consumer,
    EventBridgeEmulator,
    make_consumer,
)
from tests.support.faultproxy import FaultProxy

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "cloud-config-examples"

MINIMAL = "minimal-user-data.yaml"
GOLDEN_AMI = "golden-ami-drop-in.cfg"
CUSTOM_BUS = "custom-bus-by-arn.yaml"
FAILURES_ONLY = "failures-only.yaml"
VPC_ENDPOINT = "vpc-endpoint.yaml"
MIXED = "mixed-cloud-config-and-script.mime"
SHORT_DEADLINE = "short-deadline.yaml"
LIFECYCLE_HOOK = "auto-scaling-lifecycle-hook.yaml"
ALL_EXAMPLES = (MINIMAL, GOLDEN_AMI, CUSTOM_BUS, FAILURES_ONLY, VPC_ENDPOINT, MIXED,
                SHORT_DEADLINE, LIFECYCLE_HOOK)
#: What a header must tell a user before they copy the file.
HEADER_LABELS = ("Use it when:", "Event:", "Prerequisites:")
#: Files under /etc/cloud/cloud.cfg.d are YAML without the #cloud-config line.
DROP_INS = (GOLDEN_AMI,)

VALID = "valid (cloud-init's schema with bosky's stanza)"


def _newest_selected() -> str:
    return max(selected_releases(), key=release_key)


#: Boots only on the newest selected cloud-init (25.1.4 unless BOSKY_RELEASES says otherwise).
on_newest_release = pytest.mark.parametrize("cloudinit_release", [_newest_selected()],
                                            indirect=True)


# -- reading the examples ------------------------------------------------------


def example(name: str) -> str:
    return (EXAMPLES / name).read_text(encoding="utf-8")


def mime_parts(text: str) -> List[Tuple[str, Optional[str], bytes]]:
    """(content type, file name, decoded content) of each part of a MIME
    message, the way cloud-init reads multipart user data."""
    message = email.message_from_string(text)
    assert message.is_multipart() and not message.defects, message.defects
    parts: List[Tuple[str, Optional[str], bytes]] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes), part
        parts.append((part.get_content_type(), part.get_filename(), payload))
    return parts


def cloud_configs(name: str) -> List[str]:
    """Each cloud-config document in an example: the file itself, or the
    text/cloud-config parts of a MIME message."""
    text = example(name)
    if not name.endswith(".mime"):
        return [text]
    found = [payload.decode("utf-8") for kind, _, payload in mime_parts(text)
             if kind == "text/cloud-config"]
    assert found, f"{name} has no text/cloud-config part"
    return found


def stanza(name: str) -> Dict[str, Any]:
    """The example's ``bosky:`` settings, as written (before any rewriting)."""
    (document,) = [d for d in cloud_configs(name) if "bosky" in yaml.safe_load(d)]
    found: Dict[str, Any] = yaml.safe_load(document)["bosky"]
    return found


def header(name: str) -> str:
    """The comment block a user reads first (a MIME message's is its preamble)."""
    text = example(name)
    if name.endswith(".mime"):
        return email.message_from_string(text).preamble or ""
    lines = text.splitlines()
    if lines and lines[0] == "#cloud-config":
        lines = lines[1:]
    block: List[str] = []
    for line in lines:
        if not line.startswith("#"):
            break
        block.append(line)
    return "\n".join(block)


def rewrite(text: str, **values: str) -> str:
    """``text`` with the value of each named stanza key replaced, all else verbatim.

    Each key must be set exactly once (commented-out lines do not count), so
    an example that changes shape fails here instead of booting unrewritten
    and, say, sending to a project nobody listens to.
    """
    for key, value in values.items():
        pattern = re.compile(rf"^([ \t]+{re.escape(key)}:)[ \t]*\S.*$", re.MULTILINE)
        text, count = pattern.subn(r"\g<1> " + value.replace("\\", r"\\"), text)
        assert count == 1, f"the example sets {key!r} {count} times, expected once"
    return text


# -- bosky schema under each release's Python -----------------------------------


@pytest.fixture(scope="session", params=selected_releases())
def release_python(request: pytest.FixtureRequest) -> Release:
    """A provisioned cloud-init release; validation needs its Python, not a boot
    (so, unlike booting, this needs neither root nor namespaces)."""
    return ensure_release(request.param)


def run_with(release: Release, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with the release's cloud-init and this checkout's cc_bosky
    importable, and no AWS or bosky settings from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOSKY_"))}
    env["PYTHONPATH"] = release.pythonpath()
    return subprocess.run([str(release.python), *args], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=120, check=False)


def bosky_schema(release: Release, path: Path) -> subprocess.CompletedProcess[str]:
    return run_with(release, "-m", "cc_bosky", "schema", str(path), cwd=path.parent)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_every_example_is_valid_for_every_cloud_init(release_python: Release,
                                                     name: str) -> None:
    path = EXAMPLES / name
    for document in cloud_configs(name):
        if name not in DROP_INS:  # without this line cloud-init ignores user data's YAML
            assert document.startswith("#cloud-config\n"), path
    result = bosky_schema(release_python, path)
    assert result.returncode == EXIT_OK, result.stderr
    assert VALID in result.stdout, result.stdout  # cloud-init's schema, not bosky's alone
    if name == MIXED:  # read as parts, the script listed, not taken for YAML
        assert "  cloud-config.yaml (text/cloud-config): valid" in result.stdout
        assert "  bootstrap.sh (text/x-shellscript): a script" in result.stdout


def misspell_project(text: str) -> str:
    changed, count = re.subn(r"^([ \t]+)project:", r"\g<1>projcet:", text, flags=re.MULTILINE)
    assert count == 1, count
    return changed


def project_as_list(text: str) -> str:
    return rewrite(text, project="[web, api]")


#: How a copy gets broken, and what the error must name; every example sets project.
BREAKAGES: Dict[str, Tuple[Callable[[str], str], str]] = {
    "typo-key": (misspell_project, "'projcet'"),
    "wrong-type": (project_as_list, "bosky.project"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
@pytest.mark.parametrize("name", [MINIMAL, GOLDEN_AMI, MIXED])
def test_a_broken_copy_is_rejected_naming_the_key(release_python: Release, name: str,
                                                  breakage: str, tmp_path: Path) -> None:
    breaks, named = BREAKAGES[breakage]
    broken = write(tmp_path / f"broken-{name}", breaks(example(name)))
    result = bosky_schema(release_python, broken)
    assert result.returncode == EXIT_USAGE, (result.stdout, result.stderr)
    (problem,) = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    assert named in problem, result.stdout
    if name == MIXED:
        assert f"{broken}: cloud-config.yaml: " in problem  # the part, by its file name
    assert VALID not in result.stdout


def test_the_mime_example_is_what_cloud_init_make_mime_builds(release_python: Release,
                                                             tmp_path: Path) -> None:
    """The header says `cloud-init devel make-mime` builds such a file from two
    ordinary ones; the parts it makes carry the same types and content."""
    parts = mime_parts(example(MIXED))
    args: List[str] = []
    for kind, filename, payload in parts:
        assert filename, "each part names the file it came from"
        (tmp_path / filename).write_bytes(payload)
        args += ["-a", f"{filename}:{kind.split('/', 1)[1]}"]
    built = run_with(release_python, "-m", "cloudinit.cmd.main", "devel", "make-mime", *args,
                     cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    # make-mime base64-encodes the parts; decoded, they are the example's.
    assert [(k, p) for k, _, p in mime_parts(built.stdout)] == [(k, p) for k, _, p in parts]


# -- what a user reads ------------------------------------------------------------


def test_the_directory_holds_exactly_the_tested_examples() -> None:
    """A new example without a test here would not be known to work."""
    assert sorted(p.name for p in EXAMPLES.iterdir()) == sorted(ALL_EXAMPLES)


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_every_example_says_when_to_use_it_what_it_sends_and_what_it_needs(name: str) -> None:
    text = header(name)
    missing = [label for label in HEADER_LABELS if label not in text]
    assert not missing, f"{name}: header lacks {missing}"
    assert "project" in stanza(name)  # the consumer's rule filters on it


# -- booting the examples ------------------------------------------------------


@pytest.fixture
def fleet(instance: Callable[..., Instance], imds: MetadataServer,
          eventbridge: EventBridgeEmulator) -> Callable[..., Instance]:
    """Instances in the consumer's region whose only AWS settings are what an
    EC2 instance has: the metadata service (identity and role credentials),
    plus the emulator as EventBridge's endpoint unless the example sets one."""
    imds.metadata = dataclasses.replace(imds.metadata, region=DEFAULT_REGION)

    def make(endpoint_in_env: bool = True, **kwargs: Any) -> Instance:
        env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
        if endpoint_in_env:
            env["AWS_ENDPOINT_URL_EVENTS"] = eventbridge.url
        return instance(env=env, **kwargs)

    return make


def events_at(consumer: Consumer, expected: int = 1) -> List[Dict[str, Any]]:
    """What the consumer's queue got: wait for ``expected``, then make sure
    nothing else follows (a duplicate would show up here)."""
    return consumer.receive(expected=expected, timeout=ARRIVAL) + consumer.drain(settle=1.0)


def the_event(consumer: Consumer, validator: Any) -> Dict[str, Any]:
    """The one event the consumer received, checked against the detail schema."""
    events = events_at(consumer)
    assert len(events) == 1, [e["detail"]["Status"] for e in events]
    envelope = events[0]
    assert envelope["source"] == consumer.project
    assert envelope["detail-type"] == "User Data"
    return assert_valid_event(envelope, validator)


def log_tail(detail: Dict[str, Any]) -> str:
    """The event's lines of /var/log/cloud-init-output.log, as one text."""
    return "\n".join(detail.get("LogTail") or [])


def reporter_deadline(boot: Any) -> int:
    """The deadline the boot's reporter ran with, as it logs it on start (the job
    file that carried its settings is removed once read)."""
    log = (boot.paths.var_log / "bosky.log").read_text()
    found = re.findall(r"reporting for project \S+: deadline (\d+) s", log)
    assert found, log
    return int(found[-1])


def test_minimal_user_data_reports_pass(fleet: Callable[..., Instance], consumer: Consumer,
                                        detail_validator: Any) -> None:
    inst = fleet()
    inst.boot(user_data=rewrite(example(MINIMAL), project=str(consumer.project)),
              wait_reporter=60)
    detail = the_event(consumer, detail_validator)
    assert detail["Status"] == "pass", detail
    assert inst.imds is not None and detail["InstanceId"] == inst.imds.metadata.instance_id
    assert "ConfigWarnings" not in detail


def test_golden_ami_drop_in_reports_boots_whose_user_data_knows_nothing_of_bosky(
        fleet: Callable[..., Instance], consumer: Consumer, detail_validator: Any) -> None:
    inst = fleet()
    drop_in = rewrite(example(GOLDEN_AMI), project=str(consumer.project))
    boot = inst.boot(user_data="#!/bin/bash\necho 'deployed by the launch template'\n",
                     cloud_cfg_d={"90_bosky.cfg": drop_in}, wait_reporter=60)
    detail = the_event(consumer, detail_validator)
    assert detail["Status"] == "pass", detail
    assert "deployed by the launch template" in log_tail(detail)
    # The drop-in, not a default, configured this boot's reporter.
    assert reporter_deadline(boot) == stanza(GOLDEN_AMI)["deadline"]


@on_newest_release
def test_user_data_overrides_the_drop_in_key_by_key(fleet: Callable[..., Instance],
                                                    consumer: Consumer,
                                                    detail_validator: Any) -> None:
    """One image, many projects: the header's promise that user data's
    `bosky: {project: ...}` wins over the image's project and nothing else."""
    inst = fleet()
    drop_in = rewrite(example(GOLDEN_AMI), project="the-image-default")
    boot = inst.boot(user_data=f"#cloud-config\nbosky: {{project: {consumer.project}}}\n",
                     cloud_cfg_d={"90_bosky.cfg": drop_in}, wait_reporter=60)
    assert the_event(consumer, detail_validator)["Status"] == "pass"  # sent as the user's
    assert reporter_deadline(boot) == stanza(GOLDEN_AMI)["deadline"]


@pytest.fixture
def platform_bus(eventbridge: EventBridgeEmulator, consumer: Consumer) -> Iterator[Consumer]:
    """The custom example's bus, created in moto with a consumer rule of its own
    for this test's project; ``consumer`` stays on the default bus."""
    bus_name = stanza(CUSTOM_BUS)["event_bus"].rsplit("/", 1)[1]
    pattern = {"detail-type": ["User Data"], "source": [consumer.project]}
    made = make_consumer(eventbridge, bus_name=bus_name, pattern=pattern,
                         project=consumer.project)
    try:
        yield made
    finally:
        made.close()


@on_newest_release
def test_custom_bus_by_arn_delivers_to_that_bus_only(fleet: Callable[..., Instance],
                                                     consumer: Consumer, platform_bus: Consumer,
                                                     detail_validator: Any) -> None:
    settings = stanza(CUSTOM_BUS)
    assert settings["region"] == DEFAULT_REGION and f":{DEFAULT_REGION}:" in settings["event_bus"]
    # The platform account cannot exist here; moto's one account plays it.
    here = re.sub(r":[0-9]{12}:", f":{DEFAULT_ACCOUNT}:", settings["event_bus"])
    inst = fleet()
    inst.boot(user_data=rewrite(example(CUSTOM_BUS), project=str(consumer.project),
                                event_bus=here), wait_reporter=60)
    detail = the_event(platform_bus, detail_validator)
    assert detail["Status"] == "pass", detail
    assert consumer.drain(settle=1.0) == []  # the default bus got nothing


@on_newest_release
def test_failures_only_is_silent_for_a_clean_boot_and_reports_a_failing_one(
        fleet: Callable[..., Instance], consumer: Consumer, detail_validator: Any) -> None:
    user_data = rewrite(example(FAILURES_ONLY), project=str(consumer.project))

    clean = fleet(name="clean")
    boot = clean.boot(user_data=user_data, wait_reporter=60)
    assert consumer.drain(settle=2.0) == []
    # Silence because the verdict was "pass" and not sent, not because no reporter ran.
    verdict = json.loads((boot.paths.run_bosky / "verdict.json").read_text())
    assert (verdict["Status"], verdict["Sent"]) == ("pass", False), verdict

    failing = fleet(name="failing")
    failing.boot(user_data=user_data + "runcmd:\n"
                 "  - [sh, -c, 'echo \"migration failed\" >&2; exit 1']\n", wait_reporter=60)
    detail = the_event(consumer, detail_validator)
    assert detail["Status"] == "fail", detail
    assert "scripts_user" in detail["FailedModules"]
    assert "migration failed" in log_tail(detail)


@on_newest_release
def test_vpc_endpoint_is_the_way_the_event_goes(fleet: Callable[..., Instance],
                                                consumer: Consumer, fault_proxy: FaultProxy,
                                                detail_validator: Any) -> None:
    """The endpoint becomes a pass-through proxy in front of the emulator, and
    the instance has no endpoint variable: the event can only get there through
    the configured endpoint_url, and the proxy's log shows it did."""
    assert stanza(VPC_ENDPOINT)["region"] == DEFAULT_REGION  # requests are signed for it
    inst = fleet(endpoint_in_env=False, forward_ports=[fault_proxy.port])
    assert not [k for k in inst.env if k.startswith("AWS_ENDPOINT_URL")]
    inst.boot(user_data=rewrite(example(VPC_ENDPOINT), project=str(consumer.project),
                                endpoint_url=fault_proxy.url), wait_reporter=60)
    detail = the_event(consumer, detail_validator)
    assert detail["Status"] == "pass", detail
    through = [(r.outcome, r.status, [e["Source"] for e in r.entries])
               for r in fault_proxy.requests if r.is_put_events]
    assert through == [("forwarded", 200, [consumer.project])], through


def test_mixed_cloud_config_and_script_runs_the_script_and_reports_pass(
        fleet: Callable[..., Instance], consumer: Consumer, detail_validator: Any) -> None:
    inst = fleet()
    inst.boot(user_data=rewrite(example(MIXED), project=str(consumer.project)),
              wait_reporter=60)
    detail = the_event(consumer, detail_validator)
    assert detail["Status"] == "pass", detail
    assert "bootstrap: starting on" in log_tail(detail)
    assert "bootstrap: done" in log_tail(detail)


#: The example's 600 seconds, shrunk so a test can outlast it.
TINY_DEADLINE = 2
#: Stands in for a script waiting for a database that does not answer. How
#: long the stages take depends on the machine's load, so rather than sleep
#: for a guessed time the script waits until bosky has recorded the timeout
#: verdict (bounded at 30 s): the boot then outlasts the deadline anywhere, and
#: no longer than needed.
HANGING_COMMAND = (
    "echo 'waiting for the database'; "
    "for i in $(seq 300); do grep -qs timeout /run/bosky/verdict.json && break; sleep 0.1; done; "
    "echo 'database answered'"
)


@on_newest_release
def test_short_deadline_reports_timeout_then_the_final_verdict(
        fleet: Callable[..., Instance], consumer: Consumer, detail_validator: Any) -> None:
    assert stanza(SHORT_DEADLINE)["deadline"] == 600
    user_data = rewrite(example(SHORT_DEADLINE), project=str(consumer.project),
                        deadline=str(TINY_DEADLINE))
    user_data += f"runcmd:\n  - [sh, -c, {json.dumps(HANGING_COMMAND)}]\n"
    inst = fleet()
    inst.boot(user_data=user_data, wait_reporter=60)
    events = events_at(consumer, expected=2)
    assert [e["detail"]["Status"] for e in events] == ["timeout", "pass"]
    timeout, final = (assert_valid_event(e, detail_validator) for e in events)
    assert timeout["Deadline"] == TINY_DEADLINE and timeout["Elapsed"] >= TINY_DEADLINE
    assert "modules-final" not in timeout["Stages"]  # reported while the boot ran on
    assert "database answered" in log_tail(final)
    assert timeout["EventId"] != final["EventId"]


@on_newest_release
def test_auto_scaling_lifecycle_hook_continues_a_clean_boot_and_signals_its_stack(
        fleet: Callable[..., Instance], imds: MetadataServer, consumer: Consumer,
        detail_validator: Any) -> None:
    """The instance carries the tags an Auto Scaling group made by CloudFormation
    gives it; the group and the stack are the Auto Scaling / CloudFormation emulator."""
    from tests.support.actions_emulator import ActionsEmulator, Hook

    with ActionsEmulator() as aws:
        aws.add_group("web-asg", [Hook("boot-check")])
        aws.add_stack("web-stack", ["WebGroup"])
        imds.metadata = dataclasses.replace(imds.metadata, tags={
            "aws:autoscaling:groupName": "web-asg", "aws:cloudformation:stack-name": "web-stack",
            "aws:cloudformation:logical-id": "WebGroup"})
        aws.launch(imds.metadata.instance_id, "web-asg")
        inst = fleet()
        inst.env.update({"AWS_ENDPOINT_URL_AUTO_SCALING": aws.url,
                         "AWS_ENDPOINT_URL_CLOUDFORMATION": aws.url})
        inst.boot(user_data=rewrite(example(LIFECYCLE_HOOK), project=str(consumer.project)),
                  wait_reporter=60)
        detail = the_event(consumer, detail_validator)
        assert detail["Status"] == "pass", detail
        assert [c["LifecycleActionResult"] for c in aws.completions] == ["CONTINUE"]
        assert aws.state(imds.metadata.instance_id) == "Pending:Proceed"
        assert [(s["StackName"], s["LogicalResourceId"], s["Status"]) for s in aws.signals] == \
            [("web-stack", "WebGroup", "SUCCESS")]
