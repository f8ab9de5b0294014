"""A grid of students (lib.sh's ``grid`` and ``grid_bench``): their folders, starts and bench names.

Every (arch, method) student of a grid trains into ``ROOT/<size>/<method>``, the size being the
arch name without ``transformer_kd_`` (``small_d2``). A shrunk-teacher size
(``transformer_kd_small_dN``: the teacher's encoder, N decoder layers) starts every method's
student from the teacher's own layers: ``scripts/shrink_teacher.py --decoder-layers spread:N``
writes ``ROOT/init/ARCH.pt``, fine-tuned with ``INIT_LR`` and ``INIT_WARMUP`` (``init_plan``).
The bench of a grid names the teacher ``teacher`` and each student ``method=M,size=S`` (with a
``TAG`` key=value, ``name=teacher,TAG`` and ``method=M,size=S,TAG``); its bootstrap baseline is
the first ``baseline`` student (``baseline/S``, ``baseline/S/VALUE`` with a tag), else the
teacher (``bench_plan``).
"""
import re

from kd_nmt.errors import KDNMTError
from kd_nmt.recipes import choice_knob, knob
from kd_nmt.recipes.methods import resolve

KNOBS = {  # name: (default, meaning)
    "STUDENT_INIT": ("1", "0: the _dN sizes start from random weights too; 1: from the teacher's layers"),
    "INIT_LR": ("5e-4", "the learning rate of a student started from the teacher's layers"),
    "INIT_WARMUP": ("30", "the warmup updates of a student started from the teacher's layers"),
}
_SHRUNK = re.compile(r".*_d([0-9])")


def size(arch):
    """The size name of an arch: ``transformer_kd_small_d2`` -> ``small_d2``."""
    return arch[len("transformer_kd_"):] if arch.startswith("transformer_kd_") else arch


def init_plan(root, arch, environ=None):
    """How a student of ``arch`` starts: ``layers`` (the teacher's decoder layers it keeps, ``""``
    for random weights), ``init`` (the shrunk teacher to write) and its fairseq-train ``options``."""
    shrunk = _SHRUNK.fullmatch(arch)
    if not shrunk or choice_knob(KNOBS, "STUDENT_INIT", ("0", "1"), environ) == "0":
        return {"layers": "", "init": "", "options": []}
    init = f"{root}/init/{arch}.pt"
    return {"layers": shrunk.group(1), "init": init,
            "options": ["--finetune-from-model", init, "--lr", knob(KNOBS, "INIT_LR", environ),
                        "--warmup-updates", knob(KNOBS, "INIT_WARMUP", environ)]}


def bench_plan(root, teacher, archs, methods, tag=""):
    """The bench of a grid: ``names`` (one string, space-separated, as ``kd-nmt bench --names``),
    ``checkpoints`` (the teacher first) and ``baseline``."""
    if tag and "=" not in tag:
        raise KDNMTError(f"the bench tag must be key=value, got {tag!r}")
    for method in methods:
        resolve(method)
    extra = f",{tag}" if tag else ""
    names, checkpoints, baseline = [f"name=teacher{extra}" if tag else "teacher"], [teacher], ""
    for arch in archs:
        s = size(arch)
        for method in methods:
            names.append(f"method={method},size={s}{extra}")
            checkpoints.append(f"{root}/{s}/{method}/checkpoint_best.pt")
            if not baseline and method == "baseline":
                baseline = f"baseline/{s}" + (f"/{tag.partition('=')[2]}" if tag else "")
    return {"names": " ".join(names), "checkpoints": checkpoints, "baseline": baseline or "teacher"}
