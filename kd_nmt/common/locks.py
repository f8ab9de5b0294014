"""One process at a time in a work folder: an advisory ``flock`` on FOLDER/lock.

Two ``kd-nmt relabel`` (or ``cache-teacher``) runs on the same output would interleave their
chunks; the second is refused with one line instead. The lock is released when its file is
closed, which the OS also does when the process dies (a kill -9 leaves no stale lock).
"""
import fcntl
import os

from kd_nmt.errors import KDNMTError


def take_lock(folder, who, fix):
    """The open lock file of ``folder`` (keep it open while working; close it to release), or
    one KDNMTError: ``another <who> process is working in <folder>; <fix>``."""
    lock = open(os.path.join(folder, "lock"), "a")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise KDNMTError(f"another {who} process is working in {folder!r}; {fix}") from None
    return lock
