#!/usr/bin/env python3
"""BLEU/chrF of a training run's interval checkpoints: the learning curve, table and plot.

    python scripts/learning_curve.py --data work/teacher/data --run work/teacher/model \
        --splits test_tech test_ding --out results/teacher/curve

Every ``checkpoint_*_UPDATES.pt`` (fairseq's ``--save-interval-updates``) of ``--run`` is
converted to CTranslate2 (int8, cached next to the checkpoint by ``kd-nmt relabel``'s backend),
decodes each split's sentencepiece source (``DATA/tok/SPLIT.de``, beam 5) and is scored by
sacreBLEU against the normalised reference ``DATA/raw/SPLIT.en``. Rows land in ``OUT.tsv`` as
they are computed; a rerun skips the (checkpoint, split) pairs already there, so the step
resumes. ``OUT.png`` plots BLEU and chrF against updates, one line per split.

int8 CTranslate2 decoding scores within a few tenths of a BLEU point of fairseq's float32
beam search (``kd-nmt bench`` gives the latter); the curve's purpose is its shape.
"""
import csv
import glob
import io
import os
import re
import sys

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_file, atomic_write
from kd_nmt.errors import KDNMTError

HEADER = ["updates", "split", "bleu", "chrf", "checkpoint"]


def interval_checkpoints(run):
    """``[(updates, path)]`` of ``run``'s ``checkpoint_E_U.pt`` files, by updates."""
    found = []
    for path in glob.glob(os.path.join(run, "checkpoint_*_*.pt")):
        m = re.fullmatch(r"checkpoint_\d+_(\d+)\.pt", os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def read_rows(tsv):
    if not os.path.exists(tsv):
        return []
    with open(tsv, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def append_row(tsv, row):
    """``tsv`` with ``row`` added, rewritten whole (an append cut short by a full disk left half a
    row that the resume read as scored)."""
    buffer = io.StringIO()
    w = csv.writer(buffer, delimiter="\t", lineterminator="\r\n")  # csv's default line ends
    w.writerow(HEADER)
    for old in read_rows(tsv):
        w.writerow([old[k] for k in HEADER])
    w.writerow([row[k] for k in HEADER])
    atomic_write(tsv, buffer.getvalue())


def score_checkpoint(path, data, split, beam, threads):
    """(BLEU, chrF) of checkpoint ``path`` on ``split``, decoded with CTranslate2 int8."""
    import sentencepiece as spm

    from kd_nmt.bench.metrics import corpus_scores
    from kd_nmt.checkpoint import load_checkpoint
    from kd_nmt.relabel.ct2_backend import CT2Backend

    state = load_checkpoint(path)  # (torch.load: a cut-short checkpoint was a traceback)
    # output length bound 1.2 x source + 10: an early checkpoint that babbles would otherwise
    # decode 200 tokens per sentence, and no reference is that long
    backend = CT2Backend(path, state, os.path.join(data, "bin"), "de", "en", beam=beam, threads=threads,
                         max_len_a=1.2, max_len_b=10)
    del state
    with open(os.path.join(data, "tok", f"{split}.de"), encoding="utf-8") as f:
        sources = [line.split()[:1022] for line in f]
    with open(os.path.join(data, "raw", f"{split}.en"), encoding="utf-8") as f:
        refs = [line.rstrip("\n") for line in f]
    sp = spm.SentencePieceProcessor(model_file=os.path.join(data, "spm.model"))
    hyps = [sp.decode(nbest[0][0].split()) for nbest in backend.translate(sources)]
    scores = corpus_scores(hyps, refs)
    return scores["bleu"], scores["chrf"]


def plot(rows, png, title):
    import logging

    import matplotlib

    # the decoders' imports leave the root logger at DEBUG: keep matplotlib's font search out of the log
    logging.getLogger("matplotlib").setLevel(logging.WARNING)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for split in sorted({r["split"] for r in rows}):
        pts = sorted((int(r["updates"]), float(r["bleu"]), float(r["chrf"])) for r in rows if r["split"] == split)
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1] for p in pts], marker="o", label=split)
        axes[1].plot(xs, [p[2] for p in pts], marker="o", label=split)
    for ax, name in zip(axes, ("BLEU", "chrF")):
        ax.set_xlabel("updates")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_file(png, binary=True) as f:  # savefig to a path left half a PNG on a full disk
            fig.savefig(f, dpi=110, format="png")
    finally:
        plt.close(fig)


def main(argv=None):
    p = ArgumentParser(prog="learning_curve", description=__doc__)
    p.add_argument("--data", required=True, help="data/prepare.py's output dir (bin/, tok/, raw/, spm.model)")
    p.add_argument("--run", required=True, help="the --save-dir of the training run")
    p.add_argument("--splits", nargs="+", default=["test_tech", "test_ding"])
    p.add_argument("--out", required=True, help="OUT.tsv and OUT.png are written")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--every", type=int, default=1, help="score every N-th interval checkpoint (and the last)")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)

    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # ct2's converter loads with torch.load
    ckpts = interval_checkpoints(a.run)
    if not ckpts:
        raise KDNMTError(f"no checkpoint_E_U.pt in {a.run} (train with --save-interval-updates)")
    ckpts = [c for i, c in enumerate(ckpts) if i % a.every == a.every - 1 or i == len(ckpts) - 1]
    tsv = a.out + ".tsv"
    os.makedirs(os.path.dirname(os.path.abspath(tsv)), exist_ok=True)
    done = {(int(r["updates"]), r["split"]) for r in read_rows(tsv)}
    for updates, path in ckpts:
        for split in a.splits:
            if (updates, split) in done:
                continue
            bleu, chrf = score_checkpoint(path, a.data, split, a.beam, a.threads)
            append_row(tsv, {"updates": updates, "split": split, "bleu": f"{bleu:.2f}",
                             "chrf": f"{chrf:.2f}", "checkpoint": os.path.basename(path)})
            print(f"[curve] {updates:>6} updates  {split:<10} BLEU {bleu:5.2f}  chrF {chrf:5.2f}", file=sys.stderr)
    rows = read_rows(tsv)
    plot(rows, a.out + ".png", a.title or os.path.basename(os.path.normpath(a.run)))
    print(a.out + ".png")


if __name__ == "__main__":
    raise SystemExit(run_tool("learning_curve", main))
