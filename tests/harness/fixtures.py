"""pytest plugin: fixtures that boot real cloud-init releases.

Register it with ``pytest_plugins = ["tests.harness.fixtures"]`` (in
tests/conftest.py) or ``-p tests.harness.fixtures``.

* ``cloudinit_release`` (session): one :class:`Release` per cloud-init
  build: Debian's ``20.4.1``, ``22.4.2``, ``25.1.4``, ``26.2`` and the other
  distributions' ``ubuntu-24.04``, ``ubuntu-22.04``, ``22.2.2``, ``23.4``,
  ``24.4``. Every test runs on Debian's releases and on the full-set builds
  (``FULL_BUILD_IDS``); the other builds run only the tests marked
  ``every_build`` (the one-boot scenarios), which keeps CI's time in bounds.
  ``BOSKY_RELEASES=ubuntu-24.04,22.4.2`` runs every test on exactly those.
  Provisioned on first use (downloads or builds; progress on stderr).
* ``imds`` (function): a running :class:`MetadataServer`.
* ``instance`` (function): a factory ``instance(env=None, **kwargs) -> Instance``
  whose instances use ``cloudinit_release``, ``imds`` and ``tmp_path``.

Tests that use them get the ``cloudinit`` marker (deselect with
``-m "not cloudinit"``) and are skipped, with the reason, where namespaces
cannot be made (not root, no ``unshare``).
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.support import needs

from .boot import Instance
from .imds import MetadataServer
from .releases import (
    ALL_IDS,
    FULL_BUILD_IDS,
    RELEASE_IDS,
    Release,
    SourcesMissing,
    compile_bosky,
    ensure_release,
)

BOOT_FIXTURES = frozenset({"cloudinit_release", "instance"})


def _named_releases() -> tuple[str, ...]:
    raw = os.environ.get("BOSKY_RELEASES", "")
    wanted = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = [w for w in wanted if w not in ALL_IDS]
    if unknown:
        raise pytest.UsageError(f"BOSKY_RELEASES names unknown releases {unknown}; have {ALL_IDS}")
    return wanted


def selected_releases() -> tuple[str, ...]:
    """The releases every test runs on: Debian's and the full-set builds, or
    exactly those named in ``$BOSKY_RELEASES``."""
    return _named_releases() or RELEASE_IDS + FULL_BUILD_IDS


def booted_releases() -> tuple[str, ...]:
    """``cloudinit_release``'s parameters: the selected ones, plus (unless
    ``$BOSKY_RELEASES`` names some) the builds that run only ``every_build`` tests."""
    return _named_releases() or ALL_IDS


def boot_shard() -> Optional[tuple[int, int]]:
    """``$BOSKY_BOOT_SHARD`` as (index, count): ``1/2`` is the second of two."""
    raw = os.environ.get("BOSKY_BOOT_SHARD", "").strip()
    if not raw:
        return None
    index, _, count = raw.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise pytest.UsageError(f"BOSKY_BOOT_SHARD is I/N, not {raw!r}") from None
    if not 0 <= i < n:
        raise pytest.UsageError(f"BOSKY_BOOT_SHARD {raw!r}: I must be in 0..N-1")
    return i, n


def shard_of(builds: tuple[str, ...], full: set[str], count: int) -> dict[str, int]:
    """Each build's shard: the builds that run every test weigh five times a
    one-boot build (measured: a full set takes ~10 min here, the one-boot set
    ~1.5 min), dealt heaviest first to the lightest shard, so shards finish
    together."""
    load = [0] * count
    placed: dict[str, int] = {}
    for build in sorted(builds, key=lambda b: (b not in full, builds.index(b))):
        shard = load.index(min(load))
        placed[build] = shard
        load[shard] += 5 if build in full else 1
    return placed


def load_release(release_id: str) -> Release:
    """:func:`ensure_release`, where missing source archives are a skip (a
    failure under ``BOSKY_STRICT=1``) rather than an error."""
    try:
        return ensure_release(release_id)
    except SourcesMissing as exc:
        needs.unavailable(str(exc))


@functools.cache
def namespace_problem() -> Optional[str]:
    """Why booting cannot work here (None when it can): checked once per session."""
    if os.geteuid() != 0:
        return "booting cloud-init needs root (mount/net/pid namespaces via unshare)"
    if shutil.which("unshare") is None:
        return "booting cloud-init needs unshare (util-linux)"
    cmd = [
        "unshare", "--mount", "--net", "--pid", "--fork", "--kill-child",
        "--mount-proc", "--uts", "--propagation", "private", "--", "true",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare does not work here: {exc}"
    if proc.returncode != 0:
        return f"unshare does not work here: {proc.stderr.strip()}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that boots cloud-init, so ``-m "not cloudinit"`` skips them."""
    full = set(selected_releases())
    # ./dev test runs the boots in shards beside each other: they mostly wait
    # for cloud-init and the reporter, so two at once take about half the time.
    shard = boot_shard()
    placed = shard_of(booted_releases(), full, shard[1]) if shard else {}
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if BOOT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cloudinit)
        callspec = getattr(item, "callspec", None)
        build = callspec.params.get("cloudinit_release") if callspec is not None else None
        one_boot = item.get_closest_marker("every_build") is not None
        not_this_build = build is not None and build not in full and not one_boot
        # A boot that names no build (it picks its own) belongs to the first shard.
        not_this_shard = shard is not None and placed.get(build, 0) != shard[0]
        (dropped if not_this_build or not_this_shard else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", params=booted_releases())
def cloudinit_release(request: pytest.FixtureRequest) -> Release:
    """A provisioned cloud-init release (cached across sessions)."""
    problem = namespace_problem()
    if problem:
        needs.unavailable(problem)
    release = load_release(request.param)
    compile_bosky(release)
    return release


@pytest.fixture
def imds() -> Iterator[MetadataServer]:
    """A fresh IMDS emulator on 127.0.0.1 (IMDSv2 tokens required)."""
    with MetadataServer() as server:
        yield server


_DEFAULT: Any = object()


@pytest.fixture
def instance(
    cloudinit_release: Release, imds: MetadataServer, tmp_path: Path
) -> Callable[..., Instance]:
    """Factory for simulated instances: ``instance(env={...}, name="a", **Instance kwargs)``.

    Defaults: this test's release and emulator; each call is a new instance
    (own disks) unless the same ``name`` is given again.
    """
    counter = itertools.count(1)

    def make(
        env: Optional[Mapping[str, str]] = None,
        *,
        name: Optional[str] = None,
        release: Optional[Release] = None,
        imds: Optional[MetadataServer] = _DEFAULT,
        **kwargs: Any,
    ) -> Instance:
        server = imds_default if imds is _DEFAULT else imds
        root = tmp_path / (name or f"instance-{next(counter)}")
        return Instance(release or cloudinit_release, root, imds=server, env=env, **kwargs)

    imds_default = imds
    return make
