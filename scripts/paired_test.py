#!/usr/bin/env python3
"""Paired bootstrap of finished outputs against a baseline's, without decoding again.

    python scripts/paired_test.py --reference results/size_tier28/seed1/reference.txt \\
        --baseline results/size_tier28/seed1/baseline_small_d2_1.beam5.hyp \\
        results/size_tier28/seed1/{todi,hybrid_kd}_small_d2_1.beam5.hyp

``kd-nmt bench`` tests every system of one run against one ``--baseline``; a grid bench of several
student sizes therefore tests all of them against the first size's baseline. This re-tests
detokenised outputs (the bench's ``*.hyp`` files, one line per reference line) against another
baseline with the bench's own test (sacreBLEU BLEU and chrF, 1,000 resamples, seed 12345) and
prints a Markdown table: file, BLEU, chrF, each difference to the baseline and its p.
"""
import os

from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.lines import read_lines
from kd_nmt.errors import KDNMTError


def read_output(path, n_lines, what):
    """The lines of an output file (``kd_nmt.common.lines``, as the bench reads its reference);
    one clear error if it is not ``n_lines`` long."""
    lines = read_lines(path, what)
    if len(lines) != n_lines:
        raise KDNMTError(f"{path} has {len(lines)} lines, the reference {n_lines}")
    return lines


def paired_table(reference, baseline, hypotheses, n_samples=1000):
    """The Markdown lines: the baseline, then each hypothesis file with its differences and p."""
    from kd_nmt.bench.metrics import paired_bootstrap

    refs = read_lines(reference, "reference")
    systems = [(path, read_output(path, len(refs), "hypothesis")) for path in hypotheses]
    _, res = paired_bootstrap((baseline, read_output(baseline, len(refs), "baseline")), systems, refs, n_samples)
    base = res[baseline]
    name = os.path.basename(baseline)
    lines = ["| output | BLEU | chrF | Δ BLEU (p) | Δ chrF (p) |", "|---|---:|---:|---:|---:|",
             f"| {name} | {base['bleu']['score']:.2f} | {base['chrf']['score']:.2f} | (baseline) | |"]
    for path, _ in systems:
        r = res[path]
        diff = [f"{r[m]['score'] - base[m]['score']:+.2f} ({r[m]['p_value']:.3f})" for m in ("bleu", "chrf")]
        lines.append(f"| {os.path.basename(path)} | {r['bleu']['score']:.2f} | {r['chrf']['score']:.2f} | "
                     + " | ".join(diff) + " |")
    return lines


def main(argv):
    parser = ArgumentParser(prog="paired_test", description=__doc__.split("\n\n")[0])
    parser.add_argument("hypotheses", nargs="+", help="detokenised outputs to test (one line per reference line)")
    parser.add_argument("--reference", required=True, help="the detokenised reference")
    parser.add_argument("--baseline", required=True, help="the baseline's detokenised output")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples (default: 1000)")
    args = parser.parse_args(argv)
    print("\n".join(paired_table(args.reference, args.baseline, args.hypotheses, args.bootstrap)))


if __name__ == "__main__":
    raise SystemExit(run_tool("paired_test", main))
