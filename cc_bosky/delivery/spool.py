"""A durable spool for events (and actions) not yet delivered.

Like a log shipper's disk buffer: an event is written here before anything
gives up on it, and sent later by the boot reporter, the next boot, or
``bosky flush``. Each record is one file, written atomically (temp file,
fsync, rename, fsync of the directory) and self-checking (a SHA-256 of its
body in its first line), so a torn or corrupted file is detected and set
aside, never sent half-formed. An action (a lifecycle-hook completion, a
stack signal) is a record like an event, named ``.action`` so that an older
bosky, which knows only ``.event`` records, leaves it alone instead of
setting it aside as corrupt; an event record's body is unchanged, so records
written by earlier versions read as before. The spool is bounded; past the bound the oldest
events are dropped and counted, and the next delivered event carries that
count.

Three kinds of lock, all ``flock`` so a killed process never leaves one held:

- ``.lock`` over the whole spool: one flusher at a time, so no record is sent
  by two flushers at once;
- a record file being sent right now by the process that wrote it (``bosky``
  spools its event before sending) is locked by that process; flushers skip
  it, and it becomes theirs the moment that process exits, however it exits;
- a temp file is locked by its writer, so the cleaner removes only temp files
  whose writer is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from .. import files
from .deliverable import WAYS, Item, delivery_id, dump, load, way

_MAGIC = "bosky-spool 1"
_SUFFIXES = tuple(w.suffix for w in WAYS)
_TMP_PREFIX = files.TMP_PREFIX
# A temp file nobody holds and this old was left by a killed writer. (A writer
# holds its temp file's lock from the first byte, but not in the instant
# between creating and locking it; the age makes that instant safe.)
_STALE_TMP = 60.0
_STAMP_DIGITS = 20  # file names: <time_ns, 20 digits>-<EventId>.event (or .action)


class SpoolError(Exception):
    """The spool could not take the event (permissions, disk full)."""


@dataclasses.dataclass
class Record:
    """One spooled event and where it was meant to go.

    ``in_flight``: another live process is sending it right now (it holds the
    file's lock). ``lock_fd``: this process holds that lock itself.
    """

    path: str
    event: Item  # an event or an action (:mod:`.deliverable`)
    region: str
    endpoint_url: Optional[str]
    spooled_at: float
    attempts: int = 0
    last_error: str = ""
    in_flight: bool = False
    lock_fd: Optional[int] = dataclasses.field(default=None, repr=False, compare=False)

    def body(self) -> Dict[str, Any]:
        return {
            **dump(self.event),
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "spooled_at": self.spooled_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


@dataclasses.dataclass
class Status:
    records: List[Record]
    corrupt: List[str]  # oldest first, at most max_events
    rejected: List[str]
    dropped: int
    bytes: int


class Spool:
    def __init__(self, directory: str, max_events: int = 1000,
                 max_bytes: int = 16 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._lock_depth = 0  # lock() is re-entrant for the thread holding it
        self._lock_owner: Optional[int] = None

    # -- writing ---------------------------------------------------------

    def put(self, event: Item, region: str, endpoint_url: Optional[str],
            reason: str, attempts: int = 0, *, hold: bool = False,
            sync: bool = True) -> Record:
        """Write ``event`` durably; raises SpoolError when that is impossible.

        ``hold``: keep the record locked (``record.lock_fd``) until
        :meth:`release`, :meth:`remove` or :meth:`update`, so no flusher sends
        it while this process is still sending it itself. A held record does
        not push older ones out of the spool yet: most are delivered at once.
        ``sync=False`` skips the fsyncs: the record then survives the process
        being killed (it is in the kernel's page cache) but not a power cut,
        which is right for a copy that is about to be sent and removed; the
        first failed attempt rewrites it durably (:meth:`update`).
        """
        self._ensure_dir()
        name = f"{time.time_ns():0{_STAMP_DIGITS}d}-{delivery_id(event)}{way(event).suffix}"
        record = Record(os.path.join(self.directory, name), event, region, endpoint_url,
                        time.time(), attempts, reason)
        existing = self._path_for(delivery_id(event))
        if existing:  # the same event spooled before: keep one file per EventId
            record.path = existing
        record.lock_fd = self._write(record, hold, sync)
        if not hold:  # a held record is counted once it is released undelivered
            self._enforce_bound()
        return record

    def _write(self, record: Record, hold: bool = False, sync: bool = True) -> Optional[int]:
        data = json.dumps(record.body(), ensure_ascii=False, separators=(",", ":")).encode()
        header = f"{_MAGIC} sha256={hashlib.sha256(data).hexdigest()} len={len(data)}\n"
        try:
            # Locked before the name exists (hold): the lock travels with the
            # file through the rename, so no flusher sees it unlocked while held.
            return files.write_atomic(record.path, header.encode() + data, hold=hold, sync=sync)
        except OSError as exc:
            raise SpoolError(f"cannot write to spool {self.directory}: "
                             f"{exc.strerror or exc}") from None

    def _ensure_dir(self) -> None:
        """Make the spool, or accept it only if root or this user made it and
        nobody else can write to it: root's ``bosky flush`` must never send
        records that another user planted, with root's credentials."""
        try:
            files.private_dir(self.directory)
        except files.UnsafePath as exc:
            raise SpoolError(f"spool {exc}") from None
        except PermissionError:
            raise SpoolError(self._not_ours()) from None
        except OSError as exc:
            raise SpoolError(f"cannot create spool {self.directory}: {exc.strerror}") from None

    def _not_ours(self) -> str:
        """Why this user may not use the spool, said as what to do about it."""
        owner = None
        path = self.directory
        while owner is None and path not in ("", "/"):
            with contextlib.suppress(OSError):
                owner = os.stat(path).st_uid
            path = os.path.dirname(path.rstrip("/"))
        whose = "root's" if owner in (None, 0) else f"uid {owner}'s"
        run = "run bosky with sudo" if owner in (None, 0) else "run bosky as that user"
        return f"spool {self.directory} is {whose} and this user (uid {os.geteuid()}) " \
               f"may not use it: {run}"

    def check(self) -> None:
        """SpoolError (one line) if this user cannot read the spool, or it is
        a directory bosky refuses; a spool not made yet is fine (empty)."""
        try:
            files.checked_dir(self.directory)
        except files.UnsafePath as exc:
            raise SpoolError(f"spool {exc}") from None
        except PermissionError:
            raise SpoolError(self._not_ours()) from None
        if os.path.isdir(self.directory) and not os.access(self.directory, os.R_OK | os.X_OK):
            raise SpoolError(self._not_ours())

    def _path_for(self, event_id: str) -> Optional[str]:
        for name in self._names():
            if _event_id_of(name) == event_id:
                return os.path.join(self.directory, name)
        return None

    # -- reading ---------------------------------------------------------

    def _names(self) -> List[str]:
        """Record file names, oldest first (the name starts with its time)."""
        try:
            return sorted(n for n in os.listdir(self.directory)
                          if n.endswith(_SUFFIXES))
        except PermissionError:  # not "no events": this user cannot see them
            raise SpoolError(self._not_ours()) from None
        except OSError:
            return []

    def waiting(self) -> bool:
        """Whether any record file is here, read or not: a look that, unlike
        :meth:`records`, sets nothing aside (a flush counts what it sets aside)."""
        return bool(self._names())

    def records(self) -> Tuple[List[Record], List[str]]:
        """Valid records oldest first, one per EventId, and the files set aside as corrupt."""
        good: List[Record] = []
        bad: List[str] = []
        for name in _first_per_event(self._names()):
            path = os.path.join(self.directory, name)
            try:
                good.append(_read(path))
            except FileNotFoundError:
                continue  # delivered by another flusher meanwhile
            except (OSError, ValueError, LookupError, TypeError, AttributeError, RecursionError):
                bad.append(self.set_aside(path, "corrupt"))
        return good, bad

    def set_aside(self, path: str, why: str) -> str:
        """Move a file that must not be sent into ``corrupt/`` or ``rejected/``,
        where ``bosky status`` reports it and nothing sends it. Each folder is
        bounded like the spool (``max_events`` files, ``max_bytes``): past
        that, its oldest files are removed."""
        folder = os.path.join(self.directory, why)
        target = os.path.join(folder, os.path.basename(path))
        with contextlib.suppress(OSError):
            files.private_dir(folder)
            os.rename(path, target)
            self._bound_aside(folder)
            return target
        return path

    def _bound_aside(self, folder: str) -> None:
        names = _aside_names(folder)  # oldest first
        sizes = [_file_size(os.path.join(folder, n)) for n in names]
        count, total = len(names), sum(sizes)
        for name, size in zip(names, sizes):
            if count <= self.max_events and total <= self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
            count, total = count - 1, total - size

    def aside(self, why: str) -> List[str]:
        """The paths in ``corrupt/`` or ``rejected/``, oldest first."""
        folder = os.path.join(self.directory, why)
        return [os.path.join(folder, n) for n in _aside_names(folder)]

    def status(self) -> Status:
        self.check()
        records, _ = self.records()
        size = sum(_file_size(r.path) for r in records)
        return Status(records, self.aside("corrupt"), self.aside("rejected"), self.dropped(), size)

    # -- removing ----------------------------------------------------------

    def remove(self, record: Record) -> None:
        """The record was delivered: forget it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record.path)
        self.release(record)

    def release(self, record: Record) -> None:
        """Let flushers have a record this process held while sending it."""
        if record.lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(record.lock_fd)
            record.lock_fd = None

    def reject(self, record: Record) -> str:
        """EventBridge refused the record for good: keep it for ``bosky status``, unsent."""
        target = self.set_aside(record.path, "rejected")
        self.release(record)
        return target

    def update(self, record: Record, reason: str, attempts: Optional[int] = None) -> None:
        """Note a failed attempt (``attempts`` given: the total so far), and release it.

        A record that is gone meanwhile (dropped by the bound) stays gone.
        """
        record.attempts = record.attempts + 1 if attempts is None else attempts
        record.last_error = reason
        was_held = record.lock_fd is not None
        with contextlib.suppress(SpoolError):  # disk full: the old copy stays, still valid
            if os.path.exists(record.path):
                self._write(record)
        self.release(record)
        if was_held:  # it stays in the spool now: the bound applies to it
            self._enforce_bound()

    def _enforce_bound(self) -> None:
        with contextlib.suppress(SpoolError), self.lock(blocking=False) as held:
            if not held:
                return  # the flusher holding the lock enforces it when done
            self.enforce_bound_locked()

    def dedupe_locked(self) -> List[str]:
        """Remove later copies of an EventId already spooled; returns the names left."""
        names = self._names()
        keep = _first_per_event(names)
        kept = set(keep)
        for name in names:
            path = os.path.join(self.directory, name)
            if name not in kept and not _held(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return keep

    def enforce_bound_locked(self) -> None:
        """Drop the oldest records past the bound, counting them; never one being sent."""
        names = self.dedupe_locked()
        sizes = [_file_size(os.path.join(self.directory, n)) for n in names]
        count, total = len(names), sum(sizes)
        dropped = 0
        for name, size in zip(names, sizes):
            if count <= self.max_events and total <= self.max_bytes:
                break
            path = os.path.join(self.directory, name)
            if _held(path):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            count, total, dropped = count - 1, total - size, dropped + 1
        if dropped:
            self._set_dropped(self.dropped() + dropped)
        self._clean_stale_tmp()

    def _clean_stale_tmp(self) -> None:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        now = time.time()
        for name in names:
            path = os.path.join(self.directory, name)
            if _TMP_PREFIX not in name:  # ".tmp-<pid>-<ns>" and "dropped.tmp-<pid>"
                continue
            with contextlib.suppress(OSError):
                if now - os.path.getmtime(path) > _STALE_TMP and not _held(path):
                    os.unlink(path)

    # -- the dropped counter ---------------------------------------------

    def dropped(self) -> int:
        try:
            with open(os.path.join(self.directory, "dropped"), encoding="ascii") as f:
                return max(0, int(f.read().strip() or 0))
        except (OSError, ValueError):
            return 0

    def _set_dropped(self, count: int) -> None:
        with contextlib.suppress(OSError):
            files.write_atomic(os.path.join(self.directory, "dropped"), str(count).encode())

    def acknowledge_dropped(self, count: int, timeout: float = 5.0) -> None:
        """``count`` drops were reported in a delivered event.

        If the lock cannot be had in time the count stays and is reported
        again: a count said twice is better than a loss never said.
        """
        with contextlib.suppress(SpoolError), self.lock(blocking=True, timeout=timeout) as held:
            if held:
                self._set_dropped(max(0, self.dropped() - count))

    # -- locking -----------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, blocking: bool = True, timeout: float = 5.0) -> Iterator[bool]:
        """An exclusive lock over the spool: one flusher at a time, so no
        event is sent by two processes at once.

        Re-entrant: a flusher that holds it may call what takes it again
        (flock would otherwise block on its own second descriptor). A spool
        this user may not use, or that bosky refuses, is SpoolError: not busy.
        """
        if self._lock_depth and self._lock_owner == threading.get_ident():
            self._lock_depth += 1
            try:
                yield True
            finally:
                self._lock_depth -= 1
            return
        self._ensure_dir()
        try:
            fd = files.lock(os.path.join(self.directory, ".lock"),
                            timeout=timeout if blocking else 0.0)
        except PermissionError:
            raise SpoolError(self._not_ours()) from None
        except OSError as exc:
            raise SpoolError(f"cannot lock spool {self.directory}: {exc}") from None
        if fd is None:
            yield False
            return
        self._lock_depth, self._lock_owner = 1, threading.get_ident()
        try:
            yield True
        finally:
            self._lock_depth, self._lock_owner = 0, None
            os.close(fd)


def _held(path: str) -> bool:
    """True if a live process holds ``path``'s lock (it is writing or sending it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return files.locked_elsewhere(fd)
    finally:
        os.close(fd)


def _aside_names(folder: str) -> List[str]:
    """A ``corrupt/`` or ``rejected/`` folder's files, oldest first (by name: it starts with
    the time the record was spooled)."""
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _event_id_of(name: str) -> str:
    return name[_STAMP_DIGITS + 1:].rsplit(".", 1)[0]


def _first_per_event(names: List[str]) -> List[str]:
    """``names`` (oldest first) without later copies of the same EventId.

    Two writers spooling one event at the same instant each write a file; the
    oldest is the one kept, so the event is sent once.
    """
    seen: Set[str] = set()
    kept: List[str] = []
    for name in names:
        event_id = _event_id_of(name)
        if event_id not in seen:
            seen.add(event_id)
            kept.append(name)
    return kept


def _read(path: str) -> Record:
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as f:
        in_flight = files.locked_elsewhere(f.fileno())
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
        event=load(body),
        region=str(body["region"]),
        endpoint_url=body.get("endpoint_url"),
        spooled_at=float(body["spooled_at"]),
        attempts=int(body.get("attempts", 0)),
        last_error=str(body.get("last_error", "")),
        in_flight=in_flight,
    )


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
