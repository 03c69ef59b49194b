"""One export per store at a time, through an advisory file lock held by the exporting process.

The lock is ``flock`` on a file beside the database. The operating system releases it when
the process ends in any way (exit, crash, ``kill -9``, reboot), so a lock never goes stale and
never needs a manual reset. The file itself stays; only the lock on it matters.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from shopify_export.errors import DatabaseError


@dataclass(frozen=True)
class LockHolder:
    """The process holding a store's lock, as it recorded itself in the lock file."""

    pid: int | None
    job_id: str | None


def lock_path(db_path: Path, store_name: str) -> Path:
    """Return the lock file of ``store_name`` for the database at ``db_path``.

    The path is resolved first, so that two spellings of one database (a symbolic link, a
    relative path) share one lock.
    """
    db_path = db_path.resolve()
    return db_path.parent / f".{db_path.name}.{store_name}.lock"


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise DatabaseError(
            f"Cannot open lock file {path}: {error.strerror}; check that its folder is writable"
        ) from error


def _read_holder(fd: int) -> LockHolder:
    os.lseek(fd, 0, os.SEEK_SET)
    fields = os.read(fd, 512).decode("utf-8", "replace").split()
    pid = int(fields[0]) if fields and fields[0].isdigit() else None
    job_id = fields[1] if len(fields) > 1 else None
    return LockHolder(pid=pid, job_id=job_id)


class StoreLock:
    """The export lock of one store; ``acquire`` returns the holder when another process has it."""

    def __init__(self, db_path: Path, store_name: str) -> None:
        self.path = lock_path(db_path, store_name)
        self._fd: int | None = None

    def acquire(self) -> LockHolder | None:
        """Take the lock without waiting; return None on success, else who holds it."""
        fd = _open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            return holder
        self._fd = fd
        self.record(job_id=None)
        return None

    def record(self, job_id: str | None) -> None:
        """Write this process's id and its job id into the lock file, for ``status``."""
        if self._fd is None:
            return
        line = f"{os.getpid()} {job_id or ''}\n".encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, line, 0)

    def release(self) -> None:
        """Release the lock (the operating system does this too when the process ends)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def current_holder(db_path: Path, store_name: str) -> LockHolder | None:
    """Return the process exporting ``store_name`` right now, or None when no process is."""
    path = lock_path(db_path, store_name)
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
