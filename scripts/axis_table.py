#!/usr/bin/env python3
"""One study axis as one table: a column per bench, a row per method, each cell the student's
score and its difference to the same column's baseline student with the bench's bootstrap p.

    python scripts/axis_table.py clean=results/kim_rush/seed1 \\
        "dropout 0.3=results/text_complexity_tier28/dropout-0.3" --baseline baseline

Each argument LABEL=FOLDER names one ``kd-nmt bench`` (``FOLDER/bench.csv``, whose rows carry
the ``method`` and ``size`` columns of their ``--names``; the teacher row, which has no method,
is left out); LABEL=FOLDER,FOLDER2 joins benches of the same setting (a later run that added
methods; a method the first has is taken from it). A bench with several student sizes (the size
axis) gives a column per size, "LABEL size" (just the size for an empty LABEL). Rows are methods
in the order they first appear (or ``--methods``' order and only those); a method a column lacks
is "–". ``--decode`` picks the decoding (beam5), ``--metric`` BLEU or chrF; ``--length`` adds
each output's length over the reference's (sacreBLEU's BLEU ratio, from the bench's hypothesis
file and ``reference.txt``): a student trained on noisy sources can learn to say more than its
input does.
"""
import csv
import os

from seed_table import tested_against
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.lines import read_lines
from kd_nmt.errors import KDNMTError


def read_bench(folder, decode):
    """The student rows of ``FOLDER/bench.csv`` with decoding ``decode`` (each with its folder);
    one clear error if none."""
    path = os.path.join(folder, "bench.csv")
    if not os.path.exists(path):
        raise KDNMTError(f"no {path}: run the recipe's bench step first")
    with open(path, encoding="utf-8") as f:
        rows = [{**r, "folder": folder} for r in csv.DictReader(f) if r.get("method") and r["decode"] == decode]
    if not rows:
        raise KDNMTError(f"{path} has no student decoded with {decode}")
    return rows


def length_ratio(row):
    """Output length over the reference's, as sacreBLEU's BLEU reports it (13a tokens)."""
    import sacrebleu  # only with --length

    hyps = read_lines(os.path.join(row["folder"], row["hyp_file"]), "hypothesis")
    return sacrebleu.corpus_bleu(hyps, [read_lines(os.path.join(row["folder"], "reference.txt"), "reference")]).ratio


def columns(specs, decode, with_length):
    """``[(column label, {method: row})]`` from the LABEL=FOLDER arguments."""
    out = []
    for spec in specs:
        label, sep, folders = spec.partition("=")
        if not sep:
            raise KDNMTError(f"{spec}: write LABEL=FOLDER (LABEL may be empty: =FOLDER)")
        rows = [r for folder in folders.split(",") for r in read_bench(folder, decode)]
        sizes = list(dict.fromkeys(r.get("size", "") for r in rows))
        for size in sizes:
            mine = {}
            for row in rows:
                if row.get("size", "") == size:
                    mine.setdefault(row["method"], row)  # the first folder's wins
            if with_length:
                for row in mine.values():
                    row["length"] = length_ratio(row)
            name = " ".join(part for part in (label, size if len(sizes) > 1 else "") if part)
            out.append((name or size, mine))
    return out


def cell(row, base, metric, with_length):
    """``"24.24 (+3.31, 0.001)"``; the baseline's own cell is its score alone."""
    if row is None:
        return "–"
    text = f"{float(row[metric]):.2f}"
    if row is not base and base is not None:
        p = row[f"p_{metric}"] if tested_against(row, [base]) else ""
        text += f" ({float(row[metric]) - float(base[metric]):+.2f}, {float(p):.3f})" if p else \
            f" ({float(row[metric]) - float(base[metric]):+.2f})"
    return text + (f" [{row['length']:.2f}]" if with_length else "")


def axis_table(cols, baseline, metric="bleu", with_length=False, methods=None):
    """The Markdown lines (rows: ``methods``, or every method in the order they first appear)."""
    methods = methods or list(dict.fromkeys(m for _, rows in cols for m in rows))
    lines = ["| method | " + " | ".join(label for label, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for method in methods:
        cells = [cell(rows.get(method), rows.get(baseline), metric, with_length) for _, rows in cols]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    name = {"bleu": "BLEU", "chrf": "chrF"}[metric]
    lines += ["", f"{name}; in brackets the difference to the same column's {baseline} student and the "
              "paired bootstrap p of the bench (sacreBLEU, 1,000 resamples; none where the bench tested "
              "against another student, a grid's first size's baseline)"
              + ("; in square brackets output length / reference length." if with_length else ".")]
    return lines


def main(argv):
    parser = ArgumentParser(prog="axis_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("benches", nargs="+", metavar="LABEL=FOLDER", help="a column's label and its bench folder")
    parser.add_argument("--baseline", default="baseline", help="the method each column compares against")
    parser.add_argument("--decode", default="beam5", help="the decoding to show (default: beam5)")
    parser.add_argument("--metric", choices=("bleu", "chrf"), default="bleu")
    parser.add_argument("--length", action="store_true", help="add output length / reference length")
    parser.add_argument("--methods", nargs="+", help="the rows, in this order (default: every method)")
    args = parser.parse_args(argv)
    cols = columns(args.benches, args.decode, args.length)
    print("\n".join(axis_table(cols, args.baseline, args.metric, args.length, args.methods)))


if __name__ == "__main__":
    raise SystemExit(run_tool("axis_table", main))
