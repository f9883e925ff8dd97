"""How the module starts the reporter, where systemd may kill what a stage leaves.

Whole-machine boots (tests/vm) showed it: on cloud-init 20.4.1 and 22.4.2 a
failing init stage makes ``cloud-init.service`` fail, and systemd kills every
process left in that unit's cgroup, a reporter spawned there included. The
launcher therefore hands the reporter to systemd: by a request file that
``bosky-reporter.path`` (written by ``bosky install``) watches, else with
``systemd-run``. The namespace tier has no systemd, so these tests check what
the launcher writes and asks for, with a recording ``systemd-run``; the VM
tier proves that systemd acts on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from cc_bosky import files
from cc_bosky.boot import handoff, launcher, state

REPO = Path(__file__).resolve().parents[1]


def fake_systemd_run(tmp_path: Path, exit_code: int = 0) -> Path:
    """A systemd-run that records its arguments and environment and exits."""
    script = tmp_path / "systemd-run"
    record = tmp_path / "systemd-run.json"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "files = [os.path.realpath('/proc/self/fd/' + n) for n in os.listdir('/proc/self/fd')]\n"
        f"json.dump({{'argv': sys.argv[1:], 'files': files}}, open({str(record)!r}, 'w'))\n"
        f"sys.exit({exit_code})\n")
    script.chmod(0o755)
    return script


def stanza(tmp_path: Path) -> Dict[str, Any]:
    return {"project": "web", "run_dir": str(tmp_path / "run"),
            "spool_dir": str(tmp_path / "spool"), "region": "us-east-1"}


def test_without_systemd_as_pid_1_there_is_no_unit_to_ask_for() -> None:
    # This machine's PID 1 is not systemd (nor is the namespace harness's).
    with open("/proc/1/comm") as f:
        if f.read().strip() == "systemd":
            pytest.skip("systemd is PID 1 here")
    assert handoff.needs_own_unit() is False


@pytest.fixture
def under_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stage runs in a unit that may kill its children; the path unit's
    enablement link and request file live under tmp_path (not enabled yet)."""
    monkeypatch.setattr(handoff, "needs_own_unit", lambda: True)
    link = tmp_path / "etc" / "sysinit.target.wants" / handoff.PATH_UNIT
    monkeypatch.setattr(handoff, "ENABLED_LINK", str(link))
    monkeypatch.setattr(handoff, "REQUEST_FILE", str(tmp_path / "run-bosky" / "reporter.request"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-on-a-command-line")
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    return link


def enable_path_unit(link: Path) -> None:
    unit = link.parent.parent / handoff.PATH_UNIT
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Path]\n")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(unit)


def assert_lock_released(tmp_path: Path) -> None:
    """The module has let go of the lock, so the unit's reporter can take it."""
    fd = files.lock(str(tmp_path / "run" / state.LOCK))
    assert fd is not None
    os.close(fd)


def assert_environment_in_job(tmp_path: Path) -> None:
    """systemd gives the unit its own environment: what the reporter needs
    travels in the job (mode 0600), and nothing else of the stage's does."""
    job_file = tmp_path / "run" / state.JOB
    job = json.loads(job_file.read_text())
    assert job["environ"]["AWS_ENDPOINT_URL_EVENTS"] == "http://127.0.0.1:9"
    assert job["environ"]["AWS_SECRET_ACCESS_KEY"] == "not-on-a-command-line"
    assert "UNRELATED_SECRET" not in job["environ"]
    assert (job_file.stat().st_mode & 0o777) == 0o600


def no_spawning(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> int:
        raise AssertionError(f"the stage started a process: {args[:2]}")

    monkeypatch.setattr(launcher.os, "posix_spawn", refuse)


def test_with_the_path_unit_enabled_the_stage_only_writes_a_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, under_systemd: Path) -> None:
    enable_path_unit(under_systemd)
    no_spawning(monkeypatch)

    how = launcher.start_reporter(stanza(tmp_path), str(tmp_path / "cloud"), str(tmp_path / "lib"))

    assert how == f"by {handoff.PATH_UNIT}"
    job_file = tmp_path / "run" / state.JOB
    assert Path(handoff.REQUEST_FILE).read_text() == str(job_file)
    assert_environment_in_job(tmp_path)
    assert_lock_released(tmp_path)


def test_the_reporter_takes_the_request_so_the_path_unit_does_not_start_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, under_systemd: Path) -> None:
    enable_path_unit(under_systemd)
    no_spawning(monkeypatch)
    launcher.start_reporter(stanza(tmp_path), str(tmp_path / "cloud"), str(tmp_path / "lib"))
    request = Path(handoff.REQUEST_FILE)

    assert handoff.take_request(str(request)) == str(tmp_path / "run" / state.JOB)
    assert not request.exists()
    assert handoff.take_request(str(request)) is None


def test_a_reporter_started_by_the_unit_gets_the_stage_environment_from_the_job(
        tmp_path: Path) -> None:
    job_file = tmp_path / "job.json"
    (tmp_path / "run").mkdir()
    settings = {"run_dir": str(tmp_path / "run"), "spool_dir": str(tmp_path / "spool")}
    state.write_json(str(job_file), {"settings": settings,
                                     "environ": {"AWS_ENDPOINT_URL_EVENTS": "http://x"}})
    request = tmp_path / "reporter.request"
    request.write_text(str(job_file))
    code = ("import os, sys; from cc_bosky.boot import reporter;"
            "reporter.Reporter.run = lambda self: print(os.environ.get('AWS_ENDPOINT_URL_EVENTS'),"
            " os.getpriority(os.PRIO_PROCESS, 0));"
            f"sys.exit(reporter.main(['--request', {str(request)!r}]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**env, "BOSKY_REPORTER_UNIT": "1"}, timeout=60)
    assert done.returncode == 0, done.stderr
    endpoint, nice = done.stdout.split()
    assert endpoint == "http://x"
    assert int(nice) >= handoff.REPORTER_NICE  # the boot it watches comes first
    assert not request.exists()


def test_without_the_path_unit_the_reporter_gets_a_transient_unit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, under_systemd: Path) -> None:
    fake = fake_systemd_run(tmp_path)
    monkeypatch.setattr(handoff, "_SYSTEMD_RUN", (str(fake),))

    how = launcher.start_reporter(stanza(tmp_path), str(tmp_path / "cloud"), str(tmp_path / "lib"))

    assert how == f"as {handoff.SERVICE_UNIT} (systemd-run)"
    assert not Path(handoff.REQUEST_FILE).exists()
    asked = json.loads((tmp_path / "systemd-run.json").read_text())
    argv = asked["argv"]
    assert {"--unit=bosky-reporter", "--no-block", "--collect"} <= set(argv)
    # The environment travels in the job (mode 0600), never on a command line.
    assert not any("AWS_" in a or "UNRELATED_SECRET" in a for a in argv)
    assert_environment_in_job(tmp_path)
    assert argv[-3:] == handoff.reporter_argv(sys.executable, str(tmp_path / "run" / state.JOB))[1:]
    # systemd starts the unit, not us: no lock fd is handed down.
    assert not any("BOSKY_REPORTER_LOCK_FD" in a for a in argv)
    assert not any(f.endswith(state.LOCK) for f in asked["files"])
    assert_lock_released(tmp_path)


def test_a_request_that_cannot_be_written_falls_back_to_systemd_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, under_systemd: Path) -> None:
    enable_path_unit(under_systemd)
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setattr(handoff, "REQUEST_FILE", str(tmp_path / "not-a-dir" / "reporter.request"))
    fake = fake_systemd_run(tmp_path)
    monkeypatch.setattr(handoff, "_SYSTEMD_RUN", (str(fake),))

    how = launcher.start_reporter(stanza(tmp_path), str(tmp_path / "cloud"), str(tmp_path / "lib"))

    assert how == f"as {handoff.SERVICE_UNIT} (systemd-run)"


def test_when_systemd_run_fails_the_reporter_is_spawned_directly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, under_systemd: Path) -> None:
    fake = fake_systemd_run(tmp_path, exit_code=1)
    monkeypatch.setattr(handoff, "_SYSTEMD_RUN", (str(fake),))
    spawned: Dict[str, Any] = {}

    def posix_spawn(path: str, argv: Any, env: Any, **kw: Any) -> int:
        if path == str(fake):
            return real_spawn(path, argv, env, **kw)
        spawned.update(argv=argv, env=env)
        return 4242

    real_spawn = os.posix_spawn
    monkeypatch.setattr(launcher.os, "posix_spawn", posix_spawn)
    how = launcher.start_reporter(stanza(tmp_path), str(tmp_path / "cloud"),
                                  str(tmp_path / "lib"))
    assert how == "pid 4242"
    assert spawned["argv"] == handoff.reporter_argv(sys.executable,
                                                   str(tmp_path / "run" / state.JOB))
    assert "BOSKY_REPORTER_LOCK_FD" in spawned["env"]


def test_a_reporter_started_as_a_unit_waits_for_the_module_to_let_go_of_the_lock(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = files.lock(str(run_dir / state.LOCK))
    assert lock is not None
    settings_json = {"run_dir": str(run_dir), "spool_dir": str(tmp_path / "spool")}
    code = ("import sys, time; from cc_bosky import config; from cc_bosky.boot import reporter;"
            "s = config.build(config.lenient(SETTINGS, 'job')[0]);"
            "print('ready', flush=True);"
            "t = time.monotonic(); fd = reporter._hold_lock(s, {'BOSKY_REPORTER_UNIT': '1'});"
            "print(fd is not None, round(time.monotonic() - t, 1))").replace(
                "SETTINGS", repr(settings_json))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    os.close(lock)  # what the module does right after systemd-run returns
    out, _ = child.communicate(timeout=30)
    got, waited = out.split()
    assert got == "True"
    assert float(waited) >= 0.3


def test_the_reporter_waits_at_the_lowest_priority_and_sends_at_the_normal_one() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root may raise a priority again")
    code = ("import os; from cc_bosky.boot import reporter;"
            "reporter._yield_to_the_boot(); waiting = os.getpriority(os.PRIO_PROCESS, 0);"
            "reporter._hurry(); print(waiting, os.getpriority(os.PRIO_PROCESS, 0))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(handoff.REPORTER_NICE), "0"]
