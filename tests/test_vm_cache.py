"""The VM tier's image cache does not grow without end.

Every change to bosky bakes new images and disks (about 1 GB a suite), so a
working machine's cache filled its disk over a few sessions. A layer unused
for two days goes when a layer of its kind is next used; one in use stays.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.vm import image


def layer(cache: Path, name: str, age_days: float) -> Path:
    path = cache / "vm" / name
    path.mkdir(parents=True)
    then = time.time() - age_days * 86400
    os.utime(path, (then, then))
    return path


def test_layers_unused_for_two_days_go_when_their_kind_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOSKY_TEST_CACHE", str(tmp_path))
    current = layer(tmp_path, "baked-bookworm-new", 3)
    stale = layer(tmp_path, "baked-bookworm-old", 3)
    baseline = layer(tmp_path, "baked-bookworm-nobosky", 1)  # the benchmark's, used yesterday
    other_kind = layer(tmp_path, "disk-baked-bookworm-old-golden", 3)
    archives = layer(tmp_path, "archives", 30)  # the package downloads are kept

    assert image._used(current) == current

    assert current.exists() and time.time() - current.stat().st_mtime < 60
    assert not stale.exists()
    assert baseline.exists() and other_kind.exists() and archives.exists()
