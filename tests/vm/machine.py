"""Boot a disk image as EC2 would, under qemu TCG, reachable only through loopback forwards.

- SMBIOS says Amazon EC2 (a product uuid starting ``ec2``), so ds-identify
  enables the Ec2 datasource and cloud-init names the cloud ``aws``.
- User networking with ``restrict=on``: the guest reaches nothing but the
  ``guestfwd`` rules, 169.254.169.254:80 to the IMDS emulator and
  169.254.0.4:4566 to the EventBridge endpoint (moto, or the fault proxy),
  both on this machine's loopback.
- Every boot gets a throwaway qcow2 overlay over the cached raw disk, a hard
  timeout, and is killed (SIGKILL, process group) if still running when the
  test is done with it: no qemu is ever left behind.
- The second serial port goes to a file: the guest's probe writes its report
  there (see probe.sh).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tests.vm.image import ENDPOINT_ADDRESS, ENDPOINT_PORT, Disk, run

IMDS_ADDRESS = "169.254.169.254"
#: Under TCG on a loaded 2-core machine a boot takes 1.5-4 minutes; this bounds
#: a boot that never gets there (a hung kernel, say), not how fast it must be.
BOOT_TIMEOUT = 900.0
MEMORY_MB = 1024


def instance_uuid() -> str:
    """A DMI product uuid the way EC2 makes them: it starts with ``ec2``."""
    return "ec2" + uuid.uuid4().hex[3:8] + "-" + str(uuid.uuid4())[9:]


@dataclass
class Report:
    """What the guest's probe wrote to ttyS1 in one boot, by section."""

    boot_id: str
    sections: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.sections.get(name, "")


def parse_reports(text: str) -> list[Report]:
    """Every finished probe report in a ttyS1 log (one per boot)."""
    reports: list[Report] = []
    current: Optional[Report] = None
    name = ""
    for line in text.replace("\r", "").splitlines():
        m = re.fullmatch(r"==> (.+?) <==", line)
        if not m:
            if current is not None and name:
                current.sections[name] += line + "\n"
            continue
        title = m.group(1)
        if title.startswith("start "):
            current, name = Report(title.split()[1]), ""
        elif title.startswith("done ") and current is not None:
            reports.append(current)
            current = None
        elif current is not None:
            name = title
            current.sections[name] = ""
    return reports


class Machine:
    """One instance: a disk (its overlay lives as long as the Machine), booted one or more times."""

    def __init__(self, disk: Disk, workdir: Path, imds_port: int, endpoint_port: int,
                 instance_id: str, mac: str, smp: int = 1) -> None:
        self.disk = disk
        self.workdir = workdir
        self.imds_port = imds_port
        self.endpoint_port = endpoint_port
        self.instance_id = instance_id
        self.mac = mac
        self.smp = smp
        self.uuid = instance_uuid()
        self.overlay = workdir / "run.qcow2"
        self.console = workdir / "console.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.boots = 0
        self.boot_started = 0.0
        workdir.mkdir(parents=True, exist_ok=True)
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk.raw), "-F", "raw",
             str(self.overlay)], what="qemu-img create")

    def command(self) -> list[str]:
        forward = "guestfwd=tcp:{addr}:{port}-cmd:socat - TCP:127.0.0.1:{to}"
        netdev = ",".join([
            "user,id=n0,restrict=on,ipv6=off,net=169.254.0.0/16,host=169.254.0.2",
            # Without dhcpstart the guest's address is not the local-ipv4 it is told.
            "dhcpstart=169.254.0.15",
            forward.format(addr=IMDS_ADDRESS, port=80, to=self.imds_port),
            forward.format(addr=ENDPOINT_ADDRESS, port=ENDPOINT_PORT, to=self.endpoint_port),
        ])
        return [
            "qemu-system-x86_64", "-accel", "tcg", "-m", str(MEMORY_MB), "-smp", str(self.smp),
            "-nographic", "-nodefaults", "-no-reboot",
            "-serial", f"file:{self.console}",
            "-serial", f"file:{self.workdir / f'ttyS1-{self.boots}.log'}",
            "-monitor", f"unix:{self.workdir / 'monitor.sock'},server=on,wait=off",
            "-smbios", f"type=1,manufacturer=Amazon EC2,product=t3.micro,serial={self.uuid},"
                       f"uuid={self.uuid}",
            "-smbios", f"type=3,manufacturer=Amazon EC2,asset={self.instance_id}",
            "-kernel", str(self.disk.kernel), "-initrd", str(self.disk.initrd),
            "-append", "root=/dev/vda rw console=ttyS0 quiet",
            # Default cache mode: guest flushes reach the host file, as a real disk's would.
            "-drive", f"file={self.overlay},if=virtio,format=qcow2",
            "-netdev", netdev,
            # The MAC the metadata lists: cloud-init renders the network for that one.
            "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}",
        ]

    def boot(self) -> None:
        """Power on (the first boot, or a reboot of the same disk)."""
        assert self.proc is None, "already running"
        self.boots += 1
        # Each boot's console gets its own file; ttyS1 appends (reports carry boot ids).
        if self.console.exists():
            self.console.rename(self.workdir / f"console-{self.boots - 1}.log")
        self.boot_started = time.monotonic()
        log = open(self.workdir / "qemu.log", "ab")  # noqa: SIM115
        with log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True,
                                         preexec_fn=_die_with_parent)

    def reports(self) -> list[Report]:
        # qemu truncates a file chardev when it starts: one ttyS1 file per boot.
        return [r for n in range(1, self.boots + 1)
                for r in parse_reports(self._read(self.workdir / f"ttyS1-{n}.log"))]

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, condition: Callable[[], bool], what: str,
                 timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until ``condition()``; fail with the console's tail if qemu ends or time is up."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"qemu exited ({self.proc.returncode}) while waiting for "
                                     f"{what}\n{self.console_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:.0f} s\n{self.console_tail()}")
            time.sleep(0.5)

    def this_boot(self) -> list[Report]:
        """This boot's probe report, once written (a boot cut short has none)."""
        return parse_reports(self._read(self.workdir / f"ttyS1-{self.boots}.log"))

    def wait_report(self, timeout: float = BOOT_TIMEOUT) -> Report:
        """This boot's probe report."""
        self.wait_for(lambda: bool(self.this_boot()), "probe report on ttyS1", timeout)
        return self.this_boot()[-1]

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except FileNotFoundError:
            return "(no console output)"
        return "--- console (last lines) ---\n" + "\n".join(text.splitlines()[-lines:])

    def shutdown(self, timeout: float = 300.0) -> None:
        """A clean reboot, as EC2's reboot is: ctrl-alt-del on the keyboard makes
        systemd itself start reboot.target (the ACPI power button would need
        logind, which needs D-Bus, which these minimal images do not have); with
        -no-reboot, qemu exits when the guest resets, and boot() powers on again."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.workdir / "monitor.sock"))
            s.sendall(b"sendkey ctrl-alt-delete\n")
            time.sleep(0.5)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"no clean shutdown within {timeout:.0f} s") from None
        self.proc = None

    def kill(self) -> None:
        """Power cut: SIGKILL qemu. Nothing in the guest gets to sync."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.proc = None

    def close(self) -> None:
        self.kill()


@contextlib.contextmanager
def machine(disk: Disk, workdir: Path, imds_port: int, endpoint_port: int,
            instance_id: str, mac: str) -> Iterator[Machine]:
    made = Machine(disk, workdir, imds_port, endpoint_port, instance_id, mac)
    try:
        yield made
    finally:
        made.close()
        with contextlib.suppress(OSError):
            made.overlay.unlink()


def _die_with_parent() -> None:
    """In the child before exec: a test run killed outright takes its qemu with it."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def qemu_available() -> Optional[str]:
    """Why qemu cannot boot here, or None."""
    for tool in ("qemu-system-x86_64", "qemu-img", "socat", "mmdebstrap", "mkfs.ext4",
                 "dpkg-buildpackage"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (./dev installs the VM tier's Debian packages)"
    return None
