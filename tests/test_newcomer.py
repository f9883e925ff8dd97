"""The command as a newcomer meets it (issue 19): on a workstation off EC2,
with no AWS variable, a fresh HOME and no network, as root or as a user.

Each test types what a newcomer types into the installed ``bosky`` and
reads what comes back: usage, suggestions, help, exit codes.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from cc_bosky.tools.cli import PURPOSES, SUBCOMMANDS
from tests.support import newcomer
from tests.support.bounds import SLACK
from tests.support.emulator import DEFAULT_REGION
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures import bosky_command

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


# -- profiles and regions, as the AWS CLI reads them --------------------------------------


def write_aws_config(home: Path, config: str, credentials: str = "") -> None:
    aws = home / ".aws"
    aws.mkdir(parents=True, exist_ok=True)
    (aws / "config").write_text(config)
    if credentials:
        (aws / "credentials").write_text(credentials)
    for path in (aws, *aws.iterdir()):
        os.chmod(path, 0o777 if path.is_dir() else 0o644)


def policy_region(done: Any) -> str:
    """The region in the event bus ARN of a printed policy."""
    assert done.returncode == 0, done.stderr
    arns = [r for s in json.loads(done.stdout)["Statement"] for r in
            ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
    return str(arns[0].split(":")[3])


@pytest.mark.parametrize("given, expected", [
    ({}, "eu-central-1"),  # the default profile's region in ~/.aws/config
    ({"flags": ["--profile", "work"]}, "ap-south-1"),
    ({"env": {"AWS_PROFILE": "work"}}, "ap-south-1"),
    ({"env": {"AWS_PROFILE": "work", "AWS_DEFAULT_REGION": "sa-east-1"}}, "sa-east-1"),
    ({"flags": ["--profile", "work"], "env": {"AWS_REGION": "ca-central-1"}}, "ca-central-1"),
    ({"bosky_file": "region: eu-north-1\n"}, "eu-north-1"),  # bosky's own config wins
    ({"flags": ["--region", "us-west-2", "--profile", "work"]}, "us-west-2"),
])
def test_the_region_comes_from_the_profile_in_the_aws_cli_order(
        home_env, tmp_path, given: Dict[str, Any], expected: str) -> None:
    write_aws_config(Path(home_env["HOME"]), "[default]\nregion = eu-central-1\n"
                     "[profile work]\nregion = ap-south-1\n")
    flags = list(given.get("flags", []))
    if "bosky_file" in given:
        (tmp_path / "bosky.yaml").write_text(given["bosky_file"])
        flags += ["--config", str(tmp_path / "bosky.yaml")]
    done = newcomer.run(["--permissions", "--project", "web", *flags],
                        {**home_env, **given.get("env", {})})
    assert policy_region(done) == expected


def test_a_profile_that_is_not_there_is_named(home_env) -> None:
    write_aws_config(Path(home_env["HOME"]), "[default]\nregion = eu-central-1\n")
    for how in ({"flags": ["--profile", "prod"]}, {"env": {"AWS_PROFILE": "prod"}}):
        done = newcomer.run(["--pass", "x", *how.get("flags", [])],
                            {**home_env, **how.get("env", {})})
        assert done.returncode == 2
        assert done.stderr.startswith("bosky: the config profile (prod) could not be found in ")


def test_no_region_anywhere_says_where_a_region_may_go(home_env) -> None:
    done = newcomer.run(["--pass", "x"], home_env)
    assert done.returncode == 2
    assert "put 'region:' in /etc/bosky/config.yaml" in done.stderr
    assert f"set 'region' for profile 'default' in {home_env['HOME']}/.aws/config" in done.stderr


def test_the_profile_gives_region_and_credentials_to_the_send(home_env, eventbridge,
                                                              consumer) -> None:
    """The newcomer's ~/.aws as 'aws configure' writes it, and nothing else."""
    write_aws_config(Path(home_env["HOME"]), f"[profile work]\nregion = {DEFAULT_REGION}\n",
                     "[work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = s\n")
    env = {**home_env, "AWS_ENDPOINT_URL_EVENTS": eventbridge.url,
           "AWS_EC2_METADATA_DISABLED": "true"}
    done = newcomer.run(["--pass", "from my laptop", "--project", consumer.project,
                         "--profile", "work"], env, offline=False)
    assert done.returncode == 0, done.stderr
    (event,) = consumer.receive(expected=1, timeout=10)
    assert event["detail"]["Message"] == "from my laptop"


def doctor_checks(done: Any) -> Dict[str, Dict[str, str]]:
    return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


@pytest.mark.parametrize("how", [{"flags": ["--profile", "work"]},
                                 {"env": {"AWS_PROFILE": "work"}}], ids=["flag", "env"])
def test_doctor_reads_the_profile_as_the_command_does(home_env, how: Dict[str, Any]) -> None:
    home = Path(home_env["HOME"])
    write_aws_config(home, "[default]\nregion = eu-central-1\n[profile work]\n"
                     "region = ap-south-1\n",
                     "[work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = s\n")
    env = {**home_env, "AWS_EC2_METADATA_DISABLED": "true", **how.get("env", {})}
    checks = doctor_checks(newcomer.run(["doctor", "--json", *how.get("flags", [])], env))
    assert checks["region"]["status"] == "ok"
    assert checks["region"]["detail"] == f"ap-south-1 (from profile 'work' in {home}/.aws/config)"
    assert checks["credentials"]["status"] == "ok", checks["credentials"]
    # The same machine without a profile named: the default profile's region,
    # and no credentials anywhere, in the command's own words.
    checks = doctor_checks(newcomer.run(["doctor", "--json"],
                                        {**home_env, "AWS_EC2_METADATA_DISABLED": "true"}))
    assert checks["region"]["detail"].startswith("eu-central-1 (from profile 'default' in ")
    assert checks["credentials"]["status"] == "fail"
    assert checks["credentials"]["detail"].startswith(
        "no AWS credentials: looked in the environment (AWS_ACCESS_KEY_ID), profile 'default' "
        f"in {home}/.aws/credentials (no such profile)")


def test_doctor_names_a_profile_that_is_not_there(home_env) -> None:
    done = newcomer.run(["doctor", "--profile", "prod"], home_env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("bosky: the config profile (prod) could not be found in ")


# -- no credentials off EC2 ------------------------------------------------------------------


@pytest.mark.parametrize("user", [None, newcomer.NOBODY], ids=["root", "user"])
def test_no_credentials_off_ec2_is_said_at_once_naming_each_place(home_env, user) -> None:
    """No keys, no profile, and no metadata service (no network): no source
    can ever answer, so bosky says so instead of trying for --timeout."""
    done = newcomer.run(["--fail", "x", "--region", "eu-west-1", "--timeout", "600"], home_env,
                        user=user, timeout=SLACK)
    assert done.returncode == 1 and done.stdout == ""
    home = home_env["HOME"]
    assert done.stderr.startswith("bosky: no AWS credentials: looked in the environment "
                                  f"(AWS_ACCESS_KEY_ID), profile 'default' in {home}/.aws/"
                                  "credentials (no such file), profile 'default' in "
                                  f"{home}/.aws/config (no such file), the container "
                                  "credentials endpoint"), done.stderr
    assert "the instance metadata service (http://169.254.169.254: network is unreachable)" \
        in done.stderr
    assert done.stderr.endswith("not sent (and not spooled)\n")
    assert not list(Path(home_env["BOSKY_SPOOL_DIR"]).glob("*.event"))  # nothing spooled


def test_a_metadata_address_that_never_answers_is_no_credential_source(home_env) -> None:
    """A laptop with a default route: 169.254.169.254 drops the packets rather
    than refusing them. One probe of IMDS's 1 s deadline stands for the whole
    --timeout: nothing answered, so nothing will."""
    with FaultProxy("http://127.0.0.1:9") as imds:  # never forwarded to: it hangs
        imds.hang()
        env = {**home_env, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
        done = newcomer.run(["--fail", "x", "--region", "eu-west-1", "--timeout", "600"], env,
                            offline=False, timeout=1.0 + SLACK)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("bosky: no AWS credentials: looked in the environment ")
    assert f"the instance metadata service ({imds.url}: IMDS did not answer within 1 s)" \
        in done.stderr
    assert done.stderr.endswith("not sent (and not spooled)\n") and done.stderr.count("\n") == 1
    assert not list(Path(home_env["BOSKY_SPOOL_DIR"]).glob("*.event"))


def test_a_region_only_profile_is_not_a_credential_source(home_env) -> None:
    write_aws_config(Path(home_env["HOME"]), "[default]\nregion = eu-central-1\n")
    done = newcomer.run(["--fail", "x"], {**home_env, "AWS_EC2_METADATA_DISABLED": "true"},
                        timeout=SLACK)
    assert done.returncode == 1
    assert "/.aws/config (no credentials in it)" in done.stderr
    assert "(disabled by AWS_EC2_METADATA_DISABLED)" in done.stderr


def test_flush_without_credentials_says_so_and_keeps_the_events(home_env) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    # With keys but no network: the event is spooled for later.
    sent = newcomer.run(["--fail", "x", "--region", "eu-west-1", "--timeout", "1"],
                        {**home_env, **keys})
    assert sent.returncode == 1 and "spooled" in sent.stderr
    done = newcomer.run(["flush"], home_env, timeout=SLACK)
    assert done.returncode == 1
    assert done.stderr.startswith("bosky: no AWS credentials: looked in ")
    assert done.stderr.endswith("; the spooled events stay spooled\n")
    assert len(list(Path(home_env["BOSKY_SPOOL_DIR"]).glob("*.event"))) == 1


def test_permissions_without_a_project_warns(home_env) -> None:
    done = newcomer.run(["--permissions", "--region", "eu-west-1"], home_env)
    assert done.returncode == 0
    assert "events:source" in done.stdout and '"unknown"' in done.stdout
    assert done.stderr == ("bosky: warning: no project (--project, BOSKY_PROJECT or "
                           "'project:'): this policy allows only Source 'unknown'\n")


# -- bosky schema on a workstation (no cloud-init for this Python) -----------------------


TYPO = "#cloud-config\nbosky:\n  project: web\nruncmnd:\n  - echo hello\n"


def test_schema_without_cloud_init_never_calls_a_typo_valid(home_env, tmp_path) -> None:
    user_data = tmp_path / "user-data.yaml"
    user_data.write_text(TYPO)
    done = newcomer.run(["schema", str(user_data)], home_env)
    assert done.returncode == 0 and done.stderr == ""  # the report is all on stdout
    lines = done.stdout.splitlines()
    assert lines[0] == f"{user_data}: bosky's stanza valid, cloud-init's keys not checked"
    assert lines[1].startswith(f"not checked: {user_data}: cloud-init's own keys (runcmnd): "
                               "cloud-init is not importable by this Python (")
    assert lines[1].endswith("run bosky schema with the Python that runs cloud-init (on the "
                             "image: python3 -m cc_bosky schema FILE), or cloud-init schema "
                             "-c FILE")
    assert len(lines) == 2


def test_schema_reads_stdin_and_speaks_json(home_env) -> None:
    done = newcomer.run(["schema", "-", "--json"], home_env,
                        input=TYPO.replace("project:", "projcet:"))
    assert done.returncode == 2 and done.stderr == ""
    report = json.loads(done.stdout)
    assert report["Valid"] is False
    assert report["Problems"] == ["stdin: bosky: projcet: unknown key; did you mean 'project'?"]
    assert "runcmnd" in report["NotChecked"][0]


def test_schema_says_what_a_refused_document_left_unchecked(home_env, tmp_path) -> None:
    user_data = tmp_path / "user-data.yaml"
    user_data.write_text("#cloud-config\na: &a [b, *a]\n")
    done = newcomer.run(["schema", str(user_data)], home_env)
    assert done.returncode == 2 and done.stderr == ""
    assert done.stdout.splitlines() == [
        f"{user_data}: not checked (refused)",
        f"problem: {user_data}: refused: a YAML alias refers to a value that contains it",
        f"not checked: {user_data}: all of it (cloud-init's keys and bosky's stanza): its YAML "
        "was refused before validation (the problem above); remove that cause and run bosky "
        "schema again"]


def test_schema_root_without_instance_is_a_usage_error(home_env, tmp_path) -> None:
    done = newcomer.run(["schema", "f.yaml", "--root", str(tmp_path)], home_env)
    assert done.returncode == 2
    assert done.stderr == "bosky: --root goes with --instance (see 'bosky schema --help')\n"


def test_an_unknown_config_key_gets_the_key_it_was_meant_to_be(home_env, tmp_path) -> None:
    cfg = tmp_path / "bosky.yaml"
    cfg.write_text("project: web\ndeadlin: 600\n")
    done = newcomer.run(["--pass", "x", "--dry-run", "--config", str(cfg)], home_env)
    assert done.returncode == 2
    assert done.stderr == f"bosky: {cfg}: deadlin: unknown key; did you mean 'deadline'?\n"
    done = newcomer.run(["--pass", "x", "--dry-run", "--region", "eu-west-1"],
                        {**home_env, "BOSKY_DEADLIN": "600"})
    assert done.returncode == 0
    assert done.stderr == ("bosky: warning: environment: BOSKY_DEADLIN is not a setting "
                           "(ignored); did you mean 'BOSKY_DEADLINE'?\n")


# -- a workstation has no cloud-init --------------------------------------------------------


@pytest.fixture
def no_cloud_init(home_env) -> Dict[str, str]:
    if shutil.which("cloud-init", path=home_env["PATH"]) or Path("/etc/cloud/cloud.cfg").exists():
        pytest.skip("this machine has cloud-init")
    return home_env


@pytest.mark.parametrize("user", [None, newcomer.NOBODY], ids=["root", "user"])
def test_status_says_there_is_no_cloud_init_here(no_cloud_init, user, tmp_path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="bosky-newcomer-"))  # a spool the user may use
    os.chmod(shared, 0o777)
    env = {**no_cloud_init, "BOSKY_SPOOL_DIR": str(shared / "spool"),
           "BOSKY_RUN_DIR": str(shared / "run")}
    done = newcomer.run(["status"], env, user=user)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "this boot: no cloud-init on this machine, so no boot verdict (bosky reports the boots "
        "cloud-init runs; this command still sends events)")
    done = newcomer.run(["status", "--json"], env, user=user)
    shutil.rmtree(shared)
    assert json.loads(done.stdout)["CloudInit"] is False


def test_doctor_says_cloud_init_is_missing_once(no_cloud_init) -> None:
    done = newcomer.run(["doctor"], no_cloud_init)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[FAIL] cloud-init: not found")
    assert not any("cloud.cfg" in line or "reporter unit" in line for line in lines), lines
    checks = [c["name"] for c in json.loads(newcomer.run(["doctor", "--json"],
                                                         no_cloud_init).stdout)["checks"]]
    assert not {"registered", "drop-in", "reporter unit"} & set(checks)


# -- progress on a terminal -----------------------------------------------------------------


def test_a_retrying_send_shows_progress_on_a_terminal_only(home_env, fault_proxy) -> None:
    fault_proxy.hang()
    env = {**home_env, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_EC2_METADATA_DISABLED": "true"}
    args = ["--pass", "x", "--region", "eu-west-1", "--endpoint-url", fault_proxy.url,
            "--timeout", "4"]
    plain = newcomer.run(args, env, offline=False)
    assert plain.returncode == 1 and "retrying" not in plain.stderr
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([*newcomer.wrapper(offline=False), *bosky_command(env), *args],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=terminal)
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: bosky ended
                break
            if not chunk:
                break
            seen += chunk
        proc.wait(timeout=60)
    finally:
        os.close(controller)
    text = seen.decode()
    assert proc.returncode == 1
    assert "\rbosky: no answer yet from AWS in eu-west-1, retrying (" in text
    assert "\r\x1b[K" in text  # wiped before the final line
    assert "not delivered" in text.rsplit("\x1b[K", 1)[1]


def test_fleet_reads_the_region_of_the_profile_too(home_env) -> None:
    write_aws_config(Path(home_env["HOME"]), "[profile work]\nregion = ap-south-1\n")
    done = newcomer.run(["fleet", "--log-group", "/aws/events/bosky/web", "--permissions",
                         "--profile", "work"], home_env)
    assert policy_region(done) == "ap-south-1"
    done = newcomer.run(["fleet", "--log-group", "/aws/events/bosky/web"], home_env)
    assert done.returncode == 2
    assert done.stderr == ("bosky: no AWS region: pass --region, set AWS_REGION, or set "
                           f"'region' for profile 'default' in {home_env['HOME']}/.aws/config\n")
