"""bosky on whole-machine boots: a kernel, systemd as PID 1, Debian's own cloud-init,
and one image of Ubuntu 24.04's cloud-init on a Debian userland (tests/vm/image.py).

Each test is something a platform engineer lives through with a golden AMI,
and asserts on what the consumer's queue receives. The first scenario boots
every suite; the scenarios that need several boots run on one or two suites
(see README's "Tested on" table), to keep CI inside its time.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.conftest import assert_valid_event
from tests.support.emulator import EventBridgeEmulator
from tests.support.faultproxy import FaultProxy
from tests.vm.conftest import InstanceFactory
from tests.vm.image import SUITES, UBUNTU_ON_DEBIAN

pytestmark = [pytest.mark.vm, pytest.mark.slow]

ALL_SUITES = list(SUITES)
#: Where the reboot is also booted (scenario 2).
REBOOT_SUITES = ("trixie",)

FAILING_SCRIPT = b"""#!/bin/bash
echo "fetching s3://releases/app-1.4.2.tar.gz"
echo "download failed: HTTP 404 Not Found" >&2
exit 1
"""


def details(events: list[dict[str, Any]], validator: Any) -> list[dict[str, Any]]:
    return [assert_valid_event(e, validator) for e in events]


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_golden_ami_reports_a_failing_user_data_script(
        suite: str, instance: InstanceFactory, detail_validator: Any) -> None:
    """Scenario 1 (and, on REBOOT_SUITES, scenario 2): the image carries the stanza
    in cloud.cfg.d; user data is a script that fails. One `fail` arrives naming
    the module, with the identity cloud-init's Ec2 datasource read."""
    vm = instance(suite, user_data=FAILING_SCRIPT)
    vm.machine.boot()
    events = details(vm.events(1), detail_validator)
    report = vm.machine.wait_report()

    assert [d["Status"] for d in events] == ["fail"], events
    fail = events[0]
    assert fail["FailedModules"] == ["scripts_user"]
    assert "Runparts: 1 failures" in fail["Errors"][0]
    meta = vm.imds.metadata
    assert (fail["InstanceId"], fail["AccountId"], fail["Region"], fail["AvailabilityZone"],
            fail["InstanceType"], fail["ImageId"]) == (
        meta.instance_id, meta.account_id, "us-east-1", "us-east-1a", meta.instance_type,
        meta.image_id)
    assert fail["CloudInitVersion"] == SUITES[suite].cloud_init
    assert fail["Datasource"].startswith("DataSourceEc2")
    assert fail["FirstBoot"] is True
    assert fail["BootId"] == report.boot_id
    assert "download failed: HTTP 404 Not Found" in fail["LogTail"]
    # bosky's own time inside cloud-init is in cloud-init's log, stage by stage.
    assert re.search(r"finish: modules-final/config-bosky: SUCCESS", report["cloud-init-log-bosky"])
    assert not report["reporters"].strip(), "the reporter should have exited after delivering"

    if suite not in REBOOT_SUITES:
        return
    # Scenario 2: a reboot of the same disk. Scripts do not re-run: a new `pass`.
    vm.machine.shutdown()
    vm.machine.boot()
    again = details(vm.events(1), detail_validator)
    second = vm.machine.wait_report()
    assert [d["Status"] for d in again] == ["pass"], again
    assert again[0]["FirstBoot"] is False
    assert again[0]["BootId"] == second.boot_id != report.boot_id
    assert again[0]["EventId"] != fail["EventId"]


HANG_USER_DATA = b"""#cloud-config
bosky:
  project: bosky-vm
  deadline: 60
bootcmd:
  - [sh, -c, "echo the init stage fails here; exit 3"]
runcmd:
  - [sleep, "150"]
"""


def _seconds(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("suite", ["bullseye", "bookworm", UBUNTU_ON_DEBIAN])
def test_init_stage_failure_then_hang_still_gets_its_timeout(
        suite: str, instance: InstanceFactory, detail_validator: Any) -> None:
    """Scenario 3: a failing bootcmd makes cloud-init.service fail (20.4.1, 22.4.2
    and Ubuntu's 26.1, whose no-single-process.patch keeps the four units, leave
    systemd's KillMode=control-group there), then a runcmd hangs past the
    deadline. The `timeout` leaves during the hang, the verdict after it."""
    vm = instance(suite, user_data=HANG_USER_DATA, golden=False)
    vm.machine.boot()
    events = details(vm.events(2), detail_validator)
    report = vm.machine.wait_report()

    assert [d["Status"] for d in events] == ["timeout", "fail"], events
    timeout, final = events
    assert timeout["Deadline"] == 60
    assert "bootcmd" in final["FailedModules"]
    # The stage's unit did fail, so systemd did clean up its cgroup...
    assert re.search(r"Result=exit-code[^\n]*Id=cloud-init\.service", report["units"])
    # ...and the timeout still left at the deadline, while runcmd was sleeping
    # its 150 s, not when the final stage woke a new reporter after the hang.
    assert _seconds(final["Time"]) - _seconds(timeout["Time"]) > 60
    # The init stage only wrote a request: bosky-reporter.path (bosky install
    # enabled it in the image) had systemd start the reporter in its own unit.
    assert "reporter started by bosky-reporter.path" in report["cloud-init-log-bosky"]
    path_unit = next(line for line in report["units"].splitlines()
                     if "Id=bosky-reporter.path" in line)
    assert "ActiveState=active" in path_unit and "UnitFileState=enabled" in path_unit


STANZA_USER_DATA = b"#cloud-config\nbosky:\n  project: bosky-vm\n"


@pytest.mark.parametrize("suite", ["trixie", "sid"])
def test_stanza_in_user_data_degrades_cloud_init_status_not_the_verdict(
        suite: str, instance: InstanceFactory, detail_validator: Any) -> None:
    """Scenario 5: cloud-init 23.4+ counts its schema warning about the unknown
    `bosky` key as a recoverable error; bosky knows its own key and says pass."""
    vm = instance(suite, user_data=STANZA_USER_DATA, golden=False)
    vm.machine.boot()
    events = details(vm.events(1), detail_validator)
    report = vm.machine.wait_report()

    assert [d["Status"] for d in events] == ["pass"], events
    assert "degraded" in report["cloud-init-status"]
    assert "exit 2" in report["cloud-init-status"]
    assert "RecoverableErrors" not in events[0]


def test_without_a_stanza_nothing_is_sent_and_no_reporter_is_left(
        instance: InstanceFactory) -> None:
    """Scenario 6, on 20.4.1 (which ignores activate_by_schema_keys, so the module
    itself must notice): bosky is registered but not configured."""
    vm = instance("bullseye", user_data=b"#cloud-config\nruncmd:\n  - [echo, no stanza here]\n",
                  golden=False)
    vm.machine.boot()
    report = vm.machine.wait_report()

    assert vm.consumer.drain(settle=10.0) == []
    assert not report["reporters"].strip()
    assert "no 'bosky' key" in report["cloud-init-log-bosky"]
    assert "status: done" in report["cloud-init-status"]


POWER_CUT_SCRIPT = b"""#!/bin/bash
# A deploy step reports its own failure; the boot goes on meanwhile.
setsid bosky --fail "schema migration 42 failed" </dev/null >/dev/null 2>&1 &
exit 0
"""


def test_power_cut_mid_send_loses_neither_the_command_event_nor_the_verdict(
        instance: InstanceFactory, eventbridge: EventBridgeEmulator,
        detail_validator: Any) -> None:
    """Scenario 4: the endpoint accepts connections but never answers. Once both
    the command's event and the boot's verdict are on their way (each only in
    its spool copy written just before the send), qemu is SIGKILLed: no
    shutdown, no sync. The same disk boots with the endpoint up: both arrive
    once, under their original EventIds, and so does the new boot's verdict."""
    with FaultProxy(eventbridge.url) as proxy:
        proxy.hang()
        vm = instance("bookworm", user_data=POWER_CUT_SCRIPT,
                      endpoint_port=int(proxy.url.rsplit(":", 1)[1]))
        vm.machine.boot()

        def in_flight() -> dict[str, str]:
            sent = [json.loads(e["Detail"]) for r in proxy.requests for e in r.entries]
            return {d["Origin"]: d["EventId"] for d in sent}

        vm.machine.wait_for(lambda: {"boot", "command"} <= set(in_flight()),
                            "the command's event and the verdict at the endpoint")
        cut = in_flight()
        vm.machine.kill()
        cut_at = time.time()
        # For the record (README, fsync decision): how old each copy was at the cut.
        arrived = {json.loads(e["Detail"])["Origin"]: r.at for r in proxy.requests
                   for e in r.entries}
        (vm.machine.workdir / "cut.json").write_text(json.dumps(
            {origin: round(cut_at - at, 2) for origin, at in arrived.items()}))
        proxy.restore()

        vm.machine.boot()
        events = details(vm.events(3), detail_validator)
    ids = [d["EventId"] for d in events]
    assert sorted(ids) == sorted(set(ids)), "each event exactly once"
    by_id = {d["EventId"]: d for d in events}
    assert by_id[cut["command"]]["Status"] == "fail"
    assert by_id[cut["command"]]["Message"] == "schema migration 42 failed"
    assert by_id[cut["boot"]]["FirstBoot"] is True
    newer = [d for i, d in by_id.items() if i not in cut.values()]
    assert [(d["Status"], d["FirstBoot"]) for d in newer] == [("pass", False)]
