"""Outputs whole or absent: every file a kd-nmt command or script publishes goes through here.

* ``atomic_write(path, data)`` / ``atomic_file(path)``: one file written to a temporary sibling,
  fsynced, renamed over ``path`` (a reader sees the old file or the new one, never half of one);
  the temporary is removed if the write fails (a full disk leaves no stray ``.tmp``).
* ``atomic_concat(parts, path)`` / ``atomic_copy(src, dst)``: files concatenated or copied into
  ``path`` the same way; ``atomic_torch_save(obj, path)``: a checkpoint (torch imported only
  there: the rest is stdlib, which data/ relies on).
* An OSError names the file it was for, not its temporary: a full disk raises ENOSPC from
  ``write`` or ``close``, which carry no file name (the one error line said "(no file)").
* ``publish_group(files)``: several files that only mean something together (a filter's kept
  source and target, a bench's CSV and Markdown table). Every one is written to its temporary
  first; only when all are written is the old *marker* (the last file, which recipes and reruns
  take as "done") removed and are they renamed into place, in order, the marker last. A full disk
  therefore changes nothing, and a kill between two renames leaves no marker: the group reads as
  unfinished and a rerun redoes it.
"""
import contextlib
import errno
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


def _name(exc, path, tmp):
    """``exc`` named after ``path``, the file the user knows, where it names none (ENOSPC from
    write or close) or only the temporary (a rename over a folder)."""
    if isinstance(exc, OSError) and exc.filename in (None, tmp):
        exc.filename, exc.filename2 = os.fspath(path), None


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
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _name(exc, path, tmp)
        raise
    return tmp


def atomic_write(path, data):
    """Write ``data`` (str or bytes) to ``path`` via a temporary file and os.replace."""
    tmp = _write_tmp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException as exc:  # a folder where the file belongs: no temporary stays
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _name(exc, path, tmp)
        raise


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
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _name(exc, path, tmp)
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


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)`` through ``atomic_file``. torch reports a failed write (a full
    disk) as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``, the
    OSError only as its context: that OSError, named after ``path``, is raised instead."""
    import torch

    with atomic_file(path, binary=True) as f:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


def publish_group(files):
    """Publish ``files`` (an ordered list of ``(path, str or bytes)``; the last is the marker)
    all together or not at all — see the module docstring."""
    if not files:
        return
    for path, _ in files:  # a folder where a file belongs: refused before anything is written
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
    written = []
    try:
        for path, data in files:
            written.append((_write_tmp(path, data), path))
    except BaseException:  # a full disk: the old group stands as it was, no temporary is left
        for tmp, _ in written:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(files[-1][0])  # from here on the group reads as unfinished until it is whole
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:  # a rename failed: the marker is gone, no temporary stays
        for tmp, _ in written:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for directory in {os.path.dirname(os.path.abspath(p)) for _, p in files}:
        fsync_dir(directory)
