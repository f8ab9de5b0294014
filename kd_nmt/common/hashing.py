"""sha256 of files, read in blocks (a checkpoint or a binarized corpus need not fit in memory)."""
import hashlib


def sha256_file(path, h=None, bufsize=1 << 20):
    """sha256 (hex) of the whole file ``path``; with ``h`` given, update it and return it."""
    own = h is None
    h = hashlib.sha256() if own else h
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(bufsize), b""):
            h.update(block)
    return h.hexdigest() if own else h
