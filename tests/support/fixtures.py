"""pytest plugin: the EventBridge emulator, consumers, the fault proxy, and running bosky.

Register from ``tests/conftest.py`` with ``pytest_plugins = ["tests.support.fixtures"]``
(or ``-p tests.support.fixtures`` on the command line).

Fixtures:

- ``eventbridge`` (session): one moto server for the whole run (~0.5 s to start).
- ``consumer``: a fresh rule + queue per test, filtering on a unique ``source``
  (``consumer.project``), so tests never see each other's events.
- ``fault_proxy``: a :class:`FaultProxy` in front of ``eventbridge``.
- ``aws_env``: environment for a bosky subprocess that talks to the emulator.
- ``bosky``: :func:`run_bosky` with ``aws_env`` as the default environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence

import pytest

from tests.support.emulator import (
    DEFAULT_REGION,
    DUMMY_ACCESS_KEY,
    DUMMY_SECRET_KEY,
    Consumer,
    EventBridgeEmulator,
    make_consumer,
)
from tests.support.faultproxy import FaultProxy

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Variables stripped from the inherited environment so a developer's own AWS
#: setup (profiles, real endpoints, tokens) can never reach a bosky under test.
_STRIPPED_PREFIXES = ("AWS_", "BOSKY_")


def make_aws_env(
    endpoint_url: str,
    home: Path,
    base: Optional[Mapping[str, str]] = None,
    region: str = DEFAULT_REGION,
) -> Dict[str, str]:
    """Environment for a bosky subprocess whose EventBridge is ``endpoint_url``.

    Starts from ``base`` (default: this process's environment) minus every
    ``AWS_*`` and ``BOSKY_*`` variable, then sets dummy credentials, the
    region, the endpoint, disables IMDS and points ``HOME`` (and the AWS
    config/credentials files) at ``home`` so no ``~/.aws`` is read.

    Only ``AWS_REGION`` is set, not ``AWS_DEFAULT_REGION``: botocore 1.43
    reads only the latter, and bosky must honour ``AWS_REGION`` itself (the Go
    original did) -- setting both here would hide that bug.
    """
    source = dict(os.environ if base is None else base)
    env = {k: v for k, v in source.items() if not k.startswith(_STRIPPED_PREFIXES)}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
            "AWS_REGION": region,
            "AWS_ENDPOINT_URL_EVENTS": endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        }
    )
    return env


def bosky_command(env: Optional[Mapping[str, str]] = None) -> List[str]:
    """How to start bosky: the console script if installed, else ``python -m cc_bosky``.

    The script next to this interpreter (the test venv's) wins over one found
    on ``PATH``, so an unrelated ``bosky`` (e.g. the original Go binary) is
    only used when nothing better exists.
    """
    beside = Path(sys.executable).parent / "bosky"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    path = (env or os.environ).get("PATH")
    found = shutil.which("bosky", path=path)
    if found:
        return [found]
    return [sys.executable, "-m", "cc_bosky"]


def run_bosky(
    args: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    input: Optional[str] = None,  # mirrors subprocess.run
    timeout: float = 60.0,
    command: Optional[Sequence[str]] = None,
    cwd: Optional[Path] = None,
) -> subprocess.CompletedProcess[str]:
    """Run bosky as a subprocess (as cloud-init would) and capture its output.

    ``env`` None inherits this process's environment (use ``aws_env``).
    For the ``-m cc_bosky`` fallback the repository root is put on
    ``PYTHONPATH`` so the working tree's package is run. Raises
    :class:`subprocess.TimeoutExpired` after ``timeout`` seconds (the child is
    killed), so a hanging bosky fails the test instead of the run.
    """
    run_env = dict(os.environ if env is None else env)
    cmd = list(command) if command is not None else bosky_command(run_env)
    if cmd[1:3] == ["-m", "cc_bosky"]:
        paths = [str(REPO_ROOT), *filter(None, [run_env.get("PYTHONPATH")])]
        run_env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run(
        [*cmd, *args],
        env=run_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(cwd) if cwd is not None else None,
        check=False,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


class BoskyRunner(Protocol):
    """Type of the ``bosky`` fixture."""

    def __call__(
        self,
        args: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        input: Optional[str] = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture(scope="session")
def eventbridge() -> Iterator[EventBridgeEmulator]:
    """One moto server for the session; stopped even if tests fail or are interrupted."""
    emulator = EventBridgeEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def unique_project(prefix: str = "bosky-test") -> str:
    """A project name (event ``Source``) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def consumer(eventbridge: EventBridgeEmulator) -> Iterator[Consumer]:
    """A rule matching ``User Data`` events from this test's own project only."""
    project = unique_project()
    pattern: Dict[str, Any] = {"detail-type": ["User Data"], "source": [project]}
    made = make_consumer(eventbridge, pattern=pattern, project=project)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def fault_proxy(eventbridge: EventBridgeEmulator) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session emulator; closed after the test."""
    proxy = FaultProxy(eventbridge.url)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def aws_env(eventbridge: EventBridgeEmulator, tmp_path: Path) -> Dict[str, str]:
    """Environment for a bosky subprocess against the emulator (see :func:`make_aws_env`).

    For faults, point it at the proxy:
    ``{**aws_env, "AWS_ENDPOINT_URL_EVENTS": fault_proxy.url}``.
    """
    return make_aws_env(eventbridge.url, tmp_path / "home")


@pytest.fixture
def bosky(aws_env: Dict[str, str]) -> BoskyRunner:
    """:func:`run_bosky` defaulting to ``aws_env``."""

    def runner(
        args: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        input: Optional[str] = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        return run_bosky(args, env=aws_env if env is None else env, input=input, timeout=timeout)

    return runner
