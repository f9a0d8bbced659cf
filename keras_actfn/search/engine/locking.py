"""One process at a time: an exclusive OS lock on a file, held for a block.

:func:`exclusive_lock` is what keeps two processes from writing one journal: the search
store (:meth:`~keras_actfn.search.engine.store.Store.driver_lock`, on ``<store>.lock``) and a GRAFS
checkpoint folder (on ``<folder>/.lock``) both take it. The lock is ``flock`` on the lock
file, so the OS drops it when its holder exits or is killed: a crashed run never blocks its
own resumption, and nothing has to clean stale lock files up. The file keeps a line naming
the holder (``pid N on HOST``) for the message of whoever finds it taken.

Systems without ``fcntl`` (Windows) take no lock.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

__all__ = ["exclusive_lock"]


@contextlib.contextmanager
def exclusive_lock(lock_path, on_conflict: Callable[[str], BaseException],
                   on_error: Callable[[OSError], BaseException] | None = None):
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the ``with`` block.

    Args:
        lock_path: the lock file; its folder must exist.
        on_conflict: ``on_conflict(holder) -> exception`` raised when another live process
            (or another open of the file in this one) holds the lock; ``holder`` is the line
            the holder wrote (``"pid N on HOST"``, or ``"?"``).
        on_error: ``on_error(os_error) -> exception`` raised when the lock file cannot be
            opened (a read-only folder, a path through a file...); default: the OSError.
    """
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = os.fspath(lock_path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        if on_error is None:
            raise
        raise on_error(err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "?"
            raise on_conflict(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
