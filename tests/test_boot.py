"""Boots of real cloud-init releases, each reporting its own verdict.

Every test boots a Debian-packaged cloud-init (20.4.1, 22.4.2, 25.1.4, 26.2)
through all four stages with cloud-init's Ec2 datasource reading the metadata
emulator; the reporter gets the instance role's credentials from that
emulator too, and the assertion is on what a consumer's queue receives.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, Dict, List

import pytest

from tests.conftest import assert_valid_event
from tests.support.bounds import ARRIVAL

pytestmark = [pytest.mark.cloudinit]



@pytest.fixture
def fleet(instance: Callable[..., Any], imds: Any, eventbridge: Any) -> Callable[..., Any]:
    """Instances in the consumer's region whose only AWS settings are what an
    EC2 instance has: the metadata service (identity and role credentials)."""
    imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1")

    def make(**kwargs: Any) -> Any:
        env = {"AWS_ENDPOINT_URL_EVENTS": eventbridge.url,
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
        return instance(env=env, **kwargs)

    return make


def stanza(consumer: Any, **extra: Any) -> str:
    lines = [f"  project: {consumer.project}", "  flush_window: 10"]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    return "bosky:\n" + "\n".join(lines) + "\n"


def multipart(*parts: tuple) -> str:  # type: ignore[type-arg]
    out = ['Content-Type: multipart/mixed; boundary="BOSKY"', "MIME-Version: 1.0", ""]
    for content_type, body in parts:
        out += ["--BOSKY", f"Content-Type: {content_type}", "", body]
    out.append("--BOSKY--")
    return "\n".join(out) + "\n"


def verdicts(consumer: Any, expected: int = 1) -> List[Dict[str, Any]]:
    events = consumer.receive(expected=expected, timeout=ARRIVAL) + consumer.drain(settle=1.0)
    return events


def only_verdict(consumer: Any, validator: Any) -> Dict[str, Any]:
    events = verdicts(consumer)
    assert len(events) == 1, [e["detail"]["Status"] for e in events]
    assert events[0]["detail-type"] == "User Data"
    return assert_valid_event(events[0], validator)


def assert_quick(boot: Any) -> None:
    """cloud-init's log times bosky in each stage it runs in (start:/finish: lines).

    Not compared with the 20 ms budget here: on a shared machine a timed
    assertion flakes. benchmarks/boot.py measures it against the budget.
    """
    timings = boot.module_timings()
    assert set(timings) == {"init-network", "modules-final"}, timings
    assert all(0 <= t < 5 for t in timings.values()), timings


@pytest.mark.every_build
def test_failing_user_data_script_reports_fail_naming_scripts_user(fleet, consumer,
                                                                   detail_validator) -> None:
    inst = fleet()
    user_data = multipart(
        ("text/cloud-config", "#cloud-config\n" + stanza(consumer)),
        ("text/x-shellscript", "#!/bin/bash\necho 'fetching artifact'\necho 'HTTP 404' >&2\n"
                               "exit 1\n"),
    )
    boot = inst.boot(user_data=user_data, wait_reporter=60)
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "fail"
    assert detail["FailedModules"] == ["scripts_user"]
    assert any("scripts_user" in e for e in detail["Errors"])
    assert "fetching artifact" in detail["LogTail"] and "HTTP 404" in detail["LogTail"]
    assert detail["InstanceId"] == inst.imds.metadata.instance_id
    assert detail["CloudInitVersion"].startswith(inst.release.version)
    assert set(detail["Stages"]) == {"init-local", "init", "modules-config", "modules-final"}
    assert detail["FirstBoot"] is True
    assert_quick(boot)


def test_plain_script_with_the_stanza_baked_into_the_image(fleet, consumer,
                                                           detail_validator) -> None:
    """The golden-AMI case: config under /etc/cloud/cloud.cfg.d, user data untouched."""
    inst = fleet()
    boot = inst.boot(user_data="#!/bin/bash\necho deployed\n",
                     cloud_cfg_d={"90_bosky.cfg": stanza(consumer)}, wait_reporter=60)
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "pass", detail
    assert detail["Message"] == "cloud-init finished with no errors"
    assert "deployed" in detail["LogTail"]
    assert_quick(boot)


@pytest.mark.every_build
def test_clean_boot_with_the_stanza_in_user_data_is_pass_not_degraded(fleet, consumer,
                                                                      detail_validator) -> None:
    """cloud-init 23.4+ warns about the unknown `bosky` key; that alone is no degradation."""
    inst = fleet()
    boot = inst.boot(user_data="#cloud-config\n" + stanza(consumer), wait_reporter=60)
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "pass", detail.get("RecoverableErrors")
    assert "RecoverableErrors" not in detail
    assert_quick(boot)


def test_failing_runcmd_reports_fail(fleet, consumer, detail_validator) -> None:
    inst = fleet()
    inst.boot(user_data="#cloud-config\n" + stanza(consumer)
              + "runcmd:\n  - echo before\n  - [sh, -c, 'echo broken >&2; exit 3']\n",
              wait_reporter=60)
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "fail"
    assert "scripts_user" in detail["FailedModules"]


def test_multipart_cloud_config_and_script_pass(fleet, consumer, detail_validator) -> None:
    inst = fleet()
    inst.boot(user_data=multipart(
        ("text/cloud-config", "#cloud-config\n" + stanza(consumer)),
        ("text/x-shellscript", "#!/bin/sh\necho 'multipart script ran'\n"),
    ), wait_reporter=60)
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "pass"
    assert "multipart script ran" in detail["LogTail"]


@pytest.mark.every_build
def test_hanging_script_reports_timeout_then_the_final_verdict(fleet, consumer,
                                                                detail_validator) -> None:
    """A script stuck past the deadline: `timeout` while it hangs, the verdict when it ends.

    The script hangs until bosky has recorded its timeout (at most a minute),
    so the scenario holds however slow the machine is.
    """
    inst = fleet()
    inst.boot(user_data=multipart(
        ("text/cloud-config", "#cloud-config\n" + stanza(consumer, deadline=3)),
        ("text/x-shellscript", "#!/bin/sh\necho 'waiting for the database'\n"
                               "for i in $(seq 600); do [ -e /run/bosky/sent/timeout ] && exit 0;"
                               " sleep 0.1; done\nexit 1\n"),
    ), wait_reporter=90)
    events = verdicts(consumer, expected=2)
    statuses = [e["detail"]["Status"] for e in events]
    assert statuses == ["timeout", "pass"], statuses
    timeout = assert_valid_event(events[0], detail_validator)
    assert timeout["Deadline"] == 3 and timeout["Elapsed"] >= 3
    assert timeout.get("CurrentStage", "modules-final") in (
        "init-local", "init", "modules-config", "modules-final")
    assert "Stages" in timeout
    assert events[0]["detail"]["EventId"] != events[1]["detail"]["EventId"]


def test_invalid_stanza_leaves_the_boot_running_with_one_warning(fleet, consumer,
                                                                 detail_validator) -> None:
    inst = fleet()
    boot = inst.boot(user_data="#cloud-config\n" + stanza(consumer, log_lines="lots",
                                                          colour="blue")
                     + "runcmd:\n  - echo still booting\n", wait_reporter=60)
    warnings = [ln for ln in boot.cloud_init_log.splitlines()
                if "bosky: ignoring invalid configuration" in ln]
    assert len(warnings) == 1, warnings
    assert "log_lines" in warnings[0] and "colour: unknown key" in warnings[0]
    assert "still booting" in boot.output_log
    detail = only_verdict(consumer, detail_validator)  # still reported, with what was valid
    assert any("log_lines" in w for w in detail["ConfigWarnings"])
    # bosky's complaints (its WARNING, cloud-init's schema warning about the
    # stanza) are not the boot's, even where cloud-init counts warnings (23.4+)
    assert detail["Status"] == "pass", detail.get("RecoverableErrors")
    assert "RecoverableErrors" not in detail


def recorded_warnings(boot: Any) -> List[str]:
    """The WARNINGs cloud-init 23.4+ recorded as recoverable errors, all stages."""
    stages = ((boot.status or {}).get("v1") or {}).values()
    return [w for stage in stages if isinstance(stage, dict)
            for w in (stage.get("recoverable_errors") or {}).get("WARNING", [])]


def test_a_misspelt_key_in_the_image_stanza_warns_once_and_the_boot_still_passes(
        fleet, consumer, detail_validator) -> None:
    """The golden-AMI stanza with a typo: one WARNING from bosky, and the boot passes."""
    inst = fleet()
    boot = inst.boot(user_data="#!/bin/bash\necho deployed\n",
                     cloud_cfg_d={"90_bosky.cfg": stanza(consumer, deadlin=60)}, wait_reporter=60)
    # (22.x also warns, without counting it, about the unknown key in cloud.cfg.d)
    warnings = [ln for ln in boot.cloud_init_log.splitlines() if "[WARNING]: bosky: " in ln]
    assert len(warnings) == 1 and "bosky: deadlin: unknown key; did you mean 'deadline'?" \
        in warnings[0], warnings
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "pass", detail.get("RecoverableErrors")
    assert detail["ConfigWarnings"] == ["bosky: deadlin: unknown key; did you mean 'deadline'?"]
    assert "RecoverableErrors" not in detail
    if boot.release.at_least("23.4"):  # cloud-init counts it: `cloud-init status` is degraded
        assert [w for w in recorded_warnings(boot) if "deadlin" in w], recorded_warnings(boot)


@pytest.mark.every_build
def test_a_schema_problem_beside_the_stanza_is_the_boots_own(fleet, consumer,
                                                             detail_validator) -> None:
    """Only bosky's complaints are left out: a misspelt key of cloud-init's degrades (23.4+)."""
    inst = fleet()
    boot = inst.boot(user_data="#cloud-config\n" + stanza(consumer)
                     + "runcmdd:\n  - echo misspelt\n", wait_reporter=60)
    detail = only_verdict(consumer, detail_validator)
    if boot.release.at_least("23.4"):
        assert detail["Status"] == "degraded", detail
        assert [w for w in detail["RecoverableErrors"]["WARNING"] if "schema" in w]
    else:  # no recoverable errors before 23.4
        assert detail["Status"] == "pass", detail


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.harness.releases import REPO_ROOT, build_wheel

    return build_wheel(REPO_ROOT, tmp_path_factory.mktemp("wheel"))


def test_the_wheel_installed_as_users_install_it_reports_the_boot(
        fleet, consumer, detail_validator, cloudinit_release, wheel, tmp_path) -> None:
    """pip-installed into the release's Python, listed in the final stage only, no checkout."""
    from tests.harness.releases import with_installed_wheel

    installed = with_installed_wheel(cloudinit_release, wheel, tmp_path / "python")
    inst = fleet(release=installed)
    boot = inst.boot(user_data="#!/bin/bash\necho deployed\n",
                     cloud_cfg_d={"90_bosky.cfg": stanza(consumer)},
                     init_modules=["bootcmd"], final_modules=["scripts_user", "bosky"],
                     wait_reporter=60)
    (loaded,) = {ln.split("from '", 1)[1].split("'", 1)[0]
                 for ln in boot.cloud_init_log.splitlines() if "Running module bosky" in ln}
    assert loaded.startswith(str(tmp_path / "python")), loaded
    assert only_verdict(consumer, detail_validator)["Status"] == "pass"


@pytest.mark.every_build
def test_listed_twice_and_in_both_stages_reports_once(fleet, consumer,
                                                      detail_validator) -> None:
    inst = fleet()
    inst.boot(user_data="#cloud-config\n" + stanza(consumer),
              init_modules=["bosky", "bosky"],
              final_modules=["scripts_user", "bosky", "final_message", "bosky"],
              wait_reporter=60)
    assert only_verdict(consumer, detail_validator)["Status"] == "pass"


def test_final_stage_listing_alone_is_enough(fleet, consumer, detail_validator) -> None:
    inst = fleet()
    inst.boot(user_data=multipart(
        ("text/cloud-config", "#cloud-config\n" + stanza(consumer)),
        ("text/x-shellscript", "#!/bin/sh\nexit 7\n"),
    ), init_modules=["bootcmd"], final_modules=["scripts_user", "bosky"], wait_reporter=60)
    assert only_verdict(consumer, detail_validator)["Status"] == "fail"


def test_each_boot_reports_and_only_the_first_is_first(fleet, consumer,
                                                       detail_validator) -> None:
    inst = fleet()
    inst.boot(user_data="#cloud-config\n" + stanza(consumer), wait_reporter=60)
    inst.boot(wait_reporter=60)
    events = verdicts(consumer, expected=2)
    assert [e["detail"]["FirstBoot"] for e in events] == [True, False]
    assert len({e["detail"]["EventId"] for e in events}) == 2


def test_no_deprecation_warning_for_the_handler(fleet, consumer) -> None:
    inst = fleet()
    boot = inst.boot(user_data="#cloud-config\n" + stanza(consumer), wait_reporter=60)
    assert not re.search(r"log. parameter|deprecat.*bosky", boot.cloud_init_log, re.I)
    assert "config-bosky ran successfully" in boot.cloud_init_log or \
        re.search(r"finish: .*config-bosky: SUCCESS", boot.cloud_init_log)


def test_no_stanza_means_no_event_and_no_reporter(fleet, consumer) -> None:
    inst = fleet()
    boot = inst.boot(user_data="#!/bin/sh\necho hi\n", wait_reporter=10)
    assert consumer.drain(settle=2.0) == []
    assert not (boot.paths.run_bosky / "reporter.lock").exists()


def test_cloud_init_killed_mid_boot_reports_fail(fleet, consumer, detail_validator) -> None:
    """The OOM killer or an operator ends cloud-init: no result.json, still a verdict."""
    inst = fleet()
    boot = inst.boot(user_data=multipart(
        ("text/cloud-config", "#cloud-config\n" + stanza(consumer)),
        ("text/x-shellscript", "#!/bin/sh\necho 'pulling 4 GB image'\n"
                               "pkill -9 -f 'cloudinit.cmd.main modules --mode=final'\n"),
    ), wait_reporter=90)
    assert boot.result is None  # cloud-init never wrote it
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "fail"
    assert "without writing result.json" in detail["Message"]
    assert detail["CurrentStage"] == "modules-final"
    assert "pulling 4 GB image" in detail["LogTail"]


def test_nothing_is_left_running_after_the_verdict(fleet, consumer) -> None:
    inst = fleet()
    boot = inst.boot(user_data="#cloud-config\n" + stanza(consumer), wait_reporter=60)
    assert verdicts(consumer)
    assert boot.leftover_processes == []


def test_bosky_status_shows_the_boot_verdict(fleet, consumer, bosky, env) -> None:
    inst = fleet()
    boot = inst.boot(user_data="#cloud-config\n" + stanza(consumer), wait_reporter=60)
    (event,) = verdicts(consumer)
    shown = bosky(["status", "--json"], env={**env, "BOSKY_RUN_DIR": str(boot.paths.run_bosky),
                                             "BOSKY_SPOOL_DIR": str(boot.paths.var_lib_bosky
                                                                    / "spool")})
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["verdict"]["EventId"] == event["detail"]["EventId"]
    assert report["verdict"]["Sent"] is True
    assert report["reporter"] == "not running" and report["spool"]["events"] == []
