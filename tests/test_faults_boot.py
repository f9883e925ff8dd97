"""A boot's verdict survives an EventBridge that is not there: real cloud-init
releases booting with the endpoint refused behind the fault proxy.

- refused during the boot, back within the flush window: the verdict arrives
  during that same boot;
- refused for the whole boot: the verdict waits in the instance's spool (on
  its disk) and arrives at the next boot of the same instance, or when an
  operator runs ``bosky flush``.

Each ends at the consumer's queue, once per EventId. ``BOSKY_RELEASES``
selects the releases (all three by default).
"""

from __future__ import annotations

import collections
import json
from typing import Any, Dict, List, Mapping

import pytest

from cc_bosky.delivery.spool import Record, Spool
from tests.support.scenes import restored_after
from tests.test_spool import arrived, spool_report

pytestmark = [pytest.mark.cloudinit]

# Variables of the test environment that would make no sense inside the boot.
_HOST_ONLY = ("AWS_EC2_METADATA_DISABLED", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def boot_env(env: Mapping[str, str], endpoint: str) -> Dict[str, str]:
    """The instance's AWS settings: keys and region from the test, EventBridge via ``endpoint``."""
    inside = {k: v for k, v in env.items() if k.startswith("AWS_") and k not in _HOST_ONLY}
    inside["AWS_ENDPOINT_URL_EVENTS"] = endpoint
    return inside


def user_data(consumer: Any, **settings: Any) -> str:
    return "#cloud-config\nbosky: " + json.dumps({"project": consumer.project, **settings}) + "\n"


def instance_spool(inst: Any) -> Spool:
    """The instance's /var/lib/bosky/spool, seen from the host."""
    return Spool(str(inst.paths.var_lib_bosky / "spool"))


def kept(inst: Any) -> List[Record]:
    return instance_spool(inst).records()[0]


def test_verdict_arrives_once_the_endpoint_is_back_within_the_flush_window(
        instance, env, consumer, fault_proxy) -> None:
    fault_proxy.refuse()
    inst = instance(env=boot_env(env, fault_proxy.url))
    with restored_after(fault_proxy, lambda: any(r.attempts >= 1 for r in kept(inst)), 90,
                        "the reporter to spool the verdict and fail to send it"):
        boot = inst.boot(user_data=user_data(consumer, flush_window=60, send_timeout=3),
                         wait_reporter=120)
    (event,) = arrived(consumer, 1)
    detail = event["detail"]
    assert (detail["Status"], detail["Origin"]) == ("pass", "boot"), boot.describe()
    assert kept(inst) == []


@pytest.mark.parametrize("later", ["next boot", "bosky flush"])
def test_verdict_of_a_boot_without_endpoint_arrives_later(instance, env, consumer,
                                                          fault_proxy, bosky, later) -> None:
    fault_proxy.refuse()
    inst = instance(env=boot_env(env, fault_proxy.url))
    inst.boot(user_data=user_data(consumer, flush_window=2, send_timeout=2), wait_reporter=60)
    (waiting,) = kept(inst)
    assert waiting.event.status == "pass" and waiting.attempts >= 1
    operator = {**env, "BOSKY_SPOOL_DIR": instance_spool(inst).directory,
                "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url}
    report = spool_report(bosky, operator)
    assert [e["EventId"] for e in report["events"]] == [waiting.event.event_id]

    fault_proxy.restore()
    if later == "next boot":
        inst.boot(wait_reporter=60)
        copies = collections.Counter(e["detail"]["EventId"] for e in arrived(consumer, 2))
        assert copies[waiting.event.event_id] == 1  # the first boot's verdict, once
        assert len(copies) == 2 and set(copies.values()) == {1}  # and the second boot's own
    else:
        done = bosky(["flush"], env=operator)
        assert done.returncode == 0, done.stderr
        assert [e["detail"]["EventId"] for e in arrived(consumer, 1)] == [waiting.event.event_id]
    assert kept(inst) == []
