"""The only ways bosky writes, appends to and locks files, and makes its directories.

bosky runs as root, in directories (``/run/bosky``, ``/var/lib/bosky``,
``/var/log``) and at paths (a configured ``spool_dir``) that another local
user may have reached first. So nothing here follows a symlink at the name it
writes (``O_NOFOLLOW``; a rename replaces a planted link, it never writes
through it), a file is created in the directory opened once (``dir_fd``), and
a directory bosky did not make is used only if root or this user owns it and
neither group nor others may write to it: otherwise :class:`UnsafePath`, whose
message is one line.

Nothing from bosky is imported here (everything imports this), and nothing
that the cloud-init stage has not loaded already: the stage writes its job
file with :func:`write_atomic`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from typing import Any, Dict, Optional

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW
#: What a file name built from data (an instance id, an EventId) may hold:
#: no "/", no leading dot, nothing a terminal or a shell would read twice.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
_NAME_MAX = 128
TMP_PREFIX = ".tmp-"


class UnsafePath(OSError):
    """A path bosky refuses to use; ``str()`` is one line that says why."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unsafe path"


def _refuse(path: str, why: str) -> UnsafePath:
    return UnsafePath(f"{path}: {why}; bosky refuses to use it (remove it, or fix its owner "
                      "and mode)")


def _check_dir(path: str, st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "not a directory")
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise _refuse(path, f"owned by uid {st.st_uid}, not by root or uid {euid}")
    if st.st_mode & 0o022:
        raise _refuse(path, f"group or others may write to it (mode {st.st_mode & 0o7777:04o})")


def private_dir(path: str, mode: int = 0o700) -> None:
    """Make ``path`` (and missing parents) with ``mode``, or accept it as it is
    if it is a real directory (not a symlink) that root or this user owns and
    that neither group nor others can write; this user's own gets ``mode``.

    Raises :class:`UnsafePath` (one line) for anything else, PermissionError
    when this user may not make it.
    """
    parent = os.path.dirname(path.rstrip("/"))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, _DIR)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(path, "a symlink or not a directory") from None
        raise
    try:
        st = os.fstat(fd)
        _check_dir(path, st)
        if st.st_uid == os.geteuid() and st.st_mode & 0o777 != mode:
            os.fchmod(fd, mode)  # whatever the umask, or a mode from an older bosky
    finally:
        os.close(fd)


def checked_dir(path: str) -> None:
    """Refuse (:class:`UnsafePath`) an existing ``path`` that :func:`private_dir`
    would refuse; a missing one is fine (nothing in it can be read)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "a symlink")
    _check_dir(path, st)


def safe_name(text: str, what: str) -> str:
    """``text`` if it can be one file name in a directory of bosky's, else
    :class:`UnsafePath`: ids from the instance or the network (``../../x``)
    never become a path outside that directory."""
    if not (0 < len(text) <= _NAME_MAX and text[0] != "." and set(text) <= _NAME_CHARS):
        shown = text[:_NAME_MAX].encode("unicode_escape").decode("ascii")
        raise UnsafePath(f"{what} {shown!r} cannot be a file name; bosky refuses it")
    return text


def write_atomic(path: str, data: bytes, mode: int = 0o600, *, sync: bool = True,
                 hold: bool = False) -> Optional[int]:
    """Replace ``path`` with ``data`` at once: a reader (or a systemd path
    unit) sees the old file or the whole new one, never half, and never
    writes through a symlink planted at ``path``.

    Temp file (``.tmp-PID-NS``, created exclusively, ``mode`` whatever the
    umask), fsync, rename, fsync of the directory. ``sync=False`` skips the
    fsyncs (survives the process being killed, not a power cut). ``hold``:
    the temp file is locked (flock) before it has its name and the open
    descriptor is returned, still locked, for the caller to close.
    """
    folder, name = os.path.split(path)
    dir_fd = os.open(folder or ".", _DIR)
    tmp = f"{TMP_PREFIX}{os.getpid()}-{time.time_ns()}"
    fd = -1
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode, dir_fd=dir_fd)
        if hold:  # before the name exists, so no reader ever sees it unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:  # os.write may write less (a nearly full disk); a short file is corrupt
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[written:]
        if sync:
            os.fsync(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        if sync:
            try:  # the file is complete; this hurries its name to disk
                os.fsync(dir_fd)
            except OSError:
                pass
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    finally:
        os.close(dir_fd)
    if hold:
        return fd
    os.close(fd)
    return None


def open_append(path: str, mode: int = 0o600) -> int:
    """A descriptor appending to ``path`` (created with ``mode``): refused
    (:class:`UnsafePath`) if ``path`` is a symlink, not a regular file, not
    this user's, or has another name (a hard link to someone else's file)."""
    try:  # O_NONBLOCK: a planted FIFO fails at once instead of blocking the open
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | _NOFOLLOW,
                     mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise _refuse(path, "a symlink or a FIFO") from None
        raise
    st = os.fstat(fd)
    why = ("not a regular file" if not stat.S_ISREG(st.st_mode)
           else f"owned by uid {st.st_uid}" if st.st_uid != os.geteuid()
           else "a hard link to another file" if st.st_nlink != 1 else "")
    if why:
        os.close(fd)
        raise _refuse(path, why)
    os.set_blocking(fd, True)
    return fd


def append(path: str, data: bytes, mode: int = 0o600) -> None:
    """Append ``data`` to ``path`` in one write (see :func:`open_append`)."""
    fd = open_append(path, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def lock(path: str, *, timeout: float = 0.0, shared: bool = False) -> Optional[int]:
    """A descriptor holding a lock (flock: a killed holder never leaves it
    held) on ``path``, created if missing; None if another process holds it
    past ``timeout`` seconds. PermissionError and :class:`UnsafePath` (a
    symlink at ``path``) are raised: they are not "busy"."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "a symlink") from None
        raise
    end = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= end:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return None
                raise
        time.sleep(0.05)


def locked_elsewhere(fd: int) -> bool:
    """Whether another open file description holds an exclusive lock on ``fd``'s
    file (its writer or sender is alive); the probe's shared lock goes when
    ``fd`` is closed."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES)
    return False


def create_new(path: str, mode: int = 0o600) -> bool:
    """Create ``path`` empty; False if it (or anything at that name) exists."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode))
    except FileExistsError:
        return False
    return True


def read_bytes(path: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``path``, never through a symlink at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(path, "not a regular file")
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


__all__ = ["TMP_PREFIX", "UnsafePath", "append", "checked_dir", "create_new", "lock",
           "locked_elsewhere", "open_append", "private_dir", "read_bytes", "safe_name",
           "write_atomic"]


def read_json(path: str) -> Optional[Dict[str, Any]]:
    """The JSON object in ``path``; None when it is missing, unreadable, not JSON
    or not an object (bosky's state files, cloud-init's records)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
