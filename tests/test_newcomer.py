"""The command as a newcomer meets it (issue 19): on a workstation off EC2,
with no AWS variable, a fresh HOME and no network, as root or as a user.

Each test types what a newcomer types into the installed ``bosky`` and
reads what comes back: usage, suggestions, help, exit codes.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Dict, List

import pytest

from cc_bosky.tools.cli import PURPOSES, SUBCOMMANDS
from tests.support import newcomer
from tests.support.bounds import SLACK

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


@pytest.fixture
def home_env(tmp_path: Path) -> Dict[str, str]:
    return newcomer.clean_env(tmp_path / "home", BOSKY_SPOOL_DIR=str(tmp_path / "spool"),
                              BOSKY_RUN_DIR=str(tmp_path / "run"))


def command_table() -> Dict[str, str]:
    """README's subcommand table: name -> what it does."""
    section = README.split("## The command", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `bosky (\w+)[^|]*\| (.*?) \|$", section, re.M)
    return dict(rows)


def test_a_bare_bosky_shows_each_subcommand_and_what_it_does(home_env) -> None:
    done = newcomer.run([], home_env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: bosky (--pass | --fail | --info | --status STATUS)")
    for name, purpose in PURPOSES.items():
        assert re.search(rf"^  {name} +{re.escape(purpose)}$", done.stderr, re.M), name


def test_a_misspelt_subcommand_is_suggested_not_taken_for_a_message(home_env) -> None:
    done = newcomer.run(["stauts"], home_env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("bosky: unknown subcommand 'stauts': did you mean 'status'? "
                           "(to send it as a message: bosky --info stauts)\n")


@pytest.mark.parametrize("args, message", [
    (["--info", "stauts"], "stauts"),  # a status flag makes any word a message
    (["stauts", "--info"], "stauts"),
    (["--pass", "deploy ok"], "deploy ok"),  # the Go original's form
    (["--fail", "flush"], "flush"),
])
def test_with_a_status_flag_the_word_is_the_message_as_in_the_original(
        home_env, args: List[str], message: str) -> None:
    done = newcomer.run([*args, "--dry-run", "--region", "eu-west-1"], home_env)
    assert done.returncode == 0, done.stderr
    detail = json.loads(json.loads(done.stdout)["Entries"][0]["Detail"])
    assert detail["Message"] == message


def test_help_gives_each_subcommand_its_purpose_as_the_readme_does(home_env) -> None:
    assert set(PURPOSES) == set(SUBCOMMANDS)
    table = command_table()
    assert set(table) == set(SUBCOMMANDS)
    for name, purpose in PURPOSES.items():
        assert table[name].startswith(purpose), name
    done = newcomer.run(["--help"], home_env)
    assert done.returncode == 0
    for name, purpose in PURPOSES.items():
        assert re.search(rf"^  {name} +{re.escape(purpose)}$", done.stdout, re.M), name


@pytest.mark.parametrize("name", ["", *SUBCOMMANDS])
def test_every_command_shows_debug_and_where_its_config_comes_from(home_env, name: str) -> None:
    done = newcomer.run([name, "--help"] if name else ["--help"], home_env)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--debug" in text
    if "--config FILE" in text:
        assert "(env BOSKY_CONFIG; default /etc/bosky/config.yaml)" in text, name


@pytest.mark.parametrize("credentials", [True, False], ids=["sending", "waiting-for-credentials"])
def test_ctrl_c_while_sending_exits_130_with_one_line(home_env, fault_proxy,
                                                      credentials: bool) -> None:
    """The endpoint (and, without credentials, the instance metadata service)
    accepts the connection and never answers: bosky is in its retry loop when
    the newcomer presses Ctrl-C."""
    fault_proxy.hang()
    env = {**home_env, "AWS_EC2_METADATA_SERVICE_ENDPOINT": fault_proxy.url}
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret")
    proc = newcomer.start(["--pass", "deployed", "--region", "eu-west-1", "--endpoint-url",
                           fault_proxy.url], env, offline=False)
    try:
        waited = 0.0
        while not fault_proxy.requests and waited < 30 * SLACK:
            time.sleep(0.05)
            waited += 0.05
        assert fault_proxy.requests, "bosky never reached the endpoint"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err == "bosky: interrupted\n"
