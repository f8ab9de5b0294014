"""Training on the top-N hypotheses per source: each source line repeated N times, aligned.

``kd-nmt relabel --nbest K --keep-nbest N`` (N ≤ K) writes, for source line *i* (0-based, of
the whole input), the lines ``i·N … i·N + N − 1`` of OUT: its N best hypotheses in the beam's
order (rank ``r`` of source *i* is line ``i·N + r``), and the same lines of OUT_SOURCE: source
*i*, N times. The pair is plain line-aligned text, so ``kd-nmt filter`` and
``kd-nmt relabel binarize`` read it as they read any relabeled pair, and a kept line *k*'s
source id stays ``⌊k / N⌋`` of the unfiltered pair (``kd-nmt filter``'s decision file lists the
1-based input line of every kept pair). An empty source line gives N empty lines on both sides,
as the 1-best output gives one.

``kd-nmt relabel keep-nbest`` builds the same pair from an existing ``--nbest-output`` JSONL
(one record per source line, ``id`` 0, 1, 2, ... — ``cat`` of shard files in shard order is
one). A record with fewer than N hypotheses for a non-empty source, or a hole in the ids, is
one error line: repeating fewer hypotheses would shift every later line onto the wrong source.
"""
import json
import os

from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.lines import TextFile
from kd_nmt.common.logging_setup import status
from kd_nmt.errors import KDNMTError
from kd_nmt.common.atomic import atomic_file


def top_hypotheses(hypotheses, keep, source, line_id, where):
    """The first ``keep`` hypothesis strings of one source's n-best list, in n-best order.

    ``hypotheses``: token strings, best first. An empty ``source`` has none and gives ``keep``
    empty strings; a non-empty one with fewer than ``keep`` is a KDNMTError naming ``where``.
    """
    if not source.split() and not hypotheses:
        return [""] * keep
    if len(hypotheses) < keep:
        raise KDNMTError(
            f"{where}: source line {line_id + 1} (id {line_id}) has {len(hypotheses)} "
            f"hypotheses but --keep-nbest {keep} needs {keep}; decode with --nbest {keep} or more"
        )
    return list(hypotheses[:keep])


def write_lines_atomic(path, lines):
    """Stream ``lines`` (each without its newline) into ``path`` via a temporary file + os.replace."""
    with atomic_file(path) as f:
        for line in lines:
            f.write(line + "\n")


def repeated(lines, keep):
    """Each line ``keep`` times in a row: the source side of a kept n-best."""
    for line in lines:
        for _ in range(keep):
            yield line


def read_records(path, n_sources):
    """The records of an n-best JSONL, checked: ids exactly 0 .. n_sources − 1, in order."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
                line_id, hyps = record["id"], record["hypotheses"]
            except (ValueError, KeyError, TypeError):
                raise KDNMTError(
                    f"n-best file {path!r}: line {number} is not a kd-nmt relabel --nbest-output "
                    "record (JSON with \"id\" and \"hypotheses\")"
                ) from None
            expected = len(records)
            if line_id != expected:
                if isinstance(line_id, int) and line_id > expected:
                    problem = f"id {expected} is missing (line {number} has id {line_id})"
                else:
                    problem = f"line {number} has id {line_id!r} where id {expected} belongs"
                raise KDNMTError(
                    f"n-best file {path!r}: {problem}; ids must run 0, 1, 2, ... once each "
                    "(join shard files with `cat` in shard order, every shard included)"
                )
            if expected >= n_sources:
                raise KDNMTError(
                    f"n-best file {path!r} has more records than --input's {n_sources} lines"
                )
            records.append([h["tokens"] for h in hyps])
    if len(records) != n_sources:
        raise KDNMTError(
            f"n-best file {path!r} ends after {len(records)} records but --input has {n_sources} "
            f"lines (ids {len(records)}..{n_sources - 1} missing)"
        )
    return records


EXAMPLES = """
Line i*N + r of OUTPUT is hypothesis r (0 = best) of source line i; the same line of
OUTPUT_SOURCE is source line i. Both are plain aligned text for kd-nmt filter and
kd-nmt relabel binarize --repeat N.

example:
  cat kd/nbest.jsonl.0 kd/nbest.jsonl.1 > kd/nbest.jsonl     # shard files, in shard order
  kd-nmt relabel keep-nbest --nbest-file kd/nbest.jsonl --input tok/train.de --keep-nbest 4 \\
      --output kd/train.nbest4.en --output-source kd/train.nbest4.de
"""


def main(argv):
    p = ArgumentParser(
        prog="kd-nmt relabel keep-nbest",
        description="Expand an n-best JSONL into N aligned (source, hypothesis) lines per source.",
        epilog=EXAMPLES,
    )
    p.add_argument("--nbest-file", required=True, metavar="JSONL", help="kd-nmt relabel --nbest-output")
    p.add_argument("--input", required=True, metavar="SRC", help="the source text that was relabeled")
    p.add_argument("--keep-nbest", required=True, type=int, metavar="N", help="hypotheses kept per source")
    p.add_argument("--output", required=True, metavar="OUT", help="N hypotheses per source")
    p.add_argument("--output-source", required=True, metavar="FILE", help="each source line N times")
    a = p.parse_args(argv)
    check_minimums(("--keep-nbest", a.keep_nbest, 1))
    if not os.path.isfile(a.nbest_file):
        raise KDNMTError(f"n-best file not found: {a.nbest_file!r}")
    sources = TextFile(a.input, "input").lines
    inputs = {os.path.realpath(x) for x in (a.nbest_file, a.input)}
    for what, path in (("--output", a.output), ("--output-source", a.output_source)):
        if os.path.realpath(path) in inputs:
            raise KDNMTError(f"{what} {path!r} would overwrite an input file")
    if os.path.realpath(a.output) == os.path.realpath(a.output_source):
        raise KDNMTError("--output and --output-source are the same file")
    records = read_records(a.nbest_file, len(sources))
    where = f"n-best file {a.nbest_file!r}"
    targets = [top_hypotheses(h, a.keep_nbest, s, i, where) for i, (h, s) in enumerate(zip(records, sources))]
    write_lines_atomic(a.output, (t for group in targets for t in group))
    write_lines_atomic(a.output_source, repeated(sources, a.keep_nbest))
    status("relabel")(f"{len(sources)} sources x {a.keep_nbest} hypotheses = "
                      f"{len(sources) * a.keep_nbest} lines -> {a.output}, {a.output_source}")
    return 0
