"""The one exception type kd_nmt raises for user errors (bad input, missing files, mismatches).

The CLI prints its message alone, without a traceback: it names the problem and what to do.
"""
import errno
import os
import re
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


def unwritable(folder):
    """Why no file can be created in ``folder`` — "does not exist", "is not a directory" (a file
    stands there), "is on a read-only file system", "is not writable" — or None if one can."""
    if not os.path.isdir(folder):
        return "is not a directory" if os.path.exists(folder) else "does not exist"
    if os.access(folder, os.W_OK):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "is on a read-only file system" if read_only else "is not writable"


def describe_os_error(exc):
    """``"<path>: <what> (<what to do>)"`` for an OSError — the one line a command prints."""
    name = errno.errorcode.get(exc.errno, "")
    what = exc.strerror or os.strerror(exc.errno or 0) or str(exc)
    path = exc.filename if exc.filename is not None else "(no file)"
    advice = _OS_ADVICE.get(name)
    return f"{path}: {what}" + (f" ({advice})" if advice else "")


# the last line of a Python traceback that ends in an OSError: "OSError: [Errno 28] No space ..."
_OS_ERROR_LINE = re.compile(r"^\w*Error: \[Errno (\d+)\] ([^:]+?)(?:: '([^']*)')?$")


def os_error_in(output):
    """The OSError a Python child process died of (its traceback's last line, in ``output``),
    or None: a child's full disk is the parent's one line, not its traceback."""
    lines = (output or "").strip().splitlines()
    match = _OS_ERROR_LINE.match(lines[-1].strip()) if lines else None
    return OSError(int(match[1]), match[2], match[3]) if match else None


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
