#!/usr/bin/env python3
"""Initialise a student from its teacher: keep some of the teacher's layers ("shrink and fine-tune").

A student that starts from random weights needs thousands of updates before distillation has
anything to refine; on 2 CPU cores that is hours. Shleifer & Rush (2020, "Pre-trained
Summarization Distillation") start a student from a copy of the teacher with layers left out
and then fine-tune it (with gold CE, word-level KD or on pseudo-labels); DistilBERT does the
same. The shrunk checkpoint written here has the teacher's embeddings and output projection,
the encoder layers ``--encoder-layers`` and the decoder layers ``--decoder-layers`` (indices
into the teacher's), renumbered from 0, weights in float32. The default keeps the whole
encoder and one decoder layer: a deep-encoder/shallow-decoder student (Kasai et al. 2021),
whose beam search costs about a decoder layer's share of the teacher's.

Train it like any student, with fairseq's own ``--finetune-from-model`` (optimizer, schedule
and meters start fresh; a rerun resumes from the run's checkpoint_last.pt) and the teacher's
sizes except the layer counts, e.g. for the shipped teacher (``transformer_kd_small``, 3+3):

example:
  python scripts/shrink_teacher.py --teacher models/teacher-deen/model.pt \\
      --decoder-layers 0 --out work/student-init/3x1.pt
  kd-nmt train DATA_BIN --arch transformer_kd_small --decoder-layers 1 \\
      --finetune-from-model work/student-init/3x1.pt ...

Without ``--encoder-layers``/``--decoder-layers`` a side keeps every layer. Indices are written
``0,2`` or ``spread:N`` (N layers spread evenly over the teacher's, first and last included,
as Shleifer & Rush choose them; ``spread:1`` is layer 0). The output also decodes as it is
(fairseq-generate, kd-nmt bench): the shrunk model before any training.
Checkpoints are unpickled: shrink trusted files only.
"""
import os
import re
import sys

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_torch_save
from kd_nmt.errors import KDNMTError

PROG = "shrink_teacher"
SIDES = ("encoder", "decoder")


def spread(n, total):
    """``n`` layer indices spread evenly over ``range(total)``, first and last included."""
    if n == 1:
        return [0]
    return sorted({round(i * (total - 1) / (n - 1)) for i in range(n)})


def parse_layers(text, total, side):
    """``"0,2"`` or ``"spread:N"`` -> sorted distinct indices < total; one clear error otherwise."""
    m = re.fullmatch(r"spread:(\d+)", text)
    if m:
        n = int(m.group(1))
        if not 1 <= n <= total:
            raise KDNMTError(f"--{side}-layers {text}: N must be 1..{total} (the teacher's {side} layers)")
        return spread(n, total)
    try:
        keep = [int(t) for t in text.split(",")]
    except ValueError:
        raise KDNMTError(f"--{side}-layers {text!r}: give indices like 0,2 or spread:N") from None
    bad = [i for i in keep if not 0 <= i < total]
    if bad or len(set(keep)) != len(keep):
        raise KDNMTError(f"--{side}-layers {text}: indices must be distinct and in 0..{total - 1} "
                         f"(the teacher has {total} {side} layers)")
    return sorted(keep)


def layer_counts(weights):
    """``{"encoder": n, "decoder": m}``: how many layers each side of the state dict holds."""
    counts = {}
    for side in SIDES:
        found = {int(m.group(1)) for k in weights for m in [re.match(rf"{side}\.layers\.(\d+)\.", k)] if m}
        counts[side] = len(found)
    return counts


def shrink_weights(weights, keep):
    """The state dict with only ``keep[side]``'s layers, renumbered 0.., floats as float32."""
    import torch

    out, converted = {}, {}  # tied embeddings stay one tensor (converted once, by storage)
    for key, value in weights.items():
        m = re.match(r"(encoder|decoder)\.layers\.(\d+)\.(.*)", key)
        if m:
            side, index, rest = m.group(1), int(m.group(2)), m.group(3)
            if index not in keep[side]:
                continue
            key = f"{side}.layers.{keep[side].index(index)}.{rest}"
        if value.is_floating_point():
            ptr = value.data_ptr()
            if ptr not in converted:
                converted[ptr] = value.to(torch.float32)
            value = converted[ptr]
        out[key] = value
    return out


def shrink(state, keep):
    """A fresh-training checkpoint: shrunk weights, cfg with the new layer counts, no optimizer."""
    state = dict(state)
    state["model"] = shrink_weights(state["model"], keep)
    model_cfg = state["cfg"]["model"]  # an argparse.Namespace (fairseq <= 0.12) or a DictConfig
    for side in SIDES:
        setattr(model_cfg, f"{side}_layers", len(keep[side]))
    state.pop("last_optimizer_state", None)
    # the key must exist (fairseq reads it for criteria with parameters, e.g. hybrid_kd's learned
    # gate); empty, such a criterion starts from its own initial values
    state["criterion"] = None
    # nothing of the teacher's training may leak into the student's: no iterator position,
    # meters or training time (fairseq reads train_iterator even with --finetune-from-model)
    state["extra_state"] = {"train_iterator": {"epoch": 1}, "kd_nmt_shrunk_from": keep}
    history = state.get("optimizer_history") or [{}]
    state["optimizer_history"] = [{**history[-1], "num_updates": 0}]
    return state


def main(argv):
    p = ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--teacher", required=True, help="the teacher's fairseq checkpoint (float16 or 32)")
    p.add_argument("--encoder-layers", help="teacher encoder layers to keep: 0,1,2 or spread:N (default: all)")
    p.add_argument("--decoder-layers", help="teacher decoder layers to keep: 0 or spread:N (default: all)")
    p.add_argument("--out", required=True, help="the student's initial checkpoint to write")
    a = p.parse_args(argv)
    if os.path.abspath(a.out) == os.path.abspath(a.teacher):
        raise KDNMTError("--out is the teacher itself: choose another file")

    from kd_nmt.checkpoint import load_checkpoint

    state = load_checkpoint(a.teacher)
    if state.get("cfg") is None or state["cfg"].get("model") is None:
        raise KDNMTError(f"{a.teacher} has no model config (a fairseq >= 0.10 checkpoint is needed)")
    total = layer_counts(state["model"])
    keep = {}
    for side in SIDES:
        text = getattr(a, f"{side}_layers")
        keep[side] = parse_layers(text, total[side], side) if text else list(range(total[side]))
    student = shrink(state, keep)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    atomic_torch_save(student, a.out)  # (torch.save: a full disk was a RuntimeError traceback)
    unique = {v.data_ptr(): v for v in student["model"].values() if v.is_floating_point()}
    params = sum(v.numel() for v in unique.values())
    print(f"{PROG}: encoder layers {keep['encoder']} of {total['encoder']}, decoder layers "
          f"{keep['decoder']} of {total['decoder']} ({params:,} parameters) -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
