"""Text files in the dictionaries' token space: reading, checking, sharding, batching, detok.

Lines are read exactly as ``fairseq-preprocess`` reads them (Python text mode, UTF-8,
universal newlines), so the relabeled output always has as many lines as fairseq binarizes
from the same source file.
"""
import hashlib
import os

from kd_nmt.errors import KDNMTError


class TextFile:
    """A UTF-8 text file read whole: its lines (without newline) and the sha256 of its bytes."""

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
        # universal newlines, as fairseq-preprocess's open(..., encoding="utf-8") sees the file
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()  # the final newline ends the last line, it does not start one

    def __len__(self):
        return len(self.lines)


def shard_range(n_lines, num_shards, shard_id):
    """Contiguous ``[start, end)`` slice of shard ``shard_id``: shards in order cover every line."""
    start = n_lines * shard_id // num_shards
    end = n_lines * (shard_id + 1) // num_shards
    return start, end


def make_batches(sizes, max_tokens):
    """Indices grouped into batches of at most ``max_tokens`` padded tokens, longest first.

    Length-sorted (ties in input order), so padding is minimal and the result depends only on
    ``sizes``; a sentence longer than the budget gets a batch of its own. Every index once.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i))
    batches, current, longest = [], [], 0
    for i in order:
        size = max(int(sizes[i]), 1)
        if current and max(longest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return batches


REMOVE_BPE = ("sentencepiece", "subword_nmt", "none")


def detokenize(pieces, remove_bpe="sentencepiece"):
    """Token string → text, as ``fairseq-generate --post-process`` does it.

    ``sentencepiece``: drop the spaces between pieces, then ``▁`` → space.
    """
    if remove_bpe == "sentencepiece":
        return pieces.replace(" ", "").replace("\u2581", " ").strip()
    if remove_bpe == "subword_nmt":
        return (pieces + " ").replace("@@ ", "").rstrip()
    return pieces.strip()
