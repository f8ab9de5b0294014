#!/usr/bin/env python3
"""One hypothesis file scored the ways published Multi30k numbers are: cased and lowercased BLEU.

    python scripts/bleu_variants.py --hyp bench/teacher.beam5.hyp \\
        --ref data/corpus/multi30k/test_2016_flickr.en [--json OUT.json]

Prints (and with ``--json`` writes) sacreBLEU's corpus BLEU with its default 13a tokenizer, cased
(OPUS-MT's and WMT's convention) and lowercased (``-lc``), and chrF, each with its signature.
Lowercased 13a-tokenized BLEU is the closest standard reading of the torchtext ``bleu_score`` over
lowercased spaCy tokens that tutorial numbers (e.g. 36.52 for a 3-layer Transformer) use: both
split punctuation from words and ignore case; the tokenizers differ in details (hyphens,
apostrophes), so read the two side by side as comparable within a few tenths, not equal.
"""
import json

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_write
from kd_nmt.common.lines import read_lines
from kd_nmt.errors import KDNMTError


def variants(hyps, refs):
    """``{"bleu": ..., "bleu_lc": ..., "chrf": ..., "signatures": {...}}`` of two line lists."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hyps) != len(refs):
        raise KDNMTError(f"{len(hyps)} hypotheses but {len(refs)} references: the files must be line-aligned")
    out, signatures = {}, {}
    for key, metric in (("bleu", BLEU()), ("bleu_lc", BLEU(lowercase=True)), ("chrf", CHRF())):
        out[key] = round(metric.corpus_score(hyps, [refs]).score, 2)
        signatures[key] = str(metric.get_signature())
    return {**out, "lines": len(hyps), "signatures": signatures}


def main(argv):
    p = ArgumentParser(prog="bleu_variants", description=__doc__.split("\n\n")[0])
    p.add_argument("--hyp", required=True, help="detokenized hypotheses, one per line")
    p.add_argument("--ref", required=True, help="the reference file as published")
    p.add_argument("--json", help="also write the scores here")
    args = p.parse_args(argv)
    scores = variants(read_lines(args.hyp, "hypothesis file"), read_lines(args.ref, "reference file"))
    if args.json:
        atomic_write(args.json, json.dumps({"hyp": args.hyp, "ref": args.ref, **scores}, indent=1) + "\n")
    print(f"BLEU {scores['bleu']:.2f} (cased)  BLEU {scores['bleu_lc']:.2f} (lowercased)  chrF {scores['chrf']:.2f}"
          f"  [{scores['lines']} lines]")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool("bleu_variants", main))
