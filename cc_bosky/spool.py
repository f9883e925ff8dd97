"""A durable spool for events not yet delivered.

Like a log shipper's disk buffer: an event that could not be sent now is
written here before anything gives up on it, and sent later by the boot
reporter, the next boot, or ``bosky flush``. Each record is one file, written
atomically (temp file, fsync, rename, fsync of the directory) and
self-checking (a SHA-256 of its body in its first line), so a torn or
corrupted file is detected and set aside, never sent half-formed. The spool is
bounded; past the bound the oldest events are dropped and counted, and the
next delivered event carries that count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from .event import Event

_MAGIC = "bosky-spool 1"
_SUFFIX = ".event"
_STALE_TMP = 3600.0  # a temp file this old was left by a killed writer


class SpoolError(Exception):
    """The spool could not take the event (permissions, disk full)."""


@dataclasses.dataclass
class Record:
    """One spooled event and where it was meant to go."""

    path: str
    event: Event
    region: str
    endpoint_url: Optional[str]
    spooled_at: float
    attempts: int = 0
    last_error: str = ""

    def body(self) -> Dict[str, Any]:
        return {
            "entry": self.event.entry(),
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "spooled_at": self.spooled_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


@dataclasses.dataclass
class Status:
    records: List[Record]
    corrupt: List[str]
    rejected: List[str]
    dropped: int
    bytes: int


class Spool:
    def __init__(self, directory: str, max_events: int = 1000,
                 max_bytes: int = 16 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_events = max_events
        self.max_bytes = max_bytes

    # -- writing ---------------------------------------------------------

    def put(self, event: Event, region: str, endpoint_url: Optional[str],
            reason: str, attempts: int = 0) -> Record:
        """Write ``event`` durably; raises SpoolError when that is impossible."""
        self._ensure_dir()
        name = f"{time.time_ns():020d}-{event.event_id}{_SUFFIX}"
        record = Record(os.path.join(self.directory, name), event, region, endpoint_url,
                        time.time(), attempts, reason)
        existing = self._path_for(event.event_id)
        if existing:  # the same event spooled before: keep one file per EventId
            record.path = existing
        self._write(record)
        self._enforce_bound()
        return record

    def _write(self, record: Record) -> None:
        data = json.dumps(record.body(), ensure_ascii=False, separators=(",", ":")).encode()
        header = f"{_MAGIC} sha256={hashlib.sha256(data).hexdigest()} len={len(data)}\n"
        tmp = os.path.join(self.directory, f".tmp-{os.getpid()}-{time.time_ns()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, header.encode() + data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, record.path)
            self._fsync_dir()
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SpoolError(f"cannot write to spool {self.directory}: {exc.strerror}") from None

    def _ensure_dir(self) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise SpoolError(f"cannot create spool {self.directory}: {exc.strerror}") from None

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _path_for(self, event_id: str) -> Optional[str]:
        for name in self._names():
            if name.endswith(f"-{event_id}{_SUFFIX}"):
                return os.path.join(self.directory, name)
        return None

    # -- reading ---------------------------------------------------------

    def _names(self) -> List[str]:
        try:
            return sorted(n for n in os.listdir(self.directory) if n.endswith(_SUFFIX))
        except OSError:
            return []

    def records(self) -> Tuple[List[Record], List[str]]:
        """Valid records oldest first, and the files set aside as corrupt."""
        good: List[Record] = []
        bad: List[str] = []
        for name in self._names():
            path = os.path.join(self.directory, name)
            try:
                good.append(_read(path))
            except FileNotFoundError:
                continue  # delivered by another flusher meanwhile
            except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
                bad.append(self.set_aside(path, "corrupt"))
        return good, bad

    def set_aside(self, path: str, why: str) -> str:
        """Move a file that must not be sent into ``corrupt/`` or ``rejected/``,
        where ``bosky status`` reports it and nothing sends it."""
        folder = os.path.join(self.directory, why)
        target = os.path.join(folder, os.path.basename(path))
        with contextlib.suppress(OSError):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            os.rename(path, target)
            return target
        return path

    def aside(self, why: str) -> List[str]:
        folder = os.path.join(self.directory, why)
        try:
            return sorted(os.path.join(folder, n) for n in os.listdir(folder))
        except OSError:
            return []

    def status(self) -> Status:
        records, _ = self.records()
        size = sum(_file_size(r.path) for r in records)
        return Status(records, self.aside("corrupt"), self.aside("rejected"), self.dropped(), size)

    # -- removing ----------------------------------------------------------

    def remove(self, record: Record) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record.path)

    def update(self, record: Record, reason: str) -> None:
        record.attempts += 1
        record.last_error = reason
        with contextlib.suppress(SpoolError):
            if os.path.exists(record.path):
                self._write(record)

    def _enforce_bound(self) -> None:
        with self.lock(blocking=False) as held:
            if not held:
                return  # the flusher holding the lock enforces it when done
            self.enforce_bound_locked()

    def enforce_bound_locked(self) -> None:
        names = self._names()
        sizes = [_file_size(os.path.join(self.directory, n)) for n in names]
        total = sum(sizes)
        dropped = 0
        while names and (len(names) > self.max_events or total > self.max_bytes):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, names[0]))
            total -= sizes.pop(0)
            names.pop(0)
            dropped += 1
        if dropped:
            self._set_dropped(self.dropped() + dropped)
        self._clean_stale_tmp()

    def _clean_stale_tmp(self) -> None:
        with contextlib.suppress(OSError):
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                if name.startswith(".tmp-") and time.time() - os.path.getmtime(path) > _STALE_TMP:
                    os.unlink(path)

    # -- the dropped counter ---------------------------------------------

    def dropped(self) -> int:
        try:
            with open(os.path.join(self.directory, "dropped"), encoding="ascii") as f:
                return max(0, int(f.read().strip() or 0))
        except (OSError, ValueError):
            return 0

    def _set_dropped(self, count: int) -> None:
        path = os.path.join(self.directory, "dropped")
        tmp = path + f".tmp-{os.getpid()}"
        with contextlib.suppress(OSError):
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(str(count))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)

    def acknowledge_dropped(self, count: int) -> None:
        """``count`` drops were reported in a delivered event."""
        with self.lock(blocking=True) as held:
            if held:
                self._set_dropped(max(0, self.dropped() - count))

    # -- locking -----------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, blocking: bool = True, timeout: float = 5.0) -> Iterator[bool]:
        """An exclusive lock over the spool: one flusher at a time, so no
        event is sent by two processes at once."""
        try:
            self._ensure_dir()
            fd = os.open(os.path.join(self.directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except (OSError, SpoolError):
            yield False
            return
        try:
            yield _flock(fd, blocking, timeout)
        finally:
            os.close(fd)


def _flock(fd: int, blocking: bool, timeout: float) -> bool:
    end = time.monotonic() + (timeout if blocking else 0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= end:
                return False
            time.sleep(0.05)


def _read(path: str) -> Record:
    with open(path, "rb") as f:
        raw = f.read(2 * 1024 * 1024)
    header, _, data = raw.partition(b"\n")
    fields = header.decode("ascii").split(" ")
    if " ".join(fields[:2]) != _MAGIC:
        raise ValueError("not a spool record")
    meta = dict(f.split("=", 1) for f in fields[2:])
    if int(meta["len"]) != len(data) or hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError("checksum mismatch")
    body: Mapping[str, Any] = json.loads(data)
    return Record(
        path=path,
        event=Event.from_entry(body["entry"]),
        region=str(body["region"]),
        endpoint_url=body.get("endpoint_url"),
        spooled_at=float(body["spooled_at"]),
        attempts=int(body.get("attempts", 0)),
        last_error=str(body.get("last_error", "")),
    )


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
