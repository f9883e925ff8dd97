"""Smoke tests of the cloud-init test harness itself (tests/harness).

They check that the harness boots each real release the way an EC2 instance
would, reports what cloud-init recorded, and leaves the host alone. bosky's
own behaviour is tested elsewhere; ``bosky`` in the default module lists may
not exist yet, which cloud-init only logs.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.harness.boot import BootError, BootResult, Instance, parse_module_timings
from tests.harness.imds import TOKEN_HEADER, TOKEN_TTL_HEADER, MetadataServer

STAGE_NAMES = ["init-local", "init", "modules-config", "modules-final"]
HOST_DIRS = [
    "/etc/cloud",
    "/var/lib/cloud",
    "/run/cloud-init",
    "/etc/bosky",
    "/var/lib/bosky",
    "/run/bosky",
]
SCRIPTS_USER_FAILURE = (
    "('scripts_user', RuntimeError('Runparts: 1 failures (part-001) in 1 attempted commands'))"
)

InstanceFactory = Callable[..., Instance]


# --------------------------------------------------------------------------- helpers


def _http(
    url: str, method: str = "GET", headers: Optional[dict[str, str]] = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _token(server: MetadataServer, ttl: str = "60") -> str:
    status, body = _http(f"{server.url}/latest/api/token", "PUT", {TOKEN_TTL_HEADER: ttl})
    assert status == 200
    return body.decode()


def _snapshot(directories: list[str]) -> dict[str, list[tuple[str, int, int]]]:
    """Recursive listing (path, size, mtime_ns) of each directory; missing == empty."""
    listing: dict[str, list[tuple[str, int, int]]] = {}
    for top in directories:
        entries: list[tuple[str, int, int]] = []
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                stat = os.lstat(path)
                entries.append((path, stat.st_size, stat.st_mtime_ns))
        listing[top] = sorted(entries)
    return listing


def _assert_clean(result: BootResult) -> None:
    assert result.exit_codes == dict.fromkeys(STAGE_NAMES, 0), result.describe()
    assert result.status is not None, result.describe()
    for stage in STAGE_NAMES:
        assert result.status["v1"][stage]["errors"] == [], result.describe()
        assert result.status["v1"][stage]["finished"] is not None
    assert result.result is not None, result.describe()
    assert result.errors == [], result.describe()


# --------------------------------------------------------------------------- emulator alone


def test_metadata_emulator_imdsv2_token_flow() -> None:
    with MetadataServer(instance_id="i-0123456789abcdef0", region="eu-north-1") as server:
        base = server.url
        assert base.startswith("http://127.0.0.1:")
        # IMDSv1 is refused: tokens are required
        assert _http(f"{base}/latest/meta-data/instance-id")[0] == 401
        # bad or missing TTL on the token PUT
        assert _http(f"{base}/latest/api/token", "PUT")[0] == 400
        assert _http(f"{base}/latest/api/token", "PUT", {TOKEN_TTL_HEADER: "21601"})[0] == 400
        token = _token(server)
        auth = {TOKEN_HEADER: token}
        assert _http(f"{base}/latest/meta-data/instance-id", headers=auth) == (
            200,
            b"i-0123456789abcdef0",
        )
        assert (
            _http(f"{base}/latest/meta-data/instance-id", headers={TOKEN_HEADER: "bogus"})[0] == 401
        )
        # dated API versions alias the same tree; unknown versions do not exist
        assert (
            _http(f"{base}/2016-09-02/meta-data/placement/region", headers=auth)[1] == b"eu-north-1"
        )
        assert _http(f"{base}/1999-01-01/meta-data/", headers=auth)[0] == 404
        # directory listings as the Ec2 crawler expects them
        status, listing = _http(f"{base}/latest/meta-data/", headers=auth)
        assert status == 200
        assert {"instance-id", "placement/", "iam/", "network/"} <= set(
            listing.decode().split("\n")
        )
        # a leaf asked for with a trailing slash (botocore does that)
        assert _http(f"{base}/latest/meta-data/placement/availability-zone/", headers=auth)[1] == (
            b"eu-north-1a"
        )
        # identity document and role credentials
        document = json.loads(
            _http(f"{base}/latest/dynamic/instance-identity/document", headers=auth)[1]
        )
        assert document["instanceId"] == "i-0123456789abcdef0"
        assert document["region"] == "eu-north-1"
        assert document["accountId"] == server.metadata.account_id
        role = _http(f"{base}/latest/meta-data/iam/security-credentials/", headers=auth)[1].decode()
        creds = json.loads(
            _http(f"{base}/latest/meta-data/iam/security-credentials/{role}", headers=auth)[1]
        )
        assert creds["Code"] == "Success"
        assert creds["AccessKeyId"] == server.metadata.credentials.access_key_id
        assert {"SecretAccessKey", "Token", "Expiration"} <= set(creds)
        # user data: 404 until there is some
        assert _http(f"{base}/latest/user-data", headers=auth)[0] == 404
        server.metadata.user_data = b"#!/bin/sh\necho hi\n"
        assert _http(f"{base}/latest/user-data", headers=auth) == (200, b"#!/bin/sh\necho hi\n")
        # revoked tokens stop working; injected failures answer as asked
        server.revoke_tokens()
        assert _http(f"{base}/latest/meta-data/instance-id", headers=auth)[0] == 401
        server.fail_paths["/latest/api/token"] = 503
        assert _http(f"{base}/latest/api/token", "PUT", {TOKEN_TTL_HEADER: "60"})[0] == 503
        # every request was logged
        assert server.paths("PUT")[0] == "/latest/api/token"
        assert len(server.requests) >= 15


def test_metadata_emulator_optional_tokens_serves_imdsv1() -> None:
    with MetadataServer(http_tokens="optional") as server:
        assert _http(f"{server.url}/latest/meta-data/instance-id")[0] == 200
        assert not server.requests[-1].had_token


def test_module_timings_parser_reads_all_release_formats() -> None:
    log = "\n".join(
        [
            # 20.4.1 and 22.4.2
            "2026-01-01 10:00:00,100 - handlers.py[DEBUG]: start: init-network/config-bosky: "
            "running config-bosky with frequency always",
            "2026-01-01 10:00:00,350 - handlers.py[DEBUG]: finish: init-network/config-bosky: "
            "SUCCESS: config-bosky ran successfully",
            # 25.1.4
            "2026-01-01 10:00:01,000 - handlers.py[DEBUG]: start: modules-final/config-bosky: "
            "running config-bosky with frequency always",
            "2026-01-01 10:00:01,020 - handlers.py[DEBUG]: finish: modules-final/config-bosky: "
            "SUCCESS: config-bosky ran successfully and took 0.019 seconds",
            "2026-01-01 10:00:01,030 - handlers.py[DEBUG]: start: modules-final/config-other: x",
        ]
    )
    timings = parse_module_timings(log, "bosky")
    assert set(timings) == {"init-network", "modules-final"}
    assert timings["init-network"].seconds == pytest.approx(0.25)
    assert timings["init-network"].reported_seconds is None
    assert timings["modules-final"].seconds == pytest.approx(0.02)
    assert timings["modules-final"].reported_seconds == pytest.approx(0.019)
    assert timings["modules-final"].result == "SUCCESS"


# --------------------------------------------------------------------------- real boots


def test_clean_boot(instance: InstanceFactory, imds: MetadataServer) -> None:
    before = _snapshot(HOST_DIRS)
    inst = instance()
    result = inst.boot(user_data="#!/bin/bash\necho BOSKY-SMOKE-MARKER-$((6 * 7))\n")

    _assert_clean(result)
    assert "BOSKY-SMOKE-MARKER-42" in result.output_log
    assert f"Cloud-init v. {result.release.version}" in result.output_log
    data = result.instance_data
    assert data is not None
    assert data["v1"]["instance_id"] == imds.metadata.instance_id
    assert data["v1"]["region"] == imds.metadata.region
    assert data["v1"]["availability_zone"] == imds.metadata.zone
    assert data["v1"]["cloud_name"] == "aws"
    # cloud-init identified AWS and used IMDSv2: a token first, then only token GETs
    assert imds.paths("PUT")[0] == "/latest/api/token"
    assert all(r.had_token for r in imds.requests if r.method == "GET")
    assert not [r for r in imds.requests if r.status == 401]
    # the host's own cloud-init directories did not change
    assert _snapshot(HOST_DIRS) == before


def test_failing_user_script_is_an_error_of_scripts_user(instance: InstanceFactory) -> None:
    result = instance().boot(user_data="#!/bin/bash\necho about to fail\nexit 1\n")

    assert result.exit_codes["modules-final"] == 1, result.describe()
    assert result.exit_codes["init"] == 0
    assert result.errors == [SCRIPTS_USER_FAILURE]
    assert result.status is not None
    assert result.status["v1"]["modules-final"]["errors"] == [SCRIPTS_USER_FAILURE]
    assert "about to fail" in result.output_log


def test_second_boot_of_the_same_instance(instance: InstanceFactory, imds: MetadataServer) -> None:
    inst = instance()
    first = inst.boot(user_data="#!/bin/bash\necho ONCE-PER-INSTANCE\n")
    _assert_clean(first)
    second = inst.boot()

    _assert_clean(second)
    assert second.paths.var_lib_cloud == first.paths.var_lib_cloud  # same disk
    assert second.paths.run_cloud_init != first.paths.run_cloud_init  # fresh /run
    assert "ONCE-PER-INSTANCE" in first.output_log
    assert "ONCE-PER-INSTANCE" not in second.output_log  # scripts_user: once per instance
    boot_finished = inst.paths.host_path("/var/lib/cloud/instance/boot-finished")
    assert boot_finished is not None and boot_finished.is_file()
    assert (second.instance_data or {})["v1"]["instance_id"] == imds.metadata.instance_id


def test_reporter_lock_is_waited_for_and_leftovers_die(instance: InstanceFactory) -> None:
    """The harness waits for whoever holds /run/bosky/reporter.lock, and a boot
    that does not wait still ends (the PID namespace takes its processes along).
    """
    holder = (
        "#!/bin/bash\n"
        "exec 9>/run/bosky/reporter.lock\n"
        "flock -x 9\n"
        "sleep {seconds} >/dev/null 2>&1 &\n"  # inherits fd 9, so keeps the lock
        "exit 0\n"
    )
    inst = instance()
    waited = inst.boot(user_data=holder.format(seconds=1.5), wait_reporter=30)
    assert waited.reporter is not None
    assert waited.reporter["lock_present"] and not waited.reporter["timed_out"]
    assert waited.reporter["waited"] > 0.5

    with pytest.raises(BootError, match="reporter"):
        instance().boot(user_data=holder.format(seconds=300), wait_reporter=1)

    started = time.monotonic()
    instance().boot(user_data=holder.format(seconds=300))
    assert time.monotonic() - started < 150  # the boot did not wait out the 300 s holder


def test_unknown_top_level_key_in_user_data(instance: InstanceFactory) -> None:
    """Record how each release reacts to ``bosky:`` in user-data cloud-config."""
    result = instance().boot(
        user_data="#cloud-config\nbosky: {project: x}\n",
        init_modules=("bootcmd",),
        final_modules=("scripts_user", "final_message"),
    )
    _assert_clean(result)
    assert result.status is not None
    warnings = result.status["v1"]["init"].get("recoverable_errors", {}).get("WARNING", [])
    if result.release.at_least("23.4"):
        assert warnings == [
            "cloud-config failed schema validation! You may run "
            "'sudo cloud-init schema --system' to check the details."
        ]
    else:  # no recoverable_errors before 23.4, and no warning for the key either
        assert "recoverable_errors" not in result.status["v1"]["init"]
        assert "schema" not in " ".join(
            line for line in result.cloud_init_log.splitlines() if "WARNING" in line
        )


def test_module_timings_from_a_real_log(instance: InstanceFactory) -> None:
    result = instance().boot(user_data="#!/bin/bash\nsleep 0.3\n")
    timings = result.module_timing_details("scripts_user")
    assert list(timings) == ["modules-final"]
    assert timings["modules-final"].seconds >= 0.25
    assert timings["modules-final"].result == "SUCCESS"
    if result.release.at_least("25.1"):  # of the releases booted, 25.x on add "took N seconds"
        assert timings["modules-final"].reported_seconds is not None
    # (bootcmd would not do: from 22.x, modules whose keys are absent are skipped)
    assert result.module_timings("final_message").keys() == {"modules-final"}


def test_host_paths_resolve_symlinks_inside_the_instance(instance: InstanceFactory) -> None:
    result = instance().boot(user_data="#!/bin/sh\ntrue\n")
    status_link = result.paths.run_cloud_init / "status.json"
    assert status_link.is_symlink()  # relative link into /var/lib/cloud/data
    resolved = result.ns_path("/run/cloud-init/status.json")
    assert resolved == result.paths.var_lib_cloud / "data" / "status.json"
    instance_link = result.ns_path("/var/lib/cloud/instance/boot-finished")
    assert instance_link is not None and Path(instance_link).is_file()


def test_loopback_services_named_in_env_are_reachable_inside_the_boot(
    instance: InstanceFactory, imds: MetadataServer
) -> None:
    """The boot has its own network namespace; services on the host's loopback
    that ``env`` names (and the emulator) are relayed to the same addresses.
    """
    with MetadataServer(instance_id="i-0000000000000beef") as other_service:
        env = {
            "AWS_ENDPOINT_URL_EVENTS": other_service.url,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
        }
        script = (
            "#!/bin/bash\n"
            "set -e\n"
            "for base in $AWS_ENDPOINT_URL_EVENTS $AWS_EC2_METADATA_SERVICE_ENDPOINT; do\n"
            "  /usr/bin/python3 -c 'import sys, urllib.request as u\n"
            "base = sys.argv[1]\n"
            'put = u.Request(base + "/latest/api/token", method="PUT",\n'
            '                headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})\n'
            "token = u.urlopen(put, timeout=5).read().decode()\n"
            'get = u.Request(base + "/latest/meta-data/instance-id",\n'
            '                headers={"X-aws-ec2-metadata-token": token})\n'
            'print("REACHED", u.urlopen(get, timeout=5).read().decode())\' "$base"\n'
            "done\n"
        )
        result = instance(env).boot(user_data=script)
    _assert_clean(result)
    assert "REACHED i-0000000000000beef" in result.output_log
    assert f"REACHED {imds.metadata.instance_id}" in result.output_log
    assert other_service.paths("PUT") == ["/latest/api/token"]
