"""Network calls that end, and stay with their endpoint, as a security review tries them.

A hostile or broken server on the path (a load balancer that redirects, a
captive portal, a slowloris) meets the real ``bosky`` command through the
fault proxy: a redirect is a failed attempt and nothing reaches the other
host, credentials least of all; an answer dripped a byte at a time ends at
the attempt's deadline, the command inside ``--timeout`` plus the slack
README states, and the event waits in the spool for ``bosky flush``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cc_bosky import identity
from cc_bosky.delivery.outbox import flush_for
from cc_bosky.delivery.sender import Target, call, put_events
from cc_bosky.delivery.spool import Spool
from cc_bosky.event import make_event
from tests.support.bounds import COMMAND_SLACK, SLACK
from tests.support.emulator import DEFAULT_REGION
from tests.support.faultproxy import DRIP_PARTS, Elsewhere, FaultProxy
from tests.support.fixtures import run_bosky
from tests.support.scenes import wait_for
from tests.test_delivery import assert_one_line, start_bosky, via
from tests.test_spool import arrived

SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENthatMustStayHome"
REDIRECTS = (301, 302, 303, 307, 308)


@pytest.fixture
def elsewhere() -> Iterator[Elsewhere]:
    """Another host on loopback that a redirect points to, recording what reaches it."""
    with Elsewhere() as other:
        yield other


@pytest.fixture
def role_env(env: Dict[str, str]) -> Dict[str, str]:
    """Temporary (instance-role-like) credentials: a session token is what a follower leaks."""
    return {**env, "AWS_SESSION_TOKEN": SESSION_TOKEN}


def spooled(env: Mapping[str, str]) -> Any:
    return Spool(env["BOSKY_SPOOL_DIR"]).records()[0]


def backoff_clock() -> Tuple[Callable[[], float], Callable[[float], None]]:
    """(clock, sleep) for in-process sends: the backoff passes without waiting for it."""
    now = [time.monotonic()]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return (lambda: now[0]), sleep


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 307])
def test_a_redirect_is_not_delivery_and_nothing_reaches_the_other_host(
        bosky, role_env, consumer, fault_proxy, elsewhere, status) -> None:
    """301 is the one urllib turned into a GET with the same headers; 307 keeps the POST."""
    fault_proxy.redirect(elsewhere.url, status=status)
    done = bosky(["--fail", "redirected", "--project", consumer.project, "--timeout", "3"],
                 env=via(fault_proxy, role_env))
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert f"HTTP {status}" in done.stderr and "redirect" in done.stderr
    assert "spooled" in done.stderr
    assert elsewhere.received == []  # no Authorization, no session token, no event
    (record,) = spooled(role_env)
    assert record.event.detail["Message"] == "redirected"
    assert len(fault_proxy.requests) >= 2  # retried as usual within the budget

    fault_proxy.restore()
    flushed = bosky(["flush"], env=via(fault_proxy, role_env))
    assert flushed.returncode == 0, flushed.stderr
    (event,) = arrived(consumer, 1)
    assert event["detail"]["Message"] == "redirected"


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.sampled_from(REDIRECTS),
       path=st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                  blacklist_characters="?#%\\"), max_size=30),
       query=st.booleans())
def test_any_redirect_of_any_call_fails_the_attempt(fault_proxy, elsewhere, role_env, status,
                                                    path, query) -> None:
    """PutEvents and the Query calls alike, whatever the code and wherever Location points."""
    fault_proxy.reset()
    location = f"{elsewhere.url}/{path}" + ("?X-Amz-Security-Token=x" if query else "")
    fault_proxy.redirect(location, status=status)
    env = {**role_env, "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url}
    target = Target(DEFAULT_REGION, fault_proxy.url, budget=2.0)
    (outcome,) = put_events([{"Source": "s", "DetailType": "d", "Detail": "{}"}], target, env,
                            *backoff_clock())
    assert not outcome.delivered and outcome.retryable and outcome.attempts > 1
    assert outcome.error_code == "Redirect" and f"HTTP {status}" in outcome.reason()
    hook = call("CompleteLifecycleAction", {"AutoScalingGroupName": "g"},
                Target(DEFAULT_REGION, fault_proxy.url, 2.0, "autoscaling"), env,
                *backoff_clock())
    assert not hook.delivered and hook.error_code == "Redirect"
    assert elsewhere.received == []


# -- slow servers ---------------------------------------------------------------------------


@pytest.mark.parametrize("part", DRIP_PARTS)
def test_a_dripping_endpoint_ends_at_the_timeout_and_the_event_waits(
        bosky, env, consumer, fault_proxy, part) -> None:
    """One byte every two seconds held `bosky --pass --timeout 3` for more than 90 s."""
    fault_proxy.drip(part, interval=2.0)
    began = time.monotonic()
    done = bosky(["--pass", "--project", consumer.project, "--timeout", "3"],
                 env=via(fault_proxy, env), timeout=120)
    assert time.monotonic() - began < 3 + COMMAND_SLACK + SLACK  # README: --timeout + slack
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "timed out" in done.stderr and "spooled" in done.stderr
    (record,) = spooled(env)
    assert record.event.detail["Status"] == "pass"
    assert consumer.drain(settle=0.5) == []  # the drip forwarded nothing


def test_the_reporters_flush_window_ends_against_a_drip_and_frees_the_spool(
        bosky, env, consumer, fault_proxy) -> None:
    """The reporter's last act: flush_for its window. It must end and let `bosky flush` in."""
    spool = Spool(env["BOSKY_SPOOL_DIR"])
    event = make_event(source=consumer.project, detail_type="User Data", status="fail",
                       message="kept through a drip", identity={}, origin="boot")
    spool.put(event, DEFAULT_REGION, fault_proxy.url, "not sent yet")
    fault_proxy.drip("body", interval=2.0)
    window = 4.0
    done = threading.Event()

    def reporter() -> None:
        flush_for(spool, {**env, "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url}, window, 3.0,
                  fault_proxy.url)
        done.set()

    threading.Thread(target=reporter, daemon=True).start()
    assert done.wait(window + COMMAND_SLACK + SLACK), "the flush window did not end"
    assert len(spooled(env)) == 1

    fault_proxy.restore()
    flushed = bosky(["flush"], env=via(fault_proxy, env))
    assert flushed.returncode == 0, flushed.stderr  # not "another bosky is flushing"
    (got,) = arrived(consumer, 1)
    assert got["detail"]["EventId"] == event.event_id


def test_an_endpoint_named_by_host_name_is_resolved_within_the_deadline(fault_proxy,
                                                                         env) -> None:
    """A name is resolved aside (getaddrinfo has no timeout); every address is tried in turn."""
    named = fault_proxy.url.replace("127.0.0.1", "localhost")
    entry = {"Source": "bosky.test", "DetailType": "User Data", "Detail": "{}"}
    (sent,) = put_events([entry], Target(DEFAULT_REGION, named, budget=10.0), env)
    assert sent.delivered, sent.reason()
    fault_proxy.drip("chunks", interval=2.0)
    (dripped,) = put_events([entry], Target(DEFAULT_REGION, named, budget=2.0), env)
    assert not dripped.delivered and "deadline" in dripped.reason()


@pytest.mark.parametrize("part", DRIP_PARTS)
def test_a_stack_signal_to_a_dripping_endpoint_ends_at_its_budget(fault_proxy, env,
                                                                   part) -> None:
    """The Query calls (the hook's completion, the stack's signal) share the attempt."""
    fault_proxy.drip(part, interval=2.0)
    target = Target(DEFAULT_REGION, fault_proxy.url, 2.0, "cloudformation")
    signal = call("SignalResource", {"StackName": "web", "LogicalResourceId": "Group",
                                     "UniqueId": "i-1", "Status": "SUCCESS"}, target, env)
    assert not signal.delivered and signal.retryable
    assert "deadline" in signal.reason()
    assert fault_proxy.requests[0].action == "SignalResource"


def test_the_event_and_its_actions_share_one_timeout(bosky, env, consumer, fault_proxy,
                                                     tmp_path) -> None:
    """`--pass --continue --signal --timeout 20` against a drip took 3 x 20 s: one each.

    Now the actions get what the event left of --timeout; what gets nothing
    waits in the spool, untried, as the event does.
    """
    fault_proxy.drip("body", interval=2.0)
    config = tmp_path / "bosky.yaml"
    config.write_text("lifecycle_hook: {name: boot-check, group: web-asg}\n"
                      "cfn_signal: {stack: web-stack, resource: WebGroup}\n")
    acting = {**via(fault_proxy, env), "AWS_ENDPOINT_URL_AUTO_SCALING": fault_proxy.url,
              "AWS_ENDPOINT_URL_CLOUDFORMATION": fault_proxy.url, "BOSKY_CONFIG": str(config)}
    began = time.monotonic()
    done = bosky(["--pass", "deployed", "--continue", "--signal", "--instance-id",
                  "i-0a1b2c3d4e5f60718", "--project", consumer.project, "--timeout", "20"],
                 env=acting, timeout=180)
    assert time.monotonic() - began < 20 + COMMAND_SLACK + SLACK  # README: one --timeout
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no time left of the budget (--timeout); spooled" in done.stderr
    assert len(spooled(env)) == 3  # the event, the hook's completion, the stack's signal


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=st.one_of(
    st.binary(max_size=200),
    st.builds(lambda status, rest: f"HTTP/1.1 {status} X\r\n".encode() + rest,
              st.integers(100, 999), st.binary(max_size=120)),
))
def test_garbage_answers_are_failed_attempts_never_escapes(fault_proxy, env, answer) -> None:
    fault_proxy.reset()
    fault_proxy.garbage(answer, times=None)
    target = Target(DEFAULT_REGION, fault_proxy.url, budget=2.0)
    (outcome,) = put_events([{"Source": "s", "DetailType": "d", "Detail": "{}"}], target, env,
                            *backoff_clock())
    assert not outcome.delivered
    assert outcome.error_code and "\n" not in outcome.reason()


# -- IMDS -----------------------------------------------------------------------------------


@pytest.fixture
def hostile_imds(imds: Any) -> Iterator[FaultProxy]:
    """The IMDS emulator behind the fault proxy: the metadata service turned slow or hostile."""
    with FaultProxy(imds.url) as proxy:
        yield proxy


def on_ec2(env: Mapping[str, str], imds_url: str) -> Dict[str, str]:
    """An instance whose only credentials and identity are IMDS's (no cloud-init record)."""
    base = {k: v for k, v in env.items()
            if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    return {**base, "AWS_EC2_METADATA_DISABLED": "false",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_url}


@pytest.mark.parametrize("fault", [*DRIP_PARTS, "redirect"])
def test_an_imds_that_drips_or_redirects_is_no_identity_within_its_deadline(
        hostile_imds, elsewhere, fault) -> None:
    if fault == "redirect":
        hostile_imds.redirect(elsewhere.url, status=307)
    else:  # a byte every half second: each read is inside the 1 s socket timeout
        hostile_imds.drip(fault, interval=0.5, forward=True)
    found: List[identity.Identity] = []
    lookup = threading.Thread(target=lambda: found.append(
        identity.from_imds({"AWS_EC2_METADATA_SERVICE_ENDPOINT": hostile_imds.url})),
        daemon=True)
    lookup.start()
    lookup.join(2 * identity.IMDS_TIMEOUT + SLACK)  # README: two requests, 1 s each
    assert found == [identity.Identity()]
    assert elsewhere.received == []  # the IMDS token went nowhere else


def test_a_dripping_imds_does_not_hold_the_command(bosky, env, consumer, hostile_imds) -> None:
    """Identity and credentials both come from IMDS here, and both drip."""
    hostile_imds.drip("body", interval=0.5, forward=True)
    began = time.monotonic()
    done = bosky(["--fail", "imds drips", "--project", consumer.project, "--timeout", "3"],
                 env=on_ec2(env, hostile_imds.url), timeout=120)
    assert time.monotonic() - began < 3 + COMMAND_SLACK + SLACK  # README: --timeout + slack
    assert done.returncode == 1
    assert_one_line(done.stderr)
    assert "spooled" in done.stderr
    (record,) = spooled(env)
    assert record.event.detail["Message"] == "imds drips"


def test_the_event_is_spooled_before_imds_is_asked(env, consumer, hostile_imds) -> None:
    """A bosky killed while IMDS hangs (the instance shut down, a watchdog) loses nothing."""
    hostile_imds.hang()
    proc = start_bosky(["--fail", "before imds", "--project", consumer.project],
                       on_ec2(env, hostile_imds.url))
    try:
        wait_for(lambda: hostile_imds.requests, 30, "bosky to ask IMDS")
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()
    (record,) = spooled(env)
    assert record.event.detail["Message"] == "before imds"


def test_the_reporter_asks_imds_while_the_boot_runs_and_spools_its_verdict_without_it(
        env, consumer, hostile_imds, tmp_path) -> None:
    """cloud-init named no instance: IMDS is asked once, after the init stage, never between
    the verdict and its spool (the instance id is part of the verdict's EventId, so the
    reporter cannot spool first and ask later as the command does)."""
    from cc_bosky import config
    from cc_bosky.boot import state, verdict
    from cc_bosky.boot.reporter import Reporter

    run = tmp_path / "cloud-run"
    run.mkdir()
    (run / "instance-data.json").write_text("{}")
    state.ensure_run_dir(str(tmp_path / "run"))  # as the launcher leaves it
    settings = config.Settings(project=consumer.project, region=DEFAULT_REGION,
                               endpoint_url=env["AWS_ENDPOINT_URL_EVENTS"],
                               run_dir=str(tmp_path / "run"), spool_dir=env["BOSKY_SPOOL_DIR"],
                               log_lines=0, send_timeout=10.0)
    reporter = Reporter(settings, {"cloud_run_dir": str(run)},
                        {**env, "AWS_EC2_METADATA_DISABLED": "false",
                         "AWS_EC2_METADATA_SERVICE_ENDPOINT": hostile_imds.url})
    reporter.prepare(verdict.read_records(str(run)))  # cloud-init's init stage is done
    asked = len(hostile_imds.requests)
    assert asked  # cloud-init named no instance: IMDS did
    hostile_imds.hang()
    reporter.report("final", verdict.Verdict("pass", "booted", {}))
    assert len(hostile_imds.requests) == asked  # the verdict waited on nothing
    (got,) = arrived(consumer, 1)
    assert got["detail"]["InstanceId"], got["detail"]


# -- bosky fleet: botocore's client ---------------------------------------------------------


@pytest.mark.parametrize("status", REDIRECTS)
def test_fleet_does_not_follow_a_redirect_of_cloudwatch_logs(role_env, fault_proxy, elsewhere,
                                                              status) -> None:
    """botocore hands urllib3 retries=Retry(False): a 3xx comes back as an error, unfollowed."""
    fault_proxy.redirect(elsewhere.url, status=status)
    proc = run_bosky(["fleet", "--log-group", "/aws/events/bosky/web", "--endpoint-url",
                      fault_proxy.url, "--timeout", "20"], env=role_env, timeout=120)
    assert proc.returncode == 1
    assert_one_line(proc.stderr)
    # urllib3 2.x trips over botocore's bytes headers preparing a 303's GET,
    # before any redirect is decided: an unhelpful error, but still nothing sent on.
    assert str(status) in proc.stderr or status == 303, proc.stderr
    assert fault_proxy.requests and elsewhere.received == []


@pytest.mark.parametrize("engine", ["scan", "insights"])
@pytest.mark.parametrize("part", DRIP_PARTS)
def test_a_dripping_cloudwatch_logs_does_not_hold_fleet_past_its_timeout(role_env, fault_proxy,
                                                                          engine, part) -> None:
    """botocore's read timeout bounds each read: one byte every 2 s held `bosky fleet` for minutes.

    Each botocore call (FilterLogEvents; StartQuery, GetQueryResults) is now
    waited for with what is left of --timeout.
    """
    fault_proxy.drip(part, interval=2.0)
    began = time.monotonic()
    proc = run_bosky(["fleet", "--log-group", "/aws/events/bosky/web", "--endpoint-url",
                      fault_proxy.url, "--engine", engine, "--timeout", "3"],
                     env=role_env, timeout=180)
    assert time.monotonic() - began < 3 + COMMAND_SLACK + SLACK  # README: --timeout + slack
    assert proc.returncode == 1
    assert_one_line(proc.stderr)
    assert "took longer than --timeout 3 s" in proc.stderr
    assert fault_proxy.requests  # it did reach the endpoint
