"""The files ``bosky install`` writes, recognised as its own by a marker on their
first line, so ``uninstall`` never deletes a file someone else wrote."""

from __future__ import annotations

from pathlib import Path

from .. import files
from ..errors import UsageError

MARKER = "# bosky-install-marker:"
FILE_MODE = 0o644
DIR_MODE = 0o755


def is_ours(path: Path) -> bool:
    """True when ``path`` starts with install's marker line."""
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return False
    return first.startswith(MARKER.encode())


def write_file(path: Path, text: str) -> bool:
    """Write ``text`` atomically with mode 0644; False when it was already so."""
    data = text.encode("utf-8")
    try:
        unchanged = path.read_bytes() == data and (path.stat().st_mode & 0o777) == FILE_MODE
    except OSError:
        unchanged = False
    if unchanged:
        return False
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # Its temporary name does not end in .cfg: cloud-init never reads a half-written file.
    files.write_atomic(str(path), data, FILE_MODE)
    return True


def refuse_foreign(path: Path) -> None:
    """A file of install's that someone else wrote is neither replaced nor removed."""
    if path.exists() and not is_ours(path):
        raise UsageError(f"{path} exists and was not written by bosky install; "
                         "move it away first")
