"""Wall time and peak memory of one whole process, measured fairly.

A child forked from a large process (this benchmark has boto3 and the
emulator's client loaded) starts out sharing all of the parent's resident
pages, and Linux counts them in the child's peak RSS. So each command is
started by a small launcher interpreter (``-S``, nothing imported) that
forks it, times it and reads its rusage with ``wait4``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, Sequence, Tuple

_LAUNCHER = r"""
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"wall": time.perf_counter() - start, "maxrss_kb": usage.ru_maxrss,
                  "code": os.waitstatus_to_exitcode(status)}))
"""


def measure(cmd: Sequence[str], env: Dict[str, str]) -> Tuple[float, float]:
    """(wall seconds, peak RSS in MB) of ``cmd``; raises if it fails."""
    done = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *cmd], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SystemExit(f"launcher failed: {done.stderr}") from None
    if result["code"] != 0:
        raise SystemExit(f"{cmd[0]} exited {result['code']}: {done.stderr}")
    return float(result["wall"]), result["maxrss_kb"] / 1024
