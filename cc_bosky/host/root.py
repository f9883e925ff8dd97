"""The system being looked at: this machine (root ``/``) or an image under a root."""

from __future__ import annotations

from pathlib import Path


def in_root(root: Path, system_path: str) -> Path:
    """``system_path`` (absolute, as the installed system sees it) under ``root``."""
    return root / system_path.lstrip("/")


def is_live(root: Path) -> bool:
    """Whether ``root`` is this running machine, not an image's files."""
    return root == Path("/")


def root_flag(root: Path) -> str:
    """The ``--root DIR`` to repeat in a suggested command ('' for this machine)."""
    return "" if is_live(root) else f" --root {root}"
