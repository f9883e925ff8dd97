"""Runs ONE simulated boot inside fresh namespaces; started by :mod:`boot`.

Invoked as ``unshare --mount --net --pid --fork --kill-child --mount-proc
--uts --propagation private -- python -I nsrunner.py PLAN.json``. It is PID 1
of its PID namespace, so when it exits the kernel kills whatever the boot left
running (for instance a bosky reporter that was not waited for): the process
tree always ends with this script.

Standard library only and no imports from the repository: it runs with
``python -I`` and must not depend on what the boot is testing.

Steps (each failure is reported in the results file, never silently skipped):

1. mounts: a tmpfs on ``/run`` (a reboot's fresh /run), the instance's host
   directories bound over ``/etc/cloud``, ``/var/lib/cloud`` ...; a sysfs of
   the new network namespace on ``/sys`` (so ``/sys/class/net`` shows only
   ``lo``), fake DMI/hypervisor files where the host has real ones;
2. ``lo`` up, and a TCP relay on 127.0.0.1:PORT for each forwarded port,
   passing connections to a Unix socket that the harness relays to the
   host's 127.0.0.1:PORT (the only way out of the private network namespace);
3. the four cloud-init stages, in order, each with its own timeout, all run
   even when one fails (as with systemd units);
4. optionally: wait for the bosky reporter's ``flock`` on its lock file;
5. write the results JSON (host path) and exit.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
MOUNT_TIMEOUT = 30


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, timeout=MOUNT_TIMEOUT, capture_output=True)


def _write_fake_files(directory: str, files: dict[str, str]) -> None:
    """Hide a real sysfs directory behind a tmpfs holding *files*."""
    _mount("-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", directory)
    for name, value in files.items():
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(value + "\n")


def setup_mounts(plan: dict[str, Any]) -> None:
    """Mount /run, /sys and the instance's directories (see the module doc)."""
    _mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev,size=64m", "tmpfs", "/run")
    _mount("-t", "sysfs", "sysfs", "/sys")
    dmi = plan.get("dmi_sysfs") or {}
    if dmi and os.path.isdir("/sys/class/dmi/id"):
        _write_fake_files("/sys/class/dmi/id", dmi)
    hypervisor_uuid = plan.get("hypervisor_uuid")
    if hypervisor_uuid is not None and os.path.isdir("/sys/hypervisor"):
        _write_fake_files("/sys/hypervisor", {"uuid": hypervisor_uuid})
    for host, target in plan["binds"]:
        os.makedirs(target, exist_ok=True)  # only ever under the new /run tmpfs
        _mount("--bind", host, target)


def loopback_up() -> None:
    """A new network namespace starts with ``lo`` down; bring it up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve_relay(listener: socket.socket, unix_path: str) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(unix_path)
        except OSError:
            client.close()
            upstream.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def add_instance_nic(name: str) -> None:
    """Give the namespace an unconfigured NIC, like an instance's first ENI.

    cloud-init's Ec2Local looks for a fallback NIC to run DHCP on; without one
    it logs WARNINGs that 23.4+ turn into recoverable errors (a "degraded"
    boot a real instance does not have). A veth pair (both ends in this
    namespace, never up, no address) is the NIC; no DHCP client answers, so
    Ec2Local gives up quietly and the ``init`` stage's Ec2 finds the data.
    """
    subprocess.run(
        ["ip", "link", "add", name, "type", "veth", "peer", "name", "veth-peer0"],
        check=True,
        timeout=MOUNT_TIMEOUT,
        capture_output=True,
    )


def start_relays(ports: list[int], socket_dir: str) -> list[str]:
    """Listen on 127.0.0.1 (and ::1 where possible) for each port; return problems."""
    problems: list[str] = []
    for port in ports:
        unix_path = os.path.join(socket_dir, f"{port}.sock")
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                listener = socket.socket(family, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((address, port))
                listener.listen(64)
            except OSError as exc:
                if family == socket.AF_INET:
                    problems.append(f"relay {address}:{port}: {exc}")
                continue
            threading.Thread(target=_serve_relay, args=(listener, unix_path), daemon=True).start()
    return problems


def run_stage(stage: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """Run one cloud-init stage; its stdout/stderr go to files on the host."""
    out_dir = plan["boot_dir"]
    started = time.monotonic()
    result: dict[str, Any] = {"name": stage["name"], "argv": stage["argv"], "timed_out": False}
    stdout_path = os.path.join(out_dir, f"{stage['name']}.stdout")
    stderr_path = os.path.join(out_dir, f"{stage['name']}.stderr")
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            proc = subprocess.run(
                stage["argv"],
                env=plan["env"],
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=plan["stage_timeout"],
                check=False,
            )
            result["exit_code"] = proc.returncode
        except subprocess.TimeoutExpired:
            result["exit_code"] = -9
            result["timed_out"] = True
    result["duration"] = time.monotonic() - started
    return result


def wait_for_reporter(path: str, timeout: float) -> dict[str, Any]:
    """Wait until nobody holds an exclusive flock on *path* (bosky's contract)."""
    if not os.path.exists(path):
        return {"lock_present": False, "waited": 0.0, "timed_out": False}
    started = time.monotonic()
    with open(path, "rb") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return {
                    "lock_present": True,
                    "waited": time.monotonic() - started,
                    "timed_out": False,
                }
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() - started > timeout:
                return {"lock_present": True, "waited": timeout, "timed_out": True}
            time.sleep(0.05)


def wait_for_output_pipes(timeout: float) -> float:
    """Wait until cloud-init's output ``tee`` processes have exited.

    Each stage pipes its output through ``sh -c 'tee -a .../cloud-init-output.log'``;
    the stage's exit only closes the pipe, and tee writes what is left after
    that. On a loaded machine it may not have done so yet, and leaving this PID
    namespace kills it: the boot's output log would miss its last lines (seen
    once, with a VM booting beside the suite). A tee kept open by a process a
    script left behind is given up on after ``timeout``. Returns the seconds
    waited.
    """
    started = time.monotonic()
    while any("tee -a" in line for line in leftover_processes()):
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.05)
    return time.monotonic() - started


def leftover_processes() -> list[str]:
    """Processes of this PID namespace still alive (they die when we exit)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmdline:
            found.append(f"{entry} {cmdline}")
    return found


def main(plan_path: str) -> int:
    with open(plan_path) as handle:
        plan = json.load(handle)
    results: dict[str, Any] = {"stages": [], "setup_error": None, "reporter": None}
    try:
        setup_mounts(plan)
        loopback_up()
        if plan.get("nic"):
            add_instance_nic(plan["nic"])
        problems = start_relays(plan["relay_ports"], plan["relay_dir"])
        if problems:
            raise RuntimeError("; ".join(problems))
    except Exception as exc:  # reported to the harness, which raises
        detail = getattr(exc, "stderr", b"") or b""
        results["setup_error"] = f"{exc!r} {detail.decode(errors='replace')}".strip()
    if results["setup_error"] is None:
        for stage in plan["stages"]:
            results["stages"].append(run_stage(stage, plan))
        if plan.get("wait_reporter") is not None:
            results["reporter"] = wait_for_reporter(plan["reporter_lock"], plan["wait_reporter"])
        results["output_pipes_waited"] = wait_for_output_pipes(10.0)
        results["leftover_processes"] = leftover_processes()
    tmp = plan["results_path"] + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(results, handle, indent=2)
    os.replace(tmp, plan["results_path"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
