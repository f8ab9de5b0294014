"""Outputs whole or absent: every file a kd-nmt command or script publishes goes through here.

* ``atomic_write(path, data)`` / ``atomic_file(path)``: one file written to a temporary sibling,
  fsynced, renamed over ``path`` (a reader sees the old file or the new one, never half of one);
  the temporary is removed if the write fails (a full disk leaves no stray ``.tmp``).
* ``atomic_concat(parts, path)`` / ``atomic_copy(src, dst)``: files concatenated or copied into
  ``path`` the same way.
* ``publish_group(files)``: several files that only mean something together (a filter's kept
  source and target, a bench's CSV and Markdown table). Every one is written to its temporary
  first; only when all are written is the old *marker* (the last file, which recipes and reruns
  take as "done") removed and are they renamed into place, in order, the marker last. A full disk
  therefore changes nothing, and a kill between two renames leaves no marker: the group reads as
  unfinished and a rerun redoes it.
"""
import contextlib
import os
import shutil


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp(path):
    return f"{path}.tmp.{os.getpid()}"


def _write_tmp(path, data):
    """``data`` (str: UTF-8 with ``\\n`` newlines, or bytes) into ``path``'s temporary; its name."""
    tmp = _tmp(path)
    try:
        if isinstance(data, bytes):
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        else:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path, data):
    """Write ``data`` (str or bytes) to ``path`` via a temporary file and os.replace."""
    os.replace(_write_tmp(path, data), path)


@contextlib.contextmanager
def atomic_file(path, binary=False):
    """Write ``path`` through a temporary sibling: fsynced and renamed over ``path`` when the
    block ends, removed if it raises (a reader never sees a half-written file)."""
    tmp = _tmp(path)
    text = {} if binary else {"encoding": "utf-8", "newline": "\n"}
    try:
        with open(tmp, "wb" if binary else "w", **text) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_concat(parts, path):
    """Concatenate the files ``parts`` into ``path`` atomically (temporary file + os.replace)."""
    with atomic_file(path, binary=True) as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)


def atomic_copy(src, dst):
    """Copy the file ``src`` over ``dst`` atomically (``dst`` is the old file or the new one)."""
    with atomic_file(dst, binary=True) as out, open(src, "rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)


def publish_group(files):
    """Publish ``files`` (an ordered list of ``(path, str or bytes)``; the last is the marker)
    all together or not at all — see the module docstring."""
    if not files:
        return
    written = []
    try:
        for path, data in files:
            written.append((_write_tmp(path, data), path))
    except BaseException:  # a full disk: the old group stands as it was, no temporary is left
        for tmp, _ in written:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    with contextlib.suppress(FileNotFoundError):
        os.remove(files[-1][0])  # from here on the group reads as unfinished until it is whole
    for tmp, path in written:
        os.replace(tmp, path)
    for directory in {os.path.dirname(os.path.abspath(p)) for _, p in files}:
        fsync_dir(directory)
