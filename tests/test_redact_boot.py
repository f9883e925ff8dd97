"""A failing boot whose script and cloud-config print secrets: the verdict carries none.

Real cloud-init (every release the harness boots) runs a user-data script
that echoes tokens of several formats, a password and a private key, and a
runcmd item cloud-init cannot turn into a command (22.x and later quote it,
token and all, in their error string). What the consumer's queue receives
holds the failure, not the secrets.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.support import secrets
from tests.test_boot import fleet, multipart, only_verdict, stanza  # noqa: F401 (fixture)

pytestmark = [pytest.mark.cloudinit]


def test_a_failing_boot_that_prints_secrets_sends_none_of_them(fleet, consumer,  # noqa: F811
                                                               detail_validator: Any) -> None:
    rng = random.Random(16)
    made = {kind: secrets.MAKERS[kind](rng) for kind in (
        "github-token", "aws-access-key-id", "aws-secret-access-key", "stripe-key",
        "slack-webhook", "npm-token", "anthropic-key", "jwt-two-segment", "google-api-key")}
    password = "correct horse}battery,staple"
    key = secrets.pem(rng, "OPENSSH PRIVATE KEY", 6)
    runcmd_token = secrets.MAKERS["gitlab-token"](rng)
    script = "\n".join([
        "#!/bin/bash",
        f"echo 'export GITHUB_TOKEN={made['github-token']}'",
        f"echo 'aws_access_key_id = {made['aws-access-key-id']}'",
        f"echo 'aws_secret_access_key = {made['aws-secret-access-key']}'",
        f"echo 'charging with {made['stripe-key']}'",
        f"echo 'notify {made['slack-webhook']}'",
        f"echo '//npm.registry.example/:_authToken={made['npm-token']}'",
        f"echo '{{\"anthropic\": \"{made['anthropic-key']}\", \"password\": \"{password}\"}}'",
        f"echo 'session {made['jwt-two-segment']}'",
        f"echo 'maps key {made['google-api-key']}' >&2",
        f"cat <<'KEY'\n{key}\nKEY",
        "echo 'artifact download returned 404'",
        "exit 1",
    ]) + "\n"
    cloud_config = ("#cloud-config\n" + stanza(consumer)
                    + f"runcmd:\n  - {{token: {runcmd_token}}}\n")
    inst = fleet()
    inst.boot(user_data=multipart(("text/cloud-config", cloud_config),
                                  ("text/x-shellscript", script)), wait_reporter=60)
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "fail"
    assert "scripts_user" in detail["FailedModules"]
    assert "artifact download returned 404" in detail["LogTail"]
    sent = json.dumps(detail)
    body = [line for line in key.splitlines() if not line.startswith("-----")]
    for secret in [*made.values(), password, runcmd_token, *body]:
        assert secret not in sent
    if not inst.release.version.startswith("20."):
        # 22.x and later raise with the runcmd item quoted; 20.4.1 only logs it.
        assert any("Failed to shellify" in e and "[REDACTED" in e for e in detail["Errors"])
    assert "[REDACTED-GITHUB-TOKEN]" in "\n".join(detail["LogTail"])
