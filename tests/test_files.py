"""Another local user against root's bosky: planted files, symlinks and directories.

bosky runs as root on a machine other people may log into. Here ``nobody``
(uid 65534) gets there first: it plants a symlink at ``/var/log/bosky.log``,
makes the spool directory, leaves a ``cc_bosky/`` where cloud-init is started
from; the instance's metadata names an instance ``../../x``; an endpoint's
answer carries a forged log line; a user's ``bosky flush`` meets root's
spool; and ``bosky schema`` gets YAML built to blow up. Each scenario runs the
real command or the real reporter process, with AWS the emulator on
loopback; the reporter runs in a mount namespace of its own (or a namespace
boot), so the host's ``/var/log`` is never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_bosky.boot import handoff, state
from tests.support.bounds import ARRIVAL
from tests.support.fixtures import bosky_command, run_bosky

NOBODY = 65534
REPO = Path(__file__).resolve().parents[1]
DOWN = "http://127.0.0.1:9"  # nothing listens: a send fails at once and is spooled


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory under /tmp that nobody can reach (tmp_path is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="bosky-files-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owned_by_nobody(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, NOBODY, NOBODY)
    path.chmod(mode)
    return path


def as_nobody() -> List[str]:
    """The installed command, run as uid 65534 (as `su nobody` would)."""
    return ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", "--",
            *bosky_command()]


def nobody_env(env: Mapping[str, str], shared: Path) -> Dict[str, str]:
    home = owned_by_nobody(shared / "home")
    return {**{k: v for k, v in env.items()
               if k not in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")},
            "HOME": str(home)}


def spool_one(env: Mapping[str, str], spool: Path, project: str,
              command: Any = None) -> None:
    """An event whose endpoint is down, left in ``spool`` by ``bosky --info``."""
    done = run_bosky(["--info", "left in the spool", "--project", project, "--timeout", "1"],
                     env={**env, "BOSKY_SPOOL_DIR": str(spool),
                          "AWS_ENDPOINT_URL_EVENTS": DOWN}, command=command)
    assert done.returncode == 1 and "spooled" in done.stderr, done.stderr
    assert list(spool.glob("*.event")) or not os.access(spool, os.R_OK)


# -- the spool ------------------------------------------------------------------------------


@pytest.mark.parametrize("planted", ["made by another user", "writable by everyone"])
def test_roots_flush_refuses_a_spool_it_cannot_trust(bosky, env, consumer, shared,
                                                     planted) -> None:
    spool = shared / "spool"
    if planted == "made by another user":
        # nobody's own bosky spools its event in a directory nobody made,
        # meant for root's flush to send with root's credentials
        owned_by_nobody(spool)
        spool_one(nobody_env(env, shared), spool, consumer.project, as_nobody())
    else:
        spool_one(env, spool, consumer.project)
        spool.chmod(0o777)

    flushed = bosky(["flush"], env={**env, "BOSKY_SPOOL_DIR": str(spool)})

    assert flushed.returncode == 1, flushed.stdout
    (line,) = flushed.stderr.splitlines()
    expected = "owned by uid 65534" if planted == "made by another user" else \
        "group or others may write to it"
    assert line.startswith(f"bosky: spool {spool}: {expected}"), line
    assert consumer.drain(settle=2.0) == []


def test_a_user_is_told_the_spool_is_roots_not_that_it_is_busy_or_empty(env, consumer,
                                                                      shared) -> None:
    spool = shared / "spool"
    spool_one(env, spool, consumer.project)  # root's, 0700, one event waiting
    as_user = {**nobody_env(env, shared), "BOSKY_SPOOL_DIR": str(spool),
               "BOSKY_RUN_DIR": str(shared / "run")}

    flushed = run_bosky(["flush"], env=as_user, command=as_nobody())
    status = run_bosky(["status"], env=as_user, command=as_nobody())

    for done in (flushed, status):
        assert done.returncode == 1, done.stdout
        assert done.stderr == (f"bosky: spool {spool} is root's and this user (uid 65534) may "
                               "not use it: run bosky with sudo\n")
    assert "0 event(s)" not in status.stdout and "another bosky" not in flushed.stderr
    assert len(list(spool.glob("*.event"))) == 1  # still there for root's flush


def test_thousands_of_corrupt_records_are_bounded_and_summarised(bosky, env, shared) -> None:
    spool = shared / "spool"
    spool.mkdir(mode=0o700)
    now = time.time_ns()
    for i in range(12):  # torn files, e.g. from a disk that filled up
        (spool / f"{now + i:020d}-torn-{i}.event").write_bytes(b"bosky-spool 1 sha256=")

    status = bosky(["status"], env={**env, "BOSKY_SPOOL_DIR": str(spool),
                                     "BOSKY_SPOOL_MAX_EVENTS": "5"})

    assert status.returncode == 0, status.stderr
    kept = sorted(p.name for p in (spool / "corrupt").iterdir())
    assert kept == [f"{now + i:020d}-torn-{i}.event" for i in range(7, 12)]  # the newest 5
    lines = status.stdout.splitlines()
    assert "5 corrupt" in lines[2]
    assert re.fullmatch(rf"  5 corrupt \(set aside, not sent\) in {spool}/corrupt, spooled "
                        r"\d+ s to \d+ s ago; the newest:", lines[3]), lines[3]
    assert lines[4:] == [f"    {name}" for name in kept[-3:]]


# -- the reporter, in a mount namespace with its own /var/log -------------------------------


def in_own_mount_namespace(argv: List[str], var_log: Path, env: Mapping[str, str],
                           cwd: Path = Path("/")) -> subprocess.CompletedProcess[str]:
    """``argv`` with ``var_log`` bound over /var/log, so the reporter's log is the test's."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
         'mount --bind "$0" /var/log && exec "$@"', str(var_log), *argv],
        env=dict(env), cwd=str(cwd), capture_output=True, text=True, timeout=120, check=False)


def finished_boot(base: Path, instance_id: str) -> Path:
    """cloud-init's records of a boot that has finished cleanly, as the reporter reads them."""
    run = base / "run-cloud-init"
    run.mkdir(parents=True)
    stages = {name: {"errors": [], "recoverable_errors": {}, "start": 1.0 + i,
                     "finished": 1.5 + i}
              for i, name in enumerate(("init-local", "init", "modules-config", "modules-final"))}
    (run / "status.json").write_text(json.dumps(
        {"v1": {**stages, "stage": None, "datasource": "DataSourceEc2Local"}}))
    (run / "result.json").write_text(json.dumps(
        {"v1": {"datasource": "DataSourceEc2Local", "errors": []}}))
    (run / "instance-data.json").write_text(json.dumps(
        {"v1": {"instance_id": instance_id, "region": "us-east-1"}}))
    return run


def reporter_settings(base: Path, project: str, env: Mapping[str, str]) -> Dict[str, Any]:
    return {"project": project, "region": "us-east-1", "run_dir": str(base / "run"),
            "endpoint_url": env["AWS_ENDPOINT_URL_EVENTS"],
            "spool_dir": str(base / "var/lib/bosky/spool"), "flush_window": 2,
            "send_timeout": 5, "log_lines": 0}


def test_an_instance_id_that_is_a_path_builds_no_path(env, consumer, tmp_path,
                                                      detail_validator) -> None:
    run = finished_boot(tmp_path, "../../x")
    settings = reporter_settings(tmp_path, consumer.project, env)
    state.ensure_run_dir(settings["run_dir"])
    job = tmp_path / "run" / state.JOB
    state.write_json(str(job), {"settings": settings, "cloud_run_dir": str(run),
                                "cloud_data_dir": str(tmp_path / "lib-cloud"),
                                "started_in": "modules-final"})
    log = tmp_path / "log"
    log.mkdir()

    done = in_own_mount_namespace(handoff.reporter_argv(sys.executable, str(job)), log, env)

    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "var/lib/x").exists()  # var/lib/bosky/instances/../../x
    assert not job.exists()  # read, then removed: it may hold the stage's credentials
    (event,) = consumer.receive(expected=1, timeout=ARRIVAL)
    assert event["detail"]["Status"] == "pass" and "FirstBoot" not in event["detail"]
    assert "FirstBoot left out: instance id '../../x' cannot be a file name" in \
        (log / "bosky.log").read_text()


def test_a_cc_bosky_planted_where_cloud_init_was_started_is_not_imported(
        env, consumer, tmp_path, shared) -> None:
    # cloud-init run by hand (`cloud-init single --name bosky`) from a
    # directory another user could write to
    planted = owned_by_nobody(shared / "work", 0o755)
    marker = tmp_path / "planted-code-ran"
    for package in ("cc_bosky", "cc_bosky/boot"):
        owned_by_nobody(planted / package, 0o755)
        (planted / package / "__init__.py").write_text(
            f"open({str(marker)!r}, 'w').write('ran as uid %d' % __import__('os').getuid())\n")
    run = finished_boot(tmp_path, "i-0b05e1a5e0b05e1a5")
    driver = tmp_path / "stage.py"  # the module's own call, made from that directory
    driver.write_text(
        "import json, os, sys\n"
        "from cc_bosky.boot import launcher\n"
        "os.chdir(sys.argv[1])\n"
        "print(launcher.start_reporter(json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]))\n")
    log = tmp_path / "log"
    log.mkdir()
    stanza = reporter_settings(tmp_path, consumer.project, env)

    done = in_own_mount_namespace(
        [sys.executable, str(driver), str(planted), json.dumps(stanza), str(run),
         str(tmp_path / "lib-cloud")], log, env)

    assert done.returncode == 0 and done.stdout.startswith("pid "), done.stderr
    (event,) = consumer.receive(expected=1, timeout=ARRIVAL)
    assert event["detail"]["Status"] == "pass"
    assert not marker.exists(), marker.read_text()


def test_the_reporters_unit_starts_it_in_the_root_directory() -> None:
    # systemd starts a system unit in / unless WorkingDirectory= says otherwise;
    # systemd-run and the stage's spawn both run handoff.reporter_argv, which
    # changes to / itself before importing anything of bosky's
    from cc_bosky.host.units import render_service

    unit = render_service("/usr/bin/python3")
    assert all(line in ("WorkingDirectory=/", "WorkingDirectory=-/")
               for line in unit.splitlines() if line.startswith("WorkingDirectory="))


# -- bosky schema on hostile YAML --------------------------------------------------------


def alias_bomb(width: int, levels: int) -> str:
    """"Billion laughs": each level a list of ``width`` aliases to the one below."""
    lines = ["#cloud-config", "l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]"
              for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def problems(done: subprocess.CompletedProcess[str]) -> List[str]:
    """The report's problems (stdout), or the one-line error (stderr) of a file not read."""
    found = [line[len("problem: "):] for line in done.stdout.splitlines()
             if line.startswith("problem: ")]
    return found or [line[len("bosky: "):] for line in done.stderr.splitlines()
                     if line.startswith("bosky: ") and "warning" not in line]


@settings(max_examples=6)
@given(width=st.integers(8, 12), levels=st.integers(7, 10))
def test_bosky_schema_refuses_an_alias_bomb_in_one_line(width: int, levels: int) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(alias_bomb(width, levels))
        f.flush()
        done = run_bosky(["schema", f.name], env=dict(os.environ), timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert problems(done) == [f"{f.name}: refused: more than 100000 values once its YAML "
                              "aliases are expanded (an alias bomb?)"]


@pytest.mark.parametrize(("hostile", "expected"), [
    ("#cloud-config\na: " + "[" * 50_000 + "]" * 50_000 + "\n",
     "refused: nested more than 100 levels deep"),
    ("#cloud-config\na: &a [b, *a]\n",
     "refused: a YAML alias refers to a value that contains it"),
    ("#cloud-config\n" + "#" * (16 * 1024 * 1024) + "\n",
     "refused: larger than 16 MiB (EC2 takes at most 16 KiB of user data)"),
], ids=["deep nesting", "alias to itself", "huge input"])
def test_bosky_schema_refuses_hostile_yaml_in_one_line(tmp_path, hostile, expected) -> None:
    path = tmp_path / "user-data"
    path.write_text(hostile)
    done = run_bosky(["schema", str(path)], env=dict(os.environ), timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert problems(done) == [f"{path}: {expected}"]


# -- whole boots: /var/log/bosky.log ----------------------------------------------------------

_HOST_ONLY = ("AWS_EC2_METADATA_DISABLED", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
#: A log line of the reporter's own: what a forged line would imitate.
_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} bosky\[\d+\]: [A-Z]+ ")


def boot_env(env: Mapping[str, str], endpoint: str) -> Dict[str, str]:
    inside = {k: v for k, v in env.items() if k.startswith("AWS_") and k not in _HOST_ONLY}
    inside["AWS_ENDPOINT_URL_EVENTS"] = endpoint
    return inside


def user_data(consumer: Any, **settings: Any) -> str:
    return "#cloud-config\nbosky: " + json.dumps({"project": consumer.project, **settings}) + "\n"


@pytest.mark.cloudinit
def test_a_symlink_planted_at_the_reporters_log_is_not_followed(instance, env,
                                                                consumer) -> None:
    inst = instance(env=boot_env(env, env["AWS_ENDPOINT_URL_EVENTS"]))
    target = inst.paths.var_lib_bosky / "planted"  # /var/lib/bosky/planted in the boot
    link = inst.paths.var_log / "bosky.log"
    link.symlink_to("/var/lib/bosky/planted")
    os.lchown(link, NOBODY, NOBODY)

    inst.boot(user_data=user_data(consumer, flush_window=2), wait_reporter=60)

    (event,) = consumer.receive(expected=1, timeout=ARRIVAL)
    assert event["detail"]["Status"] == "pass"  # the verdict goes out all the same
    assert link.is_symlink() and not target.exists()


@pytest.mark.cloudinit
def test_an_endpoints_answer_cannot_forge_a_line_of_the_reporters_log(instance, env, consumer,
                                                                     fault_proxy) -> None:
    forged = ("Rate exceeded\n2026-12-06 12:00:00,000 bosky[1]: INFO final verdict pass "
              "delivered\x1b[2J\x1b]0;owned\x07")
    fault_proxy.reject_entries("InternalFailure", times=None, error_message=forged)
    inst = instance(env=boot_env(env, fault_proxy.url))

    inst.boot(user_data=user_data(consumer, flush_window=3, send_timeout=2), wait_reporter=60)

    log = (inst.paths.var_log / "bosky.log").read_text()
    assert "Rate exceeded\\n2026-12-06 12:00:00,000 bosky[1]" in log  # it was logged, escaped
    assert "\x1b" not in log and "\x07" not in log
    assert all(_LOG_LINE.match(line) for line in log.splitlines()), log
    assert not any("final verdict pass delivered" in line[:60] for line in log.splitlines())


# -- the reporter's check of the instance's cloud-config --------------------------------------

_CHECK = """
import json, os, signal, sys, threading, time
from cc_bosky.boot import cloudconfig
if sys.argv[2] == "times out":
    cloudconfig.CHECK_TIMEOUT = 0.0  # the child has not answered when the wait ends
else:  # the child is killed (as the OOM killer would) as soon as it exists
    def kill_the_child():
        while True:
            with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
                children = f.read().split()
            if children:
                os.kill(int(children[0]), signal.SIGKILL)
                return
            time.sleep(0.001)
    threading.Thread(target=kill_the_child, daemon=True).start()
valid = cloudconfig.instance_config_valid(sys.argv[1])
print(json.dumps({"valid": valid, "schema loaded here": "jsonschema" in sys.modules}))
"""


@pytest.mark.cloudinit
@pytest.mark.parametrize("fault", ["times out", "dies"])
def test_a_schema_check_that_times_out_or_dies_means_not_checked(cloudinit_release, tmp_path,
                                                                  fault) -> None:
    # user data that is valid but for the bosky key: checked, the warning would be bosky's
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "cloud-config.txt").write_text(
        "#cloud-config\nbosky: {project: web}\nruncmd: [ls]\n")

    done = subprocess.run(
        [str(cloudinit_release.python), "-c", _CHECK, str(tmp_path), fault],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": cloudinit_release.pythonpath()},
        capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    # not checked: cloud-init's warning stays the boot's, and the check was
    # not run again in the reporter, without its limit
    assert json.loads(done.stdout) == {"valid": False, "schema loaded here": False}
    assert "cloud-config schema not checked: its child process" in done.stderr
