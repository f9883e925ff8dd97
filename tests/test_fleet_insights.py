"""`bosky fleet --engine insights`: the same morning of boots, aggregated by Logs Insights.

moto cannot run these queries (it drops ``filter`` and ``stats``), so Logs
Insights' side is tests/support/logs_insights.py, served over loopback by
tests/support/insights_server.py and fed by the real events the consumer
stack's rule delivered into moto's log group. Both engines must give one
report.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from typing import Any, Dict, List

import pytest

from cc_bosky.fleet import insights
from cc_bosky.tools import fleet
from tests.support import logs_insights
from tests.support.bounds import ARRIVAL
from tests.support.fixtures import bosky_command, run_bosky
from tests.support.insights_server import InsightsServer
from tests.test_consumer_metrics import stack  # noqa: F401  (fixture)
from tests.test_fleet import FakeTerminal, morning  # noqa: F401  (fixture)
from tests.test_infra import consumer_stack  # noqa: F401  (fixture)

SAME = ("Boots", "Groups", "FailingModules", "Failures", "LatestFailures")


@pytest.fixture
def logs_insights_side(eventbridge: Any, morning: Dict[str, Any]  # noqa: F811
                       ) -> Any:
    with InsightsServer(eventbridge.client("logs")) as server:
        yield server


def fleet_json(morning: Dict[str, Any], endpoint: str, *args: str) -> Dict[str, Any]:  # noqa: F811
    env = {**morning["env"], "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": endpoint}
    proc = run_bosky(["fleet", "--log-group", morning["group"], "--json", *args], env=env)
    assert proc.returncode == 0, proc.stderr
    report: Dict[str, Any] = json.loads(proc.stdout)
    return report


def test_both_engines_give_the_same_report_on_real_events(
        morning: Dict[str, Any], logs_insights_side: InsightsServer,  # noqa: F811
        eventbridge: Any) -> None:
    for extra in ([], ["--project", morning["project"]]):
        scanned = fleet_json(morning, eventbridge.url, "--engine", "scan", "--failures", "500",
                             *extra)
        asked = fleet_json(morning, logs_insights_side.url, "--engine", "insights",
                           "--failures", "500", *extra)
        assert scanned["Engine"] == "scan" and asked["Engine"] == "insights"
        assert {k: asked[k] for k in SAME} == {k: scanned[k] for k in SAME}
        assert asked["Boots"] == 301 and asked["Failures"] == len(asked["LatestFailures"])
    # Four queries, each polled through Scheduled/Running to Complete.
    assert len(logs_insights_side.started) == 8
    assert logs_insights_side.calls.count("GetQueryResults") >= 16
    stats = asked["Insights"]
    assert stats["Queries"] == 4 and stats["BytesScanned"] > 0 and stats["Truncated"] == []


def test_the_latest_failures_agree_when_the_list_is_short(
        morning: Dict[str, Any], logs_insights_side: InsightsServer,  # noqa: F811
        eventbridge: Any) -> None:
    scanned = fleet_json(morning, eventbridge.url, "--engine", "scan", "--failures", "3")
    asked = fleet_json(morning, logs_insights_side.url, "--engine", "insights",
                       "--failures", "3")
    # All 300 verdicts were sent within a second or two: ties are broken the same way.
    assert asked["LatestFailures"] == scanned["LatestFailures"]
    assert len(asked["LatestFailures"]) == 3


def test_a_week_goes_to_insights_by_default_and_the_text_report_says_so(
        morning: Dict[str, Any], logs_insights_side: InsightsServer) -> None:  # noqa: F811
    env = {**morning["env"], "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": logs_insights_side.url}
    proc = run_bosky(["fleet", "--log-group", morning["group"], "--since", "7d", "--rows", "2"],
                     env=env)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert "301 boots (Logs Insights: 307 events matched" in first  # boot verdicts only
    assert "... 2 more groups (--rows 4 or --json for all)" in proc.stdout


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "Timeout"])
def test_a_query_that_ends_badly_is_exit_1_in_one_line(
        morning: Dict[str, Any], logs_insights_side: InsightsServer,  # noqa: F811
        status: str) -> None:
    logs_insights_side.final_status = status
    env = {**morning["env"], "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": logs_insights_side.url}
    proc = run_bosky(["fleet", "--log-group", morning["group"], "--engine", "insights"], env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("bosky: the Logs Insights query 'groups' on "
                                  f"{morning['group']} ended {status}")
    assert len(proc.stderr.splitlines()) == 1
    # The queries still running were stopped, not abandoned.
    started = {q for q, _ in logs_insights_side.started}
    assert set(logs_insights_side.stopped) == started - {logs_insights_side.started[0][0]}


def test_a_missing_log_group_names_group_region_and_the_stack_output(
        morning: Dict[str, Any], logs_insights_side: InsightsServer) -> None:  # noqa: F811
    env = {**morning["env"], "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": logs_insights_side.url}
    proc = run_bosky(["fleet", "--log-group", "/aws/events/bosky/gone", "--engine", "insights"],
                     env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("bosky: CloudWatch Logs has no log group "
                                  "/aws/events/bosky/gone in us-east-1")
    assert len(proc.stderr.splitlines()) == 1


def test_ctrl_c_stops_the_running_queries(
        morning: Dict[str, Any], logs_insights_side: InsightsServer) -> None:  # noqa: F811
    logs_insights_side.running_polls = 10 ** 6  # never finishes by itself
    env = {**morning["env"], "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": logs_insights_side.url}
    proc = subprocess.Popen([*bosky_command(env), "fleet", "--log-group", morning["group"],
                             "--engine", "insights"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + ARRIVAL
    while logs_insights_side.calls.count("GetQueryResults") < 4:
        assert time.monotonic() < deadline, "the queries never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=ARRIVAL)
    assert proc.returncode != 0 and "Traceback" not in err
    assert sorted(logs_insights_side.stopped) == sorted(q for q, _ in logs_insights_side.started)
    assert len(logs_insights_side.stopped) == 4


# -- the query text against the documented syntax --------------------------------------------


@pytest.mark.parametrize("name", insights.NAMES)
def test_each_query_is_valid_logs_insights_syntax(name: str) -> None:
    for project in (None, "web"):
        text = insights.query_text(name, project, 10)
        commands = logs_insights.parse(text)
        assert [c.name for c in commands].count("stats") in (1, 2)
        assert commands[0].name == "filter"


@pytest.mark.parametrize("query, refusal", [
    ("stats count(*) by a | sort a | stats count(*) by a", "sort and limit must follow"),
    ("stats count(*) as n by a | stats max(n) by a | stats count(*)", "at most two stats"),
    ("stats count(*) as n by a | stats max(b) by a", "'b' is not defined by the first stats"),
    ("fields median(a)", "median() is not a Logs Insights function"),
    ("fields max(a)", "max() belongs in stats"),
    ("filter a = 1 | limit 10001", "limit must be 1 to 10000"),
    ("frobnicate a", "'frobnicate' is not a Logs Insights command"),
    ("dedup a", "documented but this evaluator does not run it"),
])
def test_the_syntax_check_refuses_what_the_documentation_forbids(query: str,
                                                                  refusal: str) -> None:
    with pytest.raises(logs_insights.QuerySyntaxError, match=refusal.replace("(", r"\(")
                       .replace(")", r"\)")):
        logs_insights.parse(query)


# -- GetQueryResults answers in their documented shape ---------------------------------------


def answer(rows: List[Dict[str, str]], status: str = "Complete") -> Dict[str, Any]:
    return {"status": status, "statistics": {"recordsMatched": 3.0, "recordsScanned": 9.0,
                                             "bytesScanned": 1200.0},
            "results": [[{"field": k, "value": v} for k, v in r.items()] + [
                {"field": "@ptr", "value": "CmAKJwoj"}] for r in rows]}


def test_answers_are_read_in_their_documented_shape() -> None:
    message = json.dumps({"source": "web", "detail": {
        "Status": "timeout", "Origin": "boot", "EventId": "e1", "InstanceId": "i-1",
        "ImageId": "ami-1", "Message": "cloud-init has not finished", "LogTail": ["still"]}})
    agg = insights.aggregate({
        "groups": answer([{"project": "web", "image": "ami-1", "type": "t3.micro",
                           "status": "pass", "boots": "7"},
                          {"project": "web", "type": "t3.micro", "status": "timeout",
                           "boots": "1"},
                          {"project": "web", "status": "nonsense", "boots": "1"}]),
        "seconds": answer([{"project": "web", "image": "ami-1", "type": "t3.micro",
                            "p50": "41.5", "p95": "58.25"}]),
        "modules": answer([{"module": "scripts_user", "failures": "4"}]),
        "latest": answer([{"project": "web", "instance": "i-1", "boot": "b",
                           "status": "timeout", "last": "2026-12-01 08:00:01.250",
                           "message": message},
                          {"status": "timeout", "last": "garbage", "message": "{}"}]),
    })
    assert agg.counts[("web", "ami-1", "t3.micro")]["pass"] == 7
    assert agg.counts[("web", "-", "t3.micro")]["timeout"] == 1  # no ImageId: "-"
    assert agg.seconds[("web", "ami-1", "t3.micro")] == (41.5, 58.25)
    assert agg.modules == {"scripts_user": 4}
    (latest,) = agg.latest
    assert latest["Time"] == "2026-12-01T08:00:01Z" and latest["LastLogLine"] == "still"


def test_insights_progress_shows_on_a_terminal_only() -> None:
    run = insights.Run()
    run.states = {"groups": "Complete", "seconds": "Running"}
    run.records, run.bytes = 1_200_000, 5.3e9
    term, pipe = FakeTerminal(), io.StringIO()
    for stream in (term, pipe):
        progress = fleet.Progress(stream)
        progress.poll(run)
        progress.done()
    assert "1 of 4 queries done, 1,200,000 records, 5,300.0 MB scanned" in term.getvalue()
    assert pipe.getvalue() == ""


# -- the same queries, shipped in the consumer stack -------------------------------------------


def test_the_stack_ships_the_same_queries_and_its_dashboard_runs_them() -> None:
    from tests.test_infra import CONSUMER, Resolver, load_template

    template = load_template(CONSUMER)
    resolve = Resolver(template, {"ProjectName": "web"})
    resources = template["Resources"]
    for name in insights.NAMES:
        query = resolve(resources[f"Query{name.capitalize()}"]["Properties"])
        assert query["QueryString"] == insights.query_text(name)
        assert query["Name"] == f"bosky/web/{name}"
        assert query["LogGroupNames"] == [resolve({"Ref": "VerdictLog"})]
        logs_insights.parse(query["QueryString"])
    body = json.loads(resolve(resources["FleetDashboard"]["Properties"]["DashboardBody"]))
    queries = [w["properties"]["query"] for w in body["widgets"] if w["type"] == "log"]
    group = resolve({"Ref": "VerdictLog"})
    assert queries == [f"SOURCE '{group}' | " + insights.query_text(name)
                       for name in insights.NAMES]


def test_the_report_s_permissions_cover_both_engines() -> None:
    proc = run_bosky(["fleet", "--log-group", "/aws/events/bosky/web", "--permissions",
                      "--region", "eu-west-1"], env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    policy = json.loads(proc.stdout)
    actions = {a for s in policy["Statement"] for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"logs:FilterLogEvents", "logs:StartQuery", "logs:GetQueryResults",
                       "logs:StopQuery"}
    scoped = [s["Resource"] for s in policy["Statement"]
              if s["Action"] in ("logs:FilterLogEvents", "logs:StartQuery")]
    assert scoped == ["arn:aws:logs:eu-west-1:*:log-group:/aws/events/bosky/web:*"] * 2
