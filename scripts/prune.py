#!/usr/bin/env python3
"""Magnitude-prune a trained model at several sparsities (Kim & Rush 2016's pruning, class-blind).

    python scripts/prune.py --checkpoint work/multi30k/students/seed1/micro/word_seq/checkpoint_best.pt \\
        --keep 0.5 0.2 0.1 0.08 --out work/multi30k/pruned

For each fraction ``--keep`` it writes ``OUT/keepK.pt``: the checkpoint with the smallest
``1 - K`` of its weight-matrix entries set to 0 (one threshold over every matrix: kd_nmt/pruning.py;
biases and layer norms dense), without optimizer state; and ``OUT/prune.json``: per fraction the
parameter count, the nonzeros, and the size on disk float16 dense and sparse (bitmap + float16
nonzeros). Retrain each with the pruned weights held at 0:

    kd-nmt train DATA_BIN --task kd_translation --keep-pruned --finetune-from-model OUT/keep0.1.pt \\
        --arch ARCH ... (the student's own options, a few hundred updates)

CTranslate2 has no sparse kernels: pruning buys disk size, not CPU decoding speed.
"""
import json
import os

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_torch_save, atomic_write
from kd_nmt.errors import KDNMTError


def prune(checkpoint, keeps, out):
    import torch

    from kd_nmt.pruning import apply_masks, magnitude_masks, prunable, sparse_bytes, tensor_key

    if not os.path.isfile(checkpoint):
        raise KDNMTError(f"checkpoint not found: {checkpoint!r}")
    try:  # a file the user named: trusted (a checkpoint is a pickle)
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        weights = state["model"]
    except Exception as exc:
        raise KDNMTError(f"cannot read checkpoint {checkpoint!r} ({type(exc).__name__}): is it a fairseq "
                         "checkpoint?") from None
    os.makedirs(out, exist_ok=True)
    names = prunable(weights)
    report = {"checkpoint": checkpoint, "prunable_tensors": names, "rows": []}
    for keep in keeps:
        clones, pruned = {}, {}
        for k, v in weights.items():  # one clone per tensor: tied embeddings stay one matrix
            pruned[k] = clones.setdefault(tensor_key(v), v.clone())
        apply_masks(pruned, magnitude_masks(weights, keep))
        shipped = {k: v for k, v in state.items() if k != "last_optimizer_state"}
        shipped["model"] = pruned
        path = os.path.join(out, f"keep{keep:g}.pt")
        atomic_torch_save(shipped, path)  # (torch.save: a full disk was a RuntimeError traceback)
        total = sum(pruned[n].numel() for n in names)
        nonzero = sum(int(pruned[n].count_nonzero()) for n in names)
        dense_params = sum(v.numel() for v in clones.values()) - total
        report["rows"].append({"keep": keep, "checkpoint": path, "matrix_entries": total, "matrix_nonzero": nonzero,
                               "other_params": dense_params, **sparse_bytes(pruned)})
        print(f"prune: keep {keep:g}: {nonzero:,} of {total:,} matrix weights "
              f"({sparse_bytes(pruned)['sparse_fp16'] / 2**20:.2f} MiB sparse fp16) -> {path}")
    atomic_write(os.path.join(out, "prune.json"), json.dumps(report, indent=1) + "\n")
    return report


def main(argv):
    p = ArgumentParser(prog="prune", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="the trained model (a fairseq checkpoint you trust)")
    p.add_argument("--keep", type=float, nargs="+", required=True, metavar="K",
                   help="fractions of the weight-matrix entries to keep, e.g. 0.5 0.2 0.1 0.08")
    p.add_argument("--out", required=True, help="folder for keepK.pt and prune.json")
    a = p.parse_args(argv)
    bad = [k for k in a.keep if not 0.0 < k <= 1.0]
    if bad:
        raise KDNMTError(f"--keep takes fractions in (0, 1], got {bad[0]}")
    prune(a.checkpoint, a.keep, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool("prune", main))
