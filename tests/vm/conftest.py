"""Fixtures of the VM tier: images per suite, and an instance to boot them as.

``BOSKY_VM_SUITES=bookworm,trixie`` limits the suites booted (default: all of
``image.SUITES``, Ubuntu's cloud-init on trixie included).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.harness.imds import MetadataServer
from tests.support import needs
from tests.support.emulator import Consumer, EventBridgeEmulator, make_consumer
from tests.vm import image
from tests.vm.machine import Machine, qemu_available


def selected_suites() -> tuple[str, ...]:
    wanted = os.environ.get("BOSKY_VM_SUITES", "")
    if not wanted.strip():
        return tuple(image.SUITES)
    return tuple(s for s in (w.strip() for w in wanted.split(",")) if s in image.SUITES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="suite not selected by BOSKY_VM_SUITES")
    chosen = selected_suites()
    for item in items:
        suite = getattr(item, "callspec", None) and item.callspec.params.get("suite")
        if suite and suite not in chosen:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def artifacts() -> image.Artifacts:
    if os.geteuid() != 0:  # the machine's, not set-up's: a skip even in CI
        pytest.skip("the VM tier needs root (mmdebstrap, chroot)")
    problem = qemu_available()
    if problem:
        needs.unavailable(problem)
    built = image.build_artifacts()
    # Build the other suites' base file systems while the first boots: mmdebstrap
    # takes about one core, a TCG guest about 1.3, and the machine has two.
    worker = threading.Thread(target=_prebuild, args=(selected_suites(),), daemon=True,
                              name="vm-image-prebuild")
    worker.start()
    # A session that ends early waits for the build in progress: no orphaned mmdebstrap.
    atexit.register(worker.join, image.BUILD_TIMEOUT)
    return built


def _prebuild(suites: tuple[str, ...]) -> None:
    for name in suites:
        # A failure here is raised again, with its output, by the test that needs the image.
        with contextlib.suppress(Exception):
            image.base_rootfs(image.SUITES[name])


def new_instance_id() -> str:
    return "i-0" + secrets.token_hex(8)


@dataclass
class Instance:
    """One EC2 instance as a test lives it: metadata, a disk, a consumer of its events."""

    imds: MetadataServer
    machine: Machine
    consumer: Consumer

    @property
    def instance_id(self) -> str:
        return self.imds.metadata.instance_id

    def events(self, expected: int, timeout: float = 900.0,
               settle_after_report: float = 20.0) -> list[dict[str, Any]]:
        """What the consumer's queue got: at least ``expected`` events, then quiet."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        reported: Optional[float] = None
        while len(got) < expected and time.monotonic() < deadline:
            got += self.consumer.receive(expected - len(got), timeout=5)
            # Once the probe has reported (the reporter is done or stuck), waiting longer
            # would only hide why the events are missing.
            if reported is None and self.machine.this_boot():
                reported = time.monotonic()
            if reported is not None and time.monotonic() - reported > settle_after_report:
                break
        got += self.consumer.drain(settle=3.0)
        # Kept beside the boot's logs: what a failed assertion was looking at.
        (self.machine.workdir / f"events-{self.machine.boots}.json").write_text(
            json.dumps(got, indent=1))
        if len(got) < expected:
            raise AssertionError(f"{len(got)} of {expected} event(s) arrived\n{self.diagnosis()}")
        return got

    def diagnosis(self) -> str:
        """What the guest said about bosky, for a test that did not get its events."""
        reports = self.machine.reports()
        said = "\n".join(f"--- {name}\n{reports[-1][name]}" for name in (
            "bosky-log", "bosky-status", "reporters", "cloud-init-status")) if reports else ""
        asked = " ".join(f"{r.method} {r.path} {r.status}" for r in self.imds.requests[-30:])
        return f"{said}\n--- last IMDS requests: {asked}\n{self.machine.console_tail(15)}"


InstanceFactory = Callable[..., Instance]


@pytest.fixture
def instance(artifacts: image.Artifacts, eventbridge: EventBridgeEmulator,
             tmp_path: Path) -> Iterator[InstanceFactory]:
    """``instance(suite, user_data=..., golden=True, endpoint_port=None)``: an instance,
    not booted yet. Its events reach a rule that matches its own instance id only."""
    made: list[Instance] = []

    def make(suite: str, user_data: Optional[bytes] = None, golden: bool = True,
             endpoint_port: Optional[int] = None) -> Instance:
        disk = image.disk(image.SUITES[suite], artifacts, golden=golden)
        # The region moto's consumer lives in; the instance reports there.
        imds = MetadataServer(instance_id=new_instance_id(), region="us-east-1",
                              user_data=user_data).start()
        port = endpoint_port or int(eventbridge.url.rsplit(":", 1)[1])
        machine = Machine(disk, tmp_path / f"vm{len(made)}", imds.port, port,
                          imds.metadata.instance_id, imds.metadata.mac)
        consumer = make_consumer(eventbridge, pattern={
            "detail-type": ["User Data"], "source": [image.PROJECT],
            "detail": {"InstanceId": [imds.metadata.instance_id]}})
        made.append(Instance(imds, machine, consumer))
        return made[-1]

    try:
        yield make
    finally:
        for one in made:
            one.machine.close()
            one.consumer.close()
            one.imds.stop()
