"""How the module starts the reporter, where systemd may kill what a stage leaves.

Whole-machine boots (tests/vm) showed it: on cloud-init 20.4.1 and 22.4.2 a
failing init stage makes ``cloud-init.service`` fail, and systemd kills every
process left in that unit's cgroup, a reporter spawned there included. The
launcher therefore asks systemd for a unit of the reporter's own. The
namespace tier has no systemd, so these tests stand a recording
``systemd-run`` in for it and check what the launcher asks for and what it
falls back to.
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

from cc_bosky.boot import launcher, state

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
    assert launcher._systemd_run() is None


def test_under_systemd_the_reporter_gets_a_unit_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_systemd_run(tmp_path)
    monkeypatch.setattr(launcher, "_systemd_run", lambda: str(fake))
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTS", "http://127.0.0.1:9")
    monkeypatch.setenv("UNRELATED_SECRET", "x")

    launcher.start_reporter(stanza(tmp_path), str(tmp_path / "cloud"), str(tmp_path / "lib"))

    asked = json.loads((tmp_path / "systemd-run.json").read_text())
    argv = asked["argv"]
    assert {"--unit=bosky-reporter", "--no-block", "--collect"} <= set(argv)
    assert "--setenv=AWS_ENDPOINT_URL_EVENTS=http://127.0.0.1:9" in argv
    assert not any("UNRELATED_SECRET" in a for a in argv)
    assert argv[-3:] == ["-m", "cc_bosky.boot.reporter", str(tmp_path / "run" / state.JOB)]
    # systemd starts the unit, not us: no lock fd is handed down.
    assert not any("BOSKY_REPORTER_LOCK_FD" in a for a in argv)
    assert not any(f.endswith(state.LOCK) for f in asked["files"])
    # The module has let go of the lock, so the unit's reporter can take it.
    fd = state.try_lock(str(tmp_path / "run" / state.LOCK))
    assert fd is not None
    os.close(fd)


def test_when_systemd_run_fails_the_reporter_is_spawned_directly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_systemd_run(tmp_path, exit_code=1)
    monkeypatch.setattr(launcher, "_systemd_run", lambda: str(fake))
    spawned: Dict[str, Any] = {}

    def posix_spawn(path: str, argv: Any, env: Any, **kw: Any) -> int:
        if path == str(fake):
            return real_spawn(path, argv, env, **kw)
        spawned.update(argv=argv, env=env)
        return 4242

    real_spawn = os.posix_spawn
    monkeypatch.setattr(launcher.os, "posix_spawn", posix_spawn)
    pid = launcher.start_reporter(stanza(tmp_path), str(tmp_path / "cloud"),
                                  str(tmp_path / "lib"))
    assert pid == 4242
    assert spawned["argv"][1:3] == ["-m", "cc_bosky.boot.reporter"]
    assert "BOSKY_REPORTER_LOCK_FD" in spawned["env"]


def test_a_reporter_started_as_a_unit_waits_for_the_module_to_let_go_of_the_lock(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = state.try_lock(str(run_dir / state.LOCK))
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
