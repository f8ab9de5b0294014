"""Text files read line by line exactly as ``fairseq-preprocess`` reads them.

fairseq-preprocess opens a file in Python's text mode (UTF-8, universal newlines: ``\\n``,
``\\r\\n`` and a lone ``\\r`` each end a line; no other character does, unlike
``str.splitlines``) and tokenizes each line with ``tokenize_line``, which strips the surrounding
whitespace. So line *i* here is sentence *i* of the binarized file, with the same tokens, and
a file has as many lines as fairseq binarizes from it: a final newline ends the last line, it
does not start an empty one.

A UTF-8 byte-order mark at the start of a file is removed, and said on stderr: Python's "utf-8"
codec keeps it as U+FEFF in line 1, where it silently changed a relabeled translation and a
bench reference (BLEU moved). ``strip_bom`` is the one place that does it.
"""
import hashlib
import os
import sys

from kd_nmt.errors import KDNMTError


def split_lines(text):
    """The lines of ``text`` as fairseq-preprocess sees them (universal newlines, stripped)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start one
    return [line.strip() for line in lines]


BOM = "\ufeff"


def strip_bom(text, path):
    """``text`` without a leading byte-order mark; one note on stderr naming ``path`` if it had one."""
    if text.startswith(BOM):
        print(f"kd-nmt: note: {path}: removed the UTF-8 byte-order mark at its start", file=sys.stderr)
        return text[len(BOM):]
    return text


class TextFile:
    """A UTF-8 text file read whole: its lines (``split_lines``) and the sha256 of its bytes.

    One KDNMTError naming ``what`` for a missing, unreadable or non-UTF-8 file.
    """

    def __init__(self, path, what="input"):
        self.path = path
        if not path or not os.path.isfile(path):
            raise KDNMTError(f"{what} file not found: {path!r}")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise KDNMTError(f"cannot read {what} file {path!r}: {exc.strerror}") from None
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise KDNMTError(
                f"{what} file {path!r} is not UTF-8: byte {data[exc.start]:#04x} at line {line} "
                f"(offset {exc.start}); convert it first (e.g. iconv -f latin1 -t utf-8)"
            ) from None
        del data
        self.lines = split_lines(strip_bom(text, path))

    def __len__(self):
        return len(self.lines)


def read_lines(path, what="input"):
    """The lines of the UTF-8 text file ``path``, as ``fairseq-preprocess`` reads them."""
    return TextFile(path, what).lines
