"""The alert e-mail: the consumer stack's input transformer over real events.

The transformer is rendered here the way EventBridge renders one: each
``<name>`` of the template replaced by the value at its InputPathsMap path
(dot notation), a string inserted as it is. Every path is checked against
real events of every status (made by bosky's own verdict code, and a command
event), and the text must stay under 2 KB, hostile events included.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_bosky.event import make_event
from tests.support.verdicts import boot_event
from tests.test_infra import CONSUMER, Resolver, load_template

LIMIT = 2048


def transformer() -> Dict[str, Any]:
    template = load_template(CONSUMER)
    rule = Resolver(template, {"ProjectName": "web"})(
        template["Resources"]["VerdictRule"]["Properties"])
    (target,) = [t for t in rule["Targets"] if t["Id"] == "alert-topic"]
    found: Dict[str, Any] = target["InputTransformer"]
    return found


def lookup(envelope: Dict[str, Any], path: str) -> Any:
    assert re.fullmatch(r"\$(\.[A-Za-z0-9_-]+)+", path), f"not dot notation: {path}"
    value: Any = envelope
    for part in path.split(".")[1:]:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def render(envelope: Dict[str, Any]) -> str:
    spec = transformer()
    text: str = spec["InputTemplate"]
    for name, path in spec["InputPathsMap"].items():
        value = lookup(envelope, path)
        assert isinstance(value, str), (path, value)  # each path finds a one-line string
        assert "\n" not in value
        text = text.replace(f"<{name}>", value)
    assert not re.search(r"<[a-z]+>", text), text
    return text


def envelope(event: Any) -> Dict[str, Any]:
    """The event as EventBridge hands it to a target."""
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": event.detail_type, "source": event.source,
            "account": "123456789012", "time": "2026-12-01T08:00:00Z", "region": "us-east-1",
            "resources": list(event.resources), "detail": event.detail}


def real_events() -> List[Any]:
    common = dict(image="ami-0bbbbbbbbbbbbbbb2", instance_type="t3.micro",
                  instance_id="i-0abc0000000000001", boot_seconds=41.5,
                  boot_id="1a7e0000-0000-4000-8000-000000000000")
    return [
        boot_event("web", "fail", failed="scripts_user",
                   log_tail=["fetching s3://releases/app.tar.gz",
                             "download failed: HTTP 404 Not Found"], **common),  # type: ignore[arg-type]
        boot_event("web", "pass", log_tail=["app started"], **common),  # type: ignore[arg-type]
        boot_event("web", "degraded", **common),  # type: ignore[arg-type]
        boot_event("web", "timeout", log_tail=["waiting for db"], **common),  # type: ignore[arg-type]
        make_event(source="web", detail_type="User Data", status="fail",
                   message="deploy step 3 failed", identity={}, origin="command"),
    ]


def test_the_first_line_says_it_all() -> None:
    text = render(envelope(real_events()[0]))
    lines = text.splitlines()
    assert lines[0] == ("bosky FAIL web i-0abc0000000000001 ami-0bbbbbbbbbbbbbbb2 t3.micro: "
                        "scripts_user failed")
    assert "Message: cloud-init recorded 1 error in scripts_user" in text
    assert "Failed modules: scripts_user" in text
    assert "Last log lines: fetching s3://releases/app.tar.gz | download failed: HTTP 404" in text
    assert ("Instance: https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1"
            "#InstanceDetails:instanceId=i-0abc0000000000001") in text


@pytest.mark.parametrize("index, first", [
    (1, "bosky PASS web i-0abc0000000000001 ami-0bbbbbbbbbbbbbbb2 t3.micro: "),
    (2, "bosky DEGRADED web "),
    (3, "bosky TIMEOUT web i-0abc0000000000001 "),
    (4, "bosky FAIL web - - -: deploy step 3 failed"),
])
def test_every_status_renders_short(index: int, first: str) -> None:
    text = render(envelope(real_events()[index]))
    assert text.startswith(first)
    assert len(text.encode()) < LIMIT


def test_the_whole_event_still_goes_to_the_queue_and_the_log_group() -> None:
    template = load_template(CONSUMER)
    resolve = Resolver(template, {"ProjectName": "web"})
    for rule in ("VerdictRule", "HistoryRule"):
        for target in resolve(template["Resources"][rule]["Properties"])["Targets"]:
            if target["Id"] != "alert-topic":
                assert "InputTransformer" not in target and "Input" not in target


wide = st.text(alphabet=st.characters(min_codepoint=0x10000, max_codepoint=0x1FFFF),
               min_size=1)
anything = st.text() | wide


@settings(max_examples=30, deadline=None)
@given(message=st.text(max_size=2000).map(lambda t: t * 30) | wide.map(lambda t: t * 500),
       tail=st.lists(anything.map(lambda t: t[:1000] * 3), max_size=50),
       modules=st.lists(anything.map(lambda t: t * 20), max_size=60),
       status=anything.map(lambda t: t[:256] * 40))
def test_hostile_events_still_render_under_2_kb(message: str, tail: List[str],
                                                modules: List[str], status: str) -> None:
    event = make_event(source="p" * 256, detail_type="User Data", status=status,
                       message=message, origin="boot",
                       identity={"InstanceId": "i-" + "f" * 17, "Region": "us-east-1",
                                 "ImageId": "ami-" + "0" * 17, "InstanceType": "m7g.16xlarge"},
                       extra={"FailedModules": modules, "LogTail": tail})
    assert len(render(envelope(event)).encode()) < LIMIT
