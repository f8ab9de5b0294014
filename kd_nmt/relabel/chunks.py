"""The resumable work directory ``OUT.chunks/`` of one relabel run (one shard).

Layout::

    OUT.chunks/manifest.json        what this work is: input hash, shard, teacher, options
    OUT.chunks/lock                 flock'ed while a process works here
    OUT.chunks/000000.stats.json    per-chunk counts (lines, empty, truncated, unk, seconds) and
                                    the output's line count and sha256 (checked on resume)
    OUT.chunks/000000.nbest.jsonl   per-chunk n-best records (only with --nbest-output)
    OUT.chunks/000000.txt           per-chunk output lines; written last: its presence = done

Every file is written to a temporary name and ``os.replace``d into place, so a process killed at
any moment leaves either a finished chunk or none. A rerun whose manifest differs from the
stored one (other input, teacher or decoding options) is refused with the differing fields
named; ``--restart`` discards the old work instead. A resume reuses a chunk only if its ``.txt``
(and n-best file) still has the line count and sha256 its stats recorded: a chunk cut short or
edited by hand is redone, never concatenated into a misaligned output.
"""
import hashlib
import contextlib
import json
import os
import shutil

from kd_nmt.common.atomic import atomic_concat, atomic_write
from kd_nmt.common.locks import take_lock
from kd_nmt.errors import KDNMTError

FORMAT = 1
MANIFEST = "manifest.json"


def _sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class WorkDir:
    """Chunk files of one run; ``open()`` checks the manifest and takes the lock."""

    def __init__(self, path, manifest, binding_keys):
        self.path = path
        self.manifest = dict(manifest, format=FORMAT)
        self.binding_keys = ("format",) + tuple(binding_keys)
        self._lock = None

    # -- set-up -----------------------------------------------------------------------------
    def check(self, restart=False):
        """Raise a KDNMTError if an existing work dir belongs to other work (unless ``restart``).

        Creates nothing: safe to call before any work starts.
        """
        if restart or not os.path.exists(self.path):
            return
        if not os.path.isdir(self.path):
            raise KDNMTError(f"work directory {self.path!r} exists and is not a directory")
        stored = self._stored_manifest()
        if stored is None:
            if any(self._is_chunk_file(f) for f in os.listdir(self.path)):
                raise KDNMTError(
                    f"work directory {self.path!r} has chunk files but no {MANIFEST}; "
                    "delete it or rerun with --restart"
                )
            return
        diffs = [
            f"{key}: {stored.get(key)!r} in the work dir, {self.manifest.get(key)!r} now"
            for key in self.binding_keys
            if stored.get(key) != self.manifest.get(key)
        ]
        if diffs:
            raise KDNMTError(
                f"work directory {self.path!r} holds a run with other input or options "
                f"({'; '.join(diffs)}). Rerun with the same input and options to resume it, or "
                "add --restart to discard it and start over"
            )

    def open(self, restart=False):
        """Create (or reuse) the work dir, take its lock, write the manifest, drop stale temps."""
        self.check(restart)
        os.makedirs(self.path, exist_ok=True)
        self._lock = take_lock(self.path, "kd-nmt relabel", "wait for it or use another --output")
        if restart:
            for name in os.listdir(self.path):
                if name != "lock":
                    self._remove(os.path.join(self.path, name))
        for name in os.listdir(self.path):
            if ".tmp." in name:  # left by a killed process; we hold the lock
                self._remove(os.path.join(self.path, name))
        if self._stored_manifest() is None:
            atomic_write(os.path.join(self.path, MANIFEST), json.dumps(self.manifest, indent=1) + "\n")
        return self

    def close(self):
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def remove(self):
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    # -- chunks -----------------------------------------------------------------------------
    def file(self, index, kind):
        return os.path.join(self.path, f"{index:06d}.{kind}")

    def done(self, index):
        return os.path.isfile(self.file(index, "txt"))

    def read_stats(self, index):
        with open(self.file(index, "stats.json"), encoding="utf-8") as f:
            return json.load(f)

    def write_chunk(self, index, lines, stats, nbest_records=None):
        """Store one finished chunk; the ``.txt`` (the completion mark) goes last. The stats record
        the output's line count and sha256 (and the n-best file's), which ``intact`` checks."""
        text = "".join(line + "\n" for line in lines)
        stats = {**stats, "output_lines": len(lines), "sha256": _sha256(text)}
        if nbest_records is not None:
            nbest = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in nbest_records)
            stats["nbest_sha256"] = _sha256(nbest)
            atomic_write(self.file(index, "nbest.jsonl"), nbest)
        atomic_write(self.file(index, "stats.json"), json.dumps(stats) + "\n")
        atomic_write(self.file(index, "txt"), text)

    def intact(self, index, expected_lines, nbest=False):
        """``None`` if chunk ``index`` is finished and unchanged, else why not (a short phrase).

        Finished: its ``.txt`` exists with ``expected_lines`` lines and the sha256 its stats
        recorded (chunks written before the stats held one: the line count only), and with
        ``nbest`` its n-best file too."""
        if not self.done(index):
            return "not finished"
        try:
            stats = self.read_stats(index)
            with open(self.file(index, "txt"), "rb") as f:
                data = f.read()
        except (OSError, ValueError) as exc:
            return f"unreadable ({exc})"
        lines = data.count(b"\n")
        if lines != expected_lines or (data and not data.endswith(b"\n")):
            return f"{lines} lines where the chunk has {expected_lines}"
        if "sha256" in stats and hashlib.sha256(data).hexdigest() != stats["sha256"]:
            return "its output differs from the sha256 its stats recorded"
        if nbest:
            try:
                with open(self.file(index, "nbest.jsonl"), "rb") as f:
                    records = f.read()
            except OSError:
                return "its n-best file is missing"
            if "nbest_sha256" in stats and hashlib.sha256(records).hexdigest() != stats["nbest_sha256"]:
                return "its n-best file differs from the sha256 its stats recorded"
        return None

    def discard(self, index):
        """Remove chunk ``index``'s files (the ``.txt``, its completion mark, first)."""
        for kind in ("txt", "stats.json", "nbest.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.file(index, kind))

    def assemble(self, n_chunks, output, nbest_output=None):
        """Concatenate the chunk files, in order, into ``output`` (and ``nbest_output``)."""
        atomic_concat([self.file(i, "txt") for i in range(n_chunks)], output)
        if nbest_output:
            atomic_concat([self.file(i, "nbest.jsonl") for i in range(n_chunks)], nbest_output)

    # -- helpers ----------------------------------------------------------------------------
    def _stored_manifest(self):
        path = os.path.join(self.path, MANIFEST)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as exc:
            raise KDNMTError(
                f"cannot read {path!r} ({exc}); delete the work directory or rerun with --restart"
            ) from None

    @staticmethod
    def _is_chunk_file(name):
        return name[:6].isdigit() and name[6:7] == "."

    @staticmethod
    def _remove(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
