"""`bosky fleet`: a morning of boots, read back from the consumer stack's log group.

Three hundred boot verdicts, made by bosky's own verdict and timing code, go
through the deployed consumer stack (its HistoryRule delivers them into the
log group, in moto), with re-sends, a boot that timed out and then passed,
and the bosky command's own events mixed in. `bosky fleet` runs as a user
runs it and its report is compared with what was sent.
"""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import time
from collections import Counter
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_bosky.event import Event, make_event
from cc_bosky.fleet import report as fleet_report
from cc_bosky.tools import fleet
from tests.support.bounds import ARRIVAL
from tests.support.fixtures import run_bosky
from tests.support.verdicts import boot_event, morning_of_boots, send_all
from tests.test_consumer_metrics import stack  # noqa: F401  (fixture)
from tests.test_infra import consumer_stack  # noqa: F401  (fixture)

BOOTS = 300


@pytest.fixture
def morning(eventbridge: Any, aws_env: Dict[str, str], stack: Dict[str, Any]  # noqa: F811
            ) -> Dict[str, Any]:
    project = stack["project"]
    boots = morning_of_boots(project, BOOTS)
    late = dict(instance_id="i-0late0000000000000", image="ami-0aaaaaaaaaaaaaaa1",
                instance_type="t3.micro", boot_id="1a7e0000-0000-4000-8000-000000000000")
    slow_then_fine = [boot_event(project, "timeout", boot_seconds=700, **late),  # type: ignore[arg-type]
                      boot_event(project, "pass", boot_seconds=712.5, **late)]  # type: ignore[arg-type]
    commands = [make_event(source=project, detail_type="User Data", status="fail",
                           message="deploy step 3 failed", identity={}, origin="command")]
    resent = boots[:5]  # a reporter restarted mid-send re-sends under the same EventId
    send_all(boots + slow_then_fine + commands + resent, eventbridge.url, aws_env)
    env = {**aws_env, "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": eventbridge.url}
    return {"project": project, "group": stack["outputs"]["LogGroupName"], "env": env,
            "boots": boots + slow_then_fine[1:]}


def expected_groups(boots: List[Event]) -> Dict[tuple, Counter]:  # type: ignore[type-arg]
    groups: Dict[tuple, Counter] = {}  # type: ignore[type-arg]
    for e in boots:
        key = (e.source, e.detail["ImageId"], e.detail["InstanceType"])
        groups.setdefault(key, Counter())[e.detail["Status"]] += 1
    return groups


def test_the_json_report_counts_every_boot_once(morning: Dict[str, Any]) -> None:
    proc = run_bosky(["fleet", "--log-group", morning["group"], "--json", "--page-size", "50"],
                     env=morning["env"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["Pages"] >= BOOTS // 50  # paginated
    assert report["Boots"] == BOOTS + 1  # re-sends and the late boot's timeout count once
    got = {(g["Project"], g["ImageId"], g["InstanceType"]): g for g in report["Groups"]}
    want = expected_groups(morning["boots"])
    assert set(got) == set(want) and len(got) == 4
    for key, counts in want.items():
        row = got[key]
        assert {s: row[s.capitalize()] for s in fleet.OUTCOMES} == {
            s: counts[s] for s in fleet.OUTCOMES}, key
        assert row["Boots"] == sum(counts.values())
        assert row["FailPercent"] == round(100 * (counts["fail"] + counts["timeout"])
                                           / row["Boots"], 1)
        seconds = sorted(e.detail["BootSeconds"] for e in morning["boots"]
                         if (e.source, e.detail["ImageId"], e.detail["InstanceType"]) == key
                         and "BootSeconds" in e.detail)
        assert row["BootSecondsP50"] == fleet_report.percentile(seconds, 50)
        assert seconds[0] <= row["BootSecondsP50"] <= row["BootSecondsP95"] <= seconds[-1]
    modules = Counter(m for e in morning["boots"] for m in e.detail.get("FailedModules", []))
    assert {m["Module"]: m["Failures"] for m in report["FailingModules"]} == dict(modules)
    assert report["FailingModules"][0]["Module"] == "scripts_user"
    failures = [e for e in morning["boots"] if e.detail["Status"] in ("fail", "timeout")]
    assert report["Failures"] == len(failures)
    latest = report["LatestFailures"]
    assert len(latest) == 10 and [f["Time"] for f in latest] == sorted(
        (f["Time"] for f in latest), reverse=True)
    failed = next(f for f in latest if f["Status"] == "fail")
    assert failed["LastLogLine"] == "download failed: HTTP 404 Not Found"
    assert failed["Message"].startswith("cloud-init recorded 1 error in ")
    assert failed["ImageId"] == "ami-0bbbbbbbbbbbbbbb2"  # the image that breaks boots


def test_the_text_report_is_a_table_per_project_image_and_type(morning: Dict[str, Any]) -> None:
    proc = run_bosky(["fleet", "--log-group", morning["group"], "--since", "2h",
                      "--project", morning["project"], "--failures", "3"], env=morning["env"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"bosky fleet: {morning['group']}, ")
    assert f"{BOOTS + 1} boots" in lines[0]
    header = next(ln for ln in lines if ln.strip().startswith("PROJECT"))
    assert header.split() == ["PROJECT", "IMAGE", "TYPE", "BOOTS", "PASS", "FAIL", "DEGRADED",
                              "TIMEOUT", "FAIL", "%", "P50", "S", "P95", "S"]
    rows = [ln.split() for ln in lines if ln.strip().startswith(morning["project"])]
    assert len(rows) == 4
    assert rows[0][1] == "ami-0bbbbbbbbbbbbbbb2"  # the worst group first
    assert "Top failing modules" in proc.stdout and "Latest failures (3 of " in proc.stdout
    assert "download failed: HTTP 404 Not Found" in proc.stdout
    assert proc.stderr == ""  # no progress on a pipe


def test_another_project_or_an_empty_window_reports_no_boots(morning: Dict[str, Any]) -> None:
    proc = run_bosky(["fleet", "--log-group", morning["group"], "--project", "nobody"],
                     env=morning["env"])
    assert proc.returncode == 0, proc.stderr
    assert "0 boots" in proc.stdout and "no boot verdicts in this window" in proc.stdout


def test_aws_refusing_or_unreachable_is_exit_1_in_one_line(morning: Dict[str, Any]) -> None:
    proc = run_bosky(["fleet", "--log-group", "/aws/events/bosky/missing"], env=morning["env"])
    assert proc.returncode == 1
    assert proc.stderr.startswith("bosky: CloudWatch Logs has no log group "
                                  "/aws/events/bosky/missing in us-east-1")
    assert "output LogGroupName, /aws/events/bosky/PROJECT" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    proc = run_bosky(["fleet", "--log-group", morning["group"], "--endpoint-url",
                      f"http://127.0.0.1:{port}"], env=morning["env"], timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"bosky: cannot read {morning['group']}: ")
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: --log-group"),
    (["--log-group", "g", "--since", "yesterday"], "--since 'yesterday': give an age"),
    (["--log-group", "g", "--failures", "-1"], "--failures must be 0 to 10000"),
    (["--log-group", "g", "--rows", "0"], "--rows must be 1 or more"),
    (["--log-group", "g", "--until", "soon"], "--until 'soon': give an age"),
    (["--log-group", "g", "--since", "1h", "--until", "2h"], "must be before --until"),
    (["--log-group", "g", "--engine", "magic"], "invalid choice: 'magic'"),
    (["--log-group", "g", "--timeout", "4000"], "--timeout must be more than 0 and at most"),
    (["--log-group", "g", "--engine", "insights", "--project", 'we"b'],
     "cannot be quoted in a Logs Insights query"),
    (["--log-group", "g", "--page-size", "0"], "--page-size must be 1 to 10000"),
    (["--log-group", ""], "--log-group '': 1 to 512 letters"),
    (["--log-group", "g", "--endpoint-url", "nonsense"], "is not a valid endpoint url"),
    (["--log-group", "g", "--endpoint-url", ""], "is not a valid endpoint url"),
    (["--log-group", "g", "--region", "Mars"], "region 'Mars' is not a valid region"),
])
def test_usage_errors_are_exit_2(aws_env: Dict[str, str], args: List[str], message: str) -> None:
    proc = run_bosky(["fleet", *args], env=aws_env)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_no_region_is_exit_2(aws_env: Dict[str, str]) -> None:
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    proc = run_bosky(["fleet", "--log-group", "g"], env=env)
    assert proc.returncode == 2 and "no AWS region" in proc.stderr


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_only_after_several_pages() -> None:
    term = FakeTerminal()
    progress = fleet.Progress(term)
    progress.page(50)
    progress.page(50)
    assert term.getvalue() == ""
    progress.page(50)
    progress.done()
    assert "3 pages, 150 events read" in term.getvalue() and term.getvalue().endswith("\033[K")
    pipe = io.StringIO()
    quiet = fleet.Progress(pipe)
    for _ in range(10):
        quiet.page(1)
    quiet.done()
    assert pipe.getvalue() == ""


def test_every_field_the_report_reads_is_in_the_detail_schema() -> None:
    types = fleet_report.properties()
    assert set(types) == set(fleet_report.FIELDS)
    assert types["BootSeconds"] == "number" and types["FailedModules"] == "array"


envelope_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from([*fleet_report.FIELDS, "x"]), inner, max_size=6), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(st.one_of(
    st.text(max_size=100),
    st.builds(lambda d, s: json.dumps({"source": s, "detail": d}),
              st.dictionaries(st.sampled_from(fleet_report.FIELDS), envelope_values, max_size=12),
              st.text(max_size=10) | st.integers()),
    st.builds(lambda status, bs: json.dumps({"source": "p", "detail": {
        "Status": status, "Origin": "boot", "EventId": "e", "BootSeconds": bs,
        "FailedModules": ["a", 3, None], "LogTail": [1, "\x1b[2Jlast"]}}),
        st.sampled_from(fleet.OUTCOMES), envelope_values)), max_size=20))
def test_any_log_content_gives_a_report_never_a_traceback(messages: List[str]) -> None:
    report = fleet_report.build_report(
        iter((1764576000000 + i, m) for i, m in enumerate(messages)), 5)
    report.update({"LogGroup": "g", "Since": "s", "Until": "u", "Pages": 1, "Engine": "scan"})
    text = fleet.render(report)
    assert "\x1b" not in text
    json.dumps(report)
    assert report["EventsRead"] == len(messages)


@pytest.mark.cloudinit
def test_real_boots_of_each_release_show_up_in_the_fleet_report(
        instance: Any, imds: Any, eventbridge: Any, aws_env: Dict[str, str],
        stack: Dict[str, Any]) -> None:  # noqa: F811
    """A real cloud-init boot whose user-data script fails, its verdict through the
    deployed stack into the log group, read by `bosky fleet`."""
    imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1")
    env = {"AWS_ENDPOINT_URL_EVENTS": eventbridge.url,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
    cfg = {"90_bosky.cfg": f"bosky:\n  project: {stack['project']}\n  flush_window: 10\n"}
    failing = instance(env=env)
    failing.boot(user_data="#!/bin/sh\necho 'fetching artifact'\nsleep 1\n"
                           "echo 'HTTP 404 Not Found' >&2\nexit 1\n",
                 cloud_cfg_d=cfg, wait_reporter=60)
    group = stack["outputs"]["LogGroupName"]
    logs = eventbridge.client("logs")
    deadline = time.monotonic() + ARRIVAL
    while not logs.filter_log_events(logGroupName=group)["events"]:
        assert time.monotonic() < deadline, "the verdict never reached the log group"
        time.sleep(0.5)
    proc = run_bosky(["fleet", "--log-group", group, "--json"],
                     env={**aws_env, "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": eventbridge.url})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (row,) = report["Groups"]
    assert (row["ImageId"], row["InstanceType"]) == (imds.metadata.image_id,
                                                     imds.metadata.instance_type)
    assert (row["Boots"], row["Fail"], row["FailPercent"]) == (1, 1, 100.0)
    assert row["BootSecondsP50"] >= 1.0  # the script slept 1 s in modules-final
    assert report["FailingModules"] == [{"Module": "scripts_user", "Failures": 1}]
    (latest,) = report["LatestFailures"]
    assert latest["InstanceId"] == imds.metadata.instance_id
    assert latest["LastLogLine"] == "HTTP 404 Not Found"  # not cloud-init's own banner
