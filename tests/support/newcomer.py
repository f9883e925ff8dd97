"""The installed ``bosky`` as a newcomer meets it: a workstation off EC2.

No AWS variable, a fresh HOME, and no network at all (its own network
namespace: 169.254.169.254 is unreachable at once, as on a laptop), as root or
as an unprivileged user. A test that needs an emulator on loopback runs in
the host's namespace instead (``offline=False``) with the same clean
environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import pytest

from tests.support.fixtures import bosky_command

#: The unprivileged user of the non-root scenarios.
NOBODY = 65534


def clean_env(home: Path, **extra: str) -> Dict[str, str]:
    """PATH, a fresh HOME, a UTF-8 locale and nothing else (plus ``extra``)."""
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o777)  # the non-root user's HOME too
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8", **extra}


def wrapper(offline: bool = True, user: Optional[int] = None) -> List[str]:
    """The command line prefix that puts bosky off the network and/or as ``user``."""
    prefix: List[str] = []
    if offline:
        if not shutil.which("unshare"):
            pytest.skip("needs unshare for a network namespace")
        prefix += ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    if user is not None:
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            pytest.skip("running as another user needs root and setpriv")
        prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
    return prefix


def run(args: Sequence[str], env: Mapping[str, str], *, offline: bool = True,
        user: Optional[int] = None, input: Optional[str] = None,
        timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``bosky ARGS`` as the newcomer types it; killed after ``timeout`` seconds."""
    return subprocess.run([*wrapper(offline, user), *bosky_command(env), *args], env=dict(env),
                          input=input, capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=None if input is not None else subprocess.DEVNULL)


def start(args: Sequence[str], env: Mapping[str, str], *, offline: bool = True,
          user: Optional[int] = None) -> subprocess.Popen[str]:
    """``bosky ARGS`` in the background (to be interrupted)."""
    return subprocess.Popen([*wrapper(offline, user), *bosky_command(env), *args], env=dict(env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
