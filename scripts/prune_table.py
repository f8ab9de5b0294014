#!/usr/bin/env python3
"""Kim & Rush's pruning table: BLEU against the fraction of weights kept, and the size on disk.

    python scripts/prune_table.py --prune-dir work/multi30k/pruned/seed1/micro/seq_kd \\
        --bench results/multi30k/prune/seed1/bench.csv --out results/multi30k/prune/seed1/prune.md

Reads ``PRUNE_DIR/prune.json`` (scripts/prune.py: the pruned checkpoints ``keepK.pt``) and each
retrained ``PRUNE_DIR/retrainK/checkpoint_best.pt`` (recipes/multi30k_prune.sh), counts the
nonzero weight-matrix entries of every model (the retrained ones too: ``--keep-pruned`` must have
held the zeros), and joins them with the bench rows of the same ``keep`` and ``stage`` (bench
names ``keep=K,stage=pruned`` / ``keep=K,stage=retrained``; the teacher row gives the parameter
count the "× fewer" column divides). Writes OUT (Markdown) and OUT with .csv.

Sizes: float16 dense (every parameter, 2 bytes) and sparse (each weight matrix as a bitmap of
its kept entries plus their float16 values; biases and layer norms dense) — kd_nmt/pruning.py.
CTranslate2 has no sparse kernels: the sparse size is what pruning buys (disk, download), not
decoding speed.
"""
import csv
import io
import json
import os

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_write
from kd_nmt.errors import KDNMTError

COLUMNS = ["keep", "stage", "nonzero_params", "fewer_than_teacher", "dense_fp16_mb", "sparse_fp16_mb",
           "bleu_greedy", "bleu_beam", "delta_beam_vs_unpruned"]


def count(checkpoint):
    """``(nonzero parameters, {dense_fp16, sparse_fp16} bytes)`` of a fairseq checkpoint."""
    import torch

    from kd_nmt.pruning import prunable, sparse_bytes, tensor_key

    try:  # a file this recipe wrote: trusted
        weights = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    except (OSError, KeyError, RuntimeError, EOFError) as exc:
        raise KDNMTError(f"cannot read checkpoint {checkpoint!r} ({type(exc).__name__})") from None
    matrices, seen, nonzero = set(prunable(weights)), set(), 0
    for name, tensor in weights.items():
        key = tensor_key(tensor)
        if key in seen:
            continue
        seen.add(key)
        nonzero += int(tensor.count_nonzero()) if name in matrices else tensor.numel()
    return nonzero, sparse_bytes(weights)


def bench_scores(path):
    """``{(keep, stage, decode): bleu}`` and the teacher's parameter count from a bench.csv."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise KDNMTError(f"bench results not found: {path!r} (run the recipe's bench step)") from None
    scores, teacher_params = {}, None
    for row in rows:
        if row["name"] == "teacher":
            teacher_params = int(row["params"])
        elif row.get("keep"):
            scores[(float(row["keep"]), row["stage"], row["decode"])] = float(row["bleu"])
    if teacher_params is None:
        raise KDNMTError(f"{path!r} has no 'teacher' row: bench the teacher beside the pruned students")
    return scores, teacher_params


def table(prune_dir, bench_csv):
    try:
        with open(os.path.join(prune_dir, "prune.json"), encoding="utf-8") as f:
            keeps = [row["keep"] for row in json.load(f)["rows"]]
    except FileNotFoundError:
        raise KDNMTError(f"no {prune_dir}/prune.json: run scripts/prune.py first") from None
    scores, teacher_params = bench_scores(bench_csv)
    decodes = sorted({d for (_, _, d) in scores})
    greedy = "greedy" if "greedy" in decodes else None
    beam = next((d for d in decodes if d.startswith("beam")), None)
    unpruned = scores.get((1.0, "retrained", beam))
    rows = []
    for keep in keeps:
        for stage, path in (("pruned", os.path.join(prune_dir, f"keep{keep:g}.pt")),
                            ("retrained", os.path.join(prune_dir, f"retrain{keep:g}", "checkpoint_best.pt"))):
            if not os.path.isfile(path):
                continue
            nonzero, size = count(path)
            b = scores.get((keep, stage, beam))
            rows.append({
                "keep": f"{keep:g}", "stage": stage, "nonzero_params": nonzero,
                "fewer_than_teacher": f"{teacher_params / nonzero:.1f}",
                "dense_fp16_mb": f"{size['dense_fp16'] / 1e6:.2f}",
                "sparse_fp16_mb": f"{size['sparse_fp16'] / 1e6:.2f}",
                "bleu_greedy": "" if greedy is None or (keep, stage, greedy) not in scores
                else f"{scores[(keep, stage, greedy)]:.2f}",
                "bleu_beam": "" if b is None else f"{b:.2f}",
                "delta_beam_vs_unpruned": "" if b is None or unpruned is None else f"{b - unpruned:+.2f}",
            })
    return rows, teacher_params, beam


def markdown(rows, teacher_params, beam):
    head = ["kept", "stage", "nonzero params", "× fewer than the teacher", "fp16 dense MB", "sparse MB",
            "BLEU greedy", f"BLEU {beam}", f"Δ {beam} vs unpruned"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        lines.append("| " + " | ".join([f"{float(r['keep']):.0%}", r["stage"], f"{r['nonzero_params']:,}"]
                                       + [r[c] for c in COLUMNS[3:]]) + " |")
    lines.append("")
    lines.append(f"Teacher: {teacher_params:,} parameters. Kept: the fraction of the weight-matrix entries "
                 "kept by class-blind magnitude pruning (biases, layer norms dense); pruned = no retraining, "
                 "retrained = retrained with the zeros held (--keep-pruned); Δ against the unpruned student "
                 "retrained the same way (kept 100 %). Sparse MB: bitmap + float16 nonzeros.")
    return "\n".join(lines) + "\n"


def main(argv):
    p = ArgumentParser(prog="prune_table", description=__doc__.split("\n\n")[0])
    p.add_argument("--prune-dir", required=True, help="scripts/prune.py's --out (prune.json, keepK.pt, retrainK/)")
    p.add_argument("--bench", required=True, help="kd-nmt bench's bench.csv over the pruned and retrained models")
    p.add_argument("--out", required=True, help="the Markdown table (and beside it the same name .csv)")
    a = p.parse_args(argv)
    rows, teacher_params, beam = table(a.prune_dir, a.bench)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(os.path.splitext(a.out)[0] + ".csv", buf.getvalue())
    text = markdown(rows, teacher_params, beam)
    atomic_write(a.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool("prune_table", main))
