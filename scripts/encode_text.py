#!/usr/bin/env python3
"""Raw sentences -> sentencepiece pieces, as data/prepare.py encodes a corpus split.

For text that enters a prepared corpus later, e.g. monolingual German source lines to relabel
(`python -m data.monolingual` writes data/corpus/mono-de/mono.de): the first --max-lines lines of
RAW get sacremoses punctuation normalisation (--lang) and the corpus's sentencepiece model, one
line of pieces per line, written to OUT through a temporary file (a killed run leaves no OUT).

example:
  python scripts/encode_text.py --spm work/quickstart/data/spm.model --lang de --max-lines 3000 \\
      data/corpus/mono-de/mono.de work/quickstart/data/tok/mono3000.de
"""
import os
import sys

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.atomic import atomic_file
from kd_nmt.common.lines import TextFile
from kd_nmt.errors import KDNMTError


def main(argv):
    p = ArgumentParser(prog="encode_text.py", description=__doc__.split("\n\n")[0],
                       epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("raw", help="UTF-8 text, one sentence a line")
    p.add_argument("out", help="pieces, one line per kept line")
    p.add_argument("--spm", "--spm-model", dest="spm", required=True,
                   help="the corpus's sentencepiece model (OUT/spm.model)")
    p.add_argument("--lang", required=True, help="language of RAW, for the punctuation normaliser")
    p.add_argument("--max-lines", type=int, default=0, help="only the first N lines (default 0: all)")
    a = p.parse_args(argv)
    check_minimums(("--max-lines", a.max_lines, 0))
    if not os.path.isfile(a.spm):
        raise KDNMTError(f"sentencepiece model not found: {a.spm!r}")
    lines = TextFile(a.raw, "raw").lines
    if a.max_lines:
        if len(lines) < a.max_lines:
            raise KDNMTError(f"{a.raw!r} has {len(lines)} lines, fewer than --max-lines {a.max_lines}")
        lines = lines[:a.max_lines]
    import sentencepiece as spm
    from sacremoses import MosesPunctNormalizer

    norm = MosesPunctNormalizer(lang=a.lang)
    sp = spm.SentencePieceProcessor(model_file=a.spm)
    with atomic_file(a.out) as f:
        for line in lines:
            f.write(" ".join(sp.encode(norm.normalize(line).strip(), out_type=str)) + "\n")
    print(f"encode_text.py: {len(lines)} lines -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("encode_text.py", main))
