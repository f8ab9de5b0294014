"""The one exception type kd_nmt raises for user errors (bad input, missing files, mismatches).

The CLI prints its message alone, without a traceback: it names the problem and what to do.
"""
import errno
import os
import sys


class KDNMTError(Exception):
    """A user-facing error with a complete, actionable message."""


# what to do about an OS-level fault, by errno name: the fault is the machine's, not a bug
_OS_ADVICE = {
    "ENOSPC": "no space left: free some, or write elsewhere; nothing partial was kept",
    "EDQUOT": "disk quota exceeded: free some, or write elsewhere",
    "EROFS": "read-only file system: choose a writable output",
    "EACCES": "permission denied: choose a writable output, or fix its permissions",
    "EPERM": "not permitted: choose another output",
    "ENOTDIR": "a file stands where a folder is expected: give a folder, or remove the file",
    "EISDIR": "a folder stands where a file is expected: give a file path",
    "ENOENT": "not found: check the path",
    "EEXIST": "already exists: remove it or choose another path",
    "EIO": "input/output error: the disk may be failing",
}


def describe_os_error(exc):
    """``"<path>: <what> (<what to do>)"`` for an OSError — the one line a command prints."""
    name = errno.errorcode.get(exc.errno, "")
    what = exc.strerror or os.strerror(exc.errno or 0) or str(exc)
    path = exc.filename if exc.filename is not None else "(no file)"
    advice = _OS_ADVICE.get(name)
    return f"{path}: {what}" + (f" ({advice})" if advice else "")


def report_errors(prog, func, *args):
    """``func(*args)``'s exit status (0 for None), with the one-line contract of every kd-nmt
    command and script: a KDNMTError or an OSError is ``PROG: error: ...`` and status 2, Ctrl-C
    one line and status 130; anything else is a bug and keeps its traceback."""
    try:
        return func(*args) or 0
    except KDNMTError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only, full disk, a file where a folder is expected: not a bug
        print(f"{prog}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume where it can", file=sys.stderr)
        return 130
