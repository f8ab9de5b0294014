#!/usr/bin/env python3
"""Average fairseq checkpoints into one plain float32 checkpoint (Vaswani et al. 2017).

Each weight of the output is the element-wise mean of that weight over the inputs, summed in
float64 and stored as float32 whatever the inputs' dtype; non-floating buffers are taken from
the last input. Everything else (cfg, extra_state, optimizer_history) is the last input's, except
the optimizer state, which is dropped: the output loads wherever a checkpoint does
(fairseq-generate, --teacher-path, kd-nmt bench, scripts/export_ct2.py, --restore-file with or
without --reset-optimizer) and is about a third of a checkpoint with Adam's moments.

Inputs are either --inputs (any checkpoints of the same architecture) or --run DIR --last N:
the last N interval checkpoints (checkpoint_E_U.pt, from --save-interval-updates) of a training
run, or its last N epoch checkpoints (checkpointE.pt) when it has no interval checkpoints.
Checkpoints with other parameter names or shapes stop with one line (exit status 2).

example:
  python scripts/average_checkpoints.py --run work/teacher/model --last 5 \\
      --out work/teacher/model/checkpoint_avg5.pt
  python scripts/average_checkpoints.py --inputs run/checkpoint_3_1800.pt run/checkpoint_4_2000.pt \\
      --out run/checkpoint_avg.pt

Checkpoints are unpickled: average trusted files only.
"""
import glob
import os
import re
import sys

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.atomic import atomic_torch_save
from kd_nmt.errors import KDNMTError

PROG = "average_checkpoints"


def run_checkpoints(run, last):
    """The last ``last`` interval checkpoints of the training directory ``run`` (else epoch ones)."""
    from learning_curve import interval_checkpoints

    if not os.path.isdir(run):
        raise KDNMTError(f"--run directory not found: {run!r}")
    found = [path for _, path in interval_checkpoints(run)]
    kind = "interval checkpoints (checkpoint_E_U.pt)"
    if not found:
        epochs = []
        for path in glob.glob(os.path.join(run, "checkpoint*.pt")):
            m = re.fullmatch(r"checkpoint(\d+)\.pt", os.path.basename(path))
            if m:
                epochs.append((int(m.group(1)), path))
        found = [path for _, path in sorted(epochs)]
        kind = "epoch checkpoints (checkpointE.pt)"
    if len(found) < last:
        raise KDNMTError(
            f"{run} has {len(found)} {kind}, fewer than --last {last} (train with "
            "--save-interval-updates N --keep-interval-updates -1 to keep them)"
        )
    return found[-last:]


def average(paths):
    """The last checkpoint's state, ``model`` the float32 mean of ``paths``' weights, no optimizer state."""
    import torch

    from kd_nmt.checkpoint import load_checkpoint

    total, state = None, None
    for path in paths:
        state = load_checkpoint(path)
        weights = state["model"]
        if total is None:
            first, total = path, {k: v.double() if v.is_floating_point() else v for k, v in weights.items()}
            continue
        if weights.keys() != total.keys():
            extra = sorted(set(weights) ^ set(total))
            raise KDNMTError(f"{path} and {first} hold different parameters (first: {extra[0]!r}): "
                             "average checkpoints of one training run")
        for k, v in weights.items():
            if v.shape != total[k].shape:
                raise KDNMTError(f"{path} and {first} differ in the shape of {k!r}: "
                                 f"{tuple(v.shape)} vs {tuple(total[k].shape)}")
            total[k] = total[k] + v.double() if v.is_floating_point() else v
    state["model"] = {k: (v / len(paths)).to(torch.float32) if v.is_floating_point() else v
                      for k, v in total.items()}
    state.pop("last_optimizer_state", None)
    state.setdefault("extra_state", {})
    if state["extra_state"] is not None:
        state["extra_state"]["kd_nmt_averaged"] = [os.path.abspath(p) for p in paths]
    return state


def main(argv):
    p = ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--inputs", nargs="+", metavar="CHECKPOINT", help="checkpoints to average")
    p.add_argument("--run", help="a training run's --save-dir (with --last)")
    p.add_argument("--last", type=int, help="average the run's last N interval (or epoch) checkpoints")
    p.add_argument("--out", required=True, help="the averaged checkpoint to write")
    a = p.parse_args(argv)
    if bool(a.inputs) == bool(a.run) or bool(a.run) != (a.last is not None):
        p.error("give either --inputs CHECKPOINT... or --run DIR --last N")
    check_minimums(("--last", a.last, 1))
    paths = a.inputs or run_checkpoints(a.run, a.last)
    if any(os.path.abspath(path) == os.path.abspath(a.out) for path in paths):
        raise KDNMTError(f"--out {a.out!r} is one of the inputs: choose another file")

    state = average(paths)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    atomic_torch_save(state, a.out)  # (torch.save: a full disk was a RuntimeError traceback)
    names = ", ".join(os.path.basename(path) for path in paths)
    print(f"{PROG}: mean of {len(paths)} checkpoints ({names}) -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
