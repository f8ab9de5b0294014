#!/usr/bin/env python3
"""A GPU check: every plugin path on CUDA, compared with float32 on the CPU.

What it runs, in a work folder (``--work``, default ``work/gpu_check``), on the de-en fixture
(``data/fixtures/deen``, 400 training pairs):

1. data: a 600-piece sentencepiece model and ``fairseq-preprocess`` (joined dictionary), as the
   test suite's fixtures build them (tests/conftest.py); a 2+2-layer teacher trained on CUDA by
   ``fairseq-train --user-dir kd_nmt`` (300 updates, float32);
2. ``kd-nmt train`` of a 1+1-layer student (tests/helpers.py's TINY_ARCH, dropout 0: no random
   numbers that differ between CPU and CUDA) with ``word_kd``, ``hybrid_kd`` (Seq-KD data from
   step 3), ``word_kd`` from a teacher cache, selective KD (``--kd-select global``) and on-policy
   KD (``--kd-on-policy 0.5 --kd-student-sampling greedy``), each on CUDA with ``--fp16`` and with
   ``--bf16`` and on the CPU in float32 (``--cpu``): the same command, ``--seed 1``, the same
   batches (``--max-tokens``; checked: the logged ``bsz`` and ``wpb`` of every update must be
   equal), 30 updates logged one by one (``--log-interval 1 --log-format simple``); the losses of
   fairseq's ``train_inner`` lines are compared with FIRST_UPDATE_RTOL / LATER_UPDATES_RTOL;
3. ``kd-nmt relabel`` of the train source on CUDA (fairseq backend, binarized for hybrid_kd;
   the share of lines identical to a float32 CPU relabel must reach RELABEL_MIN_AGREEMENT) and
   with the CTranslate2 backend on CUDA (float16; on the CPU, int8, where the installed
   ctranslate2 has no CUDA support); ``kd-nmt cache-teacher`` on CUDA in float32 (the cache the
   students train from) and with ``--fp16``, each compared with a ``--cpu`` cache (gold NLL,
   most probable token);
4. ``kd-nmt bench`` of the teacher and the fp16 word_kd student on the fixture's test split,
   fairseq on ``--device cuda`` and ``--backend ctranslate2``.

It writes a JSON report (``--out``, default WORK/gpu_check.json): every step's command, wall
seconds, return code, what was compared and pass/fail, and the torch / CUDA / GPU names; it
prints one summary line per step and exits 1 if any step or comparison fails, 0 if all pass.
Independent steps run side by side (up to ``--gpu-jobs`` on the GPU, a few on the CPU); an H200
with a 16-core host should need 3-5 minutes (an estimate: not yet measured), and it never takes
more than ``--time-limit`` (480 s): steps still running then are stopped and reported as failed.
The work folder is removed afterwards unless ``--keep`` (the report is kept). Without CUDA
(``torch.cuda.is_available()`` False) it prints one line and exits 0 having run nothing;
``--dry-run`` prints the commands on any machine.

example:
  .venv/bin/python scripts/gpu_check.py --out docs/gpu_check.json      # on a CUDA machine
  .venv/bin/python scripts/gpu_check.py --dry-run                      # the plan, anywhere
  .venv/bin/python scripts/gpu_check.py --precisions fp16 --methods word_kd on_policy_kd --keep
"""
import argparse
import datetime
import json
import math
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROG = "gpu_check"
REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "data" / "fixtures" / "deen"
PLUGIN = REPO / "kd_nmt"
BIN = Path(sys.executable).parent
SPLITS = ("train", "valid", "test")
MARKER = ".gpu_check"  # a work folder holding it was made by this script and may be cleared
NO_CUDA_LINE = ("gpu_check: needs a CUDA device (torch.cuda.is_available() is False here); "
                "nothing was run")

# --- tolerances -------------------------------------------------------------------------------
# fp16 / bf16 on CUDA against float32 on the CPU, relative to the float32 loss. The first update's
# loss is computed from the same initial weights (built on the CPU from --seed 1, dropout 0) on
# the same batch, so it differs by rounding only: fp16 keeps 11 significant bits (4.9e-4 per
# operation), bf16 8 (3.9e-3); the kd losses are computed in float32 from the logits, and through
# a 64-wide layer that is a few 1e-3 at most. 2e-2 leaves a margin of 5-10x and still catches a
# wrong term: dropping the KD half of word_kd (alpha 0.5), a teacher left in another dtype or a
# mis-scaled temperature moves the loss by tens of percent. After the first update the rounding of
# the gradients compounds through Adam (lr 3e-3, from scratch), so later updates get 5e-2.
FIRST_UPDATE_RTOL = 2e-2
LATER_UPDATES_RTOL = 5e-2
# fairseq's --fp16 skips an update whose scaled gradients overflow, and the runs' batches then no
# longer line up: only the updates before the first overflow are compared, and at least this many
# must be (--fp16-init-scale 8, not fairseq's 128, keeps the tiny student's first summed gradients,
# ~1e3 over a 2000-token batch, far below fp16's 65504)
MIN_COMPARED_UPDATES = 10
FP16_INIT_SCALE = 8
# kd-nmt relabel, fairseq backend, float32 on CUDA against float32 on the CPU: beam search flips
# only on near-ties, so nearly every line is identical; below half something is broken (decoding
# on the wrong weights, a lost or shifted line), not rounding
RELABEL_MIN_AGREEMENT = 0.5
# kd-nmt cache-teacher on CUDA (float32, --fp16) against --cpu: the test suite's tolerances for
# the CPU bf16 cache (tests/test_cache_bf16.py), which fp16's 3 more significant bits and float32
# meet with room: the teacher's gold NLL per token, and the share of tokens whose most probable
# id is the same
CACHE_NLL_ATOL = 0.12
CACHE_NLL_MEAN_ATOL = 0.015
CACHE_MIN_TOP1_AGREEMENT = 0.95

# --- what is trained ---------------------------------------------------------------------------
TEACHER_ARCH = [
    "--arch", "transformer",
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "128", "--decoder-embed-dim", "128",
    "--encoder-ffn-embed-dim", "256", "--decoder-ffn-embed-dim", "256",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--share-all-embeddings", "--dropout", "0.1",
]
# tests/helpers.py's TINY_ARCH; dropout 0: CPU and CUDA draw different random numbers
STUDENT_ARCH = [
    "--arch", "transformer",
    "--encoder-layers", "1", "--decoder-layers", "1",
    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
    "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
    "--share-all-embeddings", "--dropout", "0.0",
]
# tests/helpers.py's TRAIN_COMMON without --cpu (the device is the run's), one process
TRAIN_COMMON = [
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.003",
    "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10", "--max-tokens", "2000",
    "--seed", "1", "--log-format", "simple", "--log-interval", "1", "--no-epoch-checkpoints",
    "--num-workers", "0", "--no-progress-bar", "--distributed-world-size", "1",
]
KD_COMMON = ["--kd-alpha", "0.5", "--kd-divergence", "fkl", "--label-smoothing", "0.1"]
METHODS = ("word_kd", "hybrid_kd", "word_kd_cache", "selective_kd", "on_policy_kd")
PRECISIONS = ("fp16", "bf16")
REFERENCE = "fp32-cpu"
PRECISION_FLAGS = {
    REFERENCE: ["--cpu"],
    "fp16": ["--fp16", "--fp16-init-scale", str(FP16_INIT_SCALE)],
    "bf16": ["--bf16"],
}
CACHE_TOPK = 16
BEAM = 5
DECODE_LIMITS = ["--max-len-a", "1.2", "--max-len-b", "10"]
BENCH_STUDENT = ("word_kd", "fp16")  # the student benched next to the teacher

# failures with a known cause: a substring of the log -> what it means
KNOWN_CAUSES = [
    ("xla_device", "fairseq 0.12 turns --bf16 into --tpu (fairseq/options.py) and kd_nmt/precision.py "
                   "takes --bf16 over only for CPU training, so on CUDA the trainer looks for an XLA device"),
    ("torch_xla", "fairseq 0.12 turns --bf16 into --tpu (fairseq/options.py): an XLA device is looked for"),
    ("CUDA out of memory", "the GPU ran out of memory (other jobs on it? lower --gpu-jobs)"),
    ("no CUDA device is available", "this process saw no CUDA device (CUDA_VISIBLE_DEVICES?)"),
]


def tool(name):
    """A console script of this Python's environment (fairseq-train, kd-nmt, ...)."""
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or str(path))


# --- the plan ----------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    group: str
    device: str  # "cuda", "cpu", "-" (in this process)
    argv: list = None  # None: ``func`` runs in this process
    func: object = None
    describe: str = ""
    deps: tuple = ()  # must pass first
    soft_deps: tuple = ()  # must have finished first (pass or fail)
    makedirs: tuple = ()
    check: object = None  # (step, steps by name) -> (passed, reason, details)
    prepare: object = None  # (step, steps by name) -> (argv, note), just before it runs
    info: dict = field(default_factory=dict)
    # results
    status: str = "pending"  # pending, running, pass, fail, skip
    rc: int = None
    wall_s: float = None
    reason: str = ""
    note: str = ""
    details: dict = field(default_factory=dict)
    log: Path = None
    proc: object = None
    ran_argv: list = None

    @property
    def command(self):
        if self.argv is None:
            return f"(in this process) {self.describe}"
        return shlex.join(str(a) for a in (self.ran_argv or self.argv))


class Paths:
    def __init__(self, work):
        self.work = Path(work).resolve()
        w = self.work
        self.tok, self.data_bin, self.logs = w / "tok", w / "data-bin", w / "logs"
        self.spm = self.tok / "spm.model"
        self.teacher_dir = w / "teacher"
        self.teacher = self.teacher_dir / "checkpoint_best.pt"
        self.relabel = w / "relabel"
        self.seqkd_bin = w / "seqkd-bin"
        self.cache = w / "cache"
        self.train = w / "train"
        self.bench = w / "bench"

    def relabel_out(self, tag):
        return self.relabel / f"{tag}.train.en"

    def cache_dir(self, tag):
        return self.cache / tag

    def save_dir(self, method, precision):
        return self.train / method / precision


def method_args(method, p):
    """The kd options of one method (recipes/lib.sh's student())."""
    live = ["--task", "kd_translation", "--teacher-path", str(p.teacher)]
    if method == "word_kd":
        return [*live, "--criterion", "word_kd", *KD_COMMON]
    if method == "hybrid_kd":
        return [*live, "--sentence-kd-data", str(p.seqkd_bin), "--criterion", "hybrid_kd", *KD_COMMON]
    if method == "word_kd_cache":
        return ["--task", "kd_translation", "--teacher-cache", str(p.cache_dir("cuda")),
                "--criterion", "word_kd", *KD_COMMON]
    if method == "selective_kd":
        return [*live, "--criterion", "word_kd", *KD_COMMON, "--kd-select", "global",
                "--kd-select-rate", "0.5"]
    if method == "on_policy_kd":
        return [*live, "--criterion", "word_kd", *KD_COMMON, "--kd-on-policy", "0.5",
                "--kd-student-sampling", "greedy"]
    raise ValueError(method)


METHOD_DEPS = {"hybrid_kd": ("relabel/fairseq-cuda",), "word_kd_cache": ("cache-teacher/cuda",)}


def build_plan(p, methods=METHODS, precisions=PRECISIONS, updates=30, teacher_updates=300,
               ct2_device="cuda"):
    """Every step, in the order they start when their inputs are ready."""
    kd = tool("kd-nmt")
    ct2_quant = "float16" if ct2_device == "cuda" else "int8"
    steps = [
        Step("data/spm", "data", "-", func=lambda s: make_spm(p), makedirs=(p.tok,),
             describe=f"sentencepiece: a 600-piece unigram model on {FIXTURE}/train.{{de,en}} "
                      f"(tests/conftest.py's settings), then {', '.join(SPLITS)} encoded into {p.tok}",
             check=lambda s, by: check_files(p.spm, *(p.tok / f"{sp}.de" for sp in SPLITS))),
        Step("data/preprocess", "data", "cpu", deps=("data/spm",), argv=[
            tool("fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
            "--trainpref", p.tok / "train", "--validpref", p.tok / "valid", "--testpref", p.tok / "test",
            "--destdir", p.data_bin, "--joined-dictionary", "--workers", "4"],
            check=lambda s, by: check_files(p.data_bin / "dict.en.txt", p.data_bin / "train.de-en.de.bin")),
        Step("teacher", "teacher", "cuda", deps=("data/preprocess",), argv=[
            tool("fairseq-train"), p.data_bin, "--user-dir", PLUGIN, *TEACHER_ARCH,
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
            *TRAIN_COMMON,
            "--max-update", str(teacher_updates), "--validate-interval", "10", "--save-interval", "10",
            "--save-dir", p.teacher_dir],
            check=lambda s, by: check_files(p.teacher)),
    ]
    relabel_common = ["relabel", "--teacher", p.teacher, "--data-bin", p.data_bin,
                      "--input", p.tok / "train.de", "--beam", str(BEAM), *DECODE_LIMITS, "--no-progress"]
    need_seqkd = "hybrid_kd" in methods
    # the float32 CPU references come first in each group: the checks run in plan order, at the end
    steps += [
        Step("relabel/fairseq-cpu", "relabel", "cpu", deps=("teacher",), makedirs=(p.relabel,), argv=[
            kd, *relabel_common, "--output", p.relabel_out("fairseq-cpu"), "--backend", "fairseq",
            "--device", "cpu", "--threads", "4"],
            check=lambda s, by: check_relabel(s, by, p, "fairseq-cpu", None, None)),
        Step("relabel/fairseq-cuda", "relabel", "cuda", deps=("teacher",), makedirs=(p.relabel,), argv=[
            kd, *relabel_common, "--output", p.relabel_out("fairseq-cuda"), "--backend", "fairseq",
            "--device", "cuda", *(["--binarize-to", p.seqkd_bin, "--binarize-workers", "2"] if need_seqkd else [])],
            check=lambda s, by: check_relabel(s, by, p, "fairseq-cuda", "fairseq-cpu", RELABEL_MIN_AGREEMENT)),
        Step(f"relabel/ctranslate2-{ct2_device}", "relabel", ct2_device, deps=("teacher",),
             makedirs=(p.relabel,), argv=[
                 kd, *relabel_common, "--output", p.relabel_out(f"ctranslate2-{ct2_device}"),
                 "--backend", "ctranslate2", "--device", ct2_device, "--ct2-quantization", ct2_quant,
                 *(["--threads", "4"] if ct2_device == "cpu" else [])],
             # agreement with fairseq is informative only: another engine, float16
             check=lambda s, by: check_relabel(s, by, p, f"ctranslate2-{ct2_device}", "fairseq-cuda", None)),
    ]
    cache_common = ["cache-teacher", "--teacher", p.teacher, "--data-bin", p.data_bin, "--split", "train",
                    "--topk", str(CACHE_TOPK), "--no-progress-bar"]
    steps += [
        Step("cache-teacher/cpu", "cache", "cpu", deps=("teacher",), makedirs=(p.cache,),
             argv=[kd, *cache_common, "--cpu", "--out", p.cache_dir("cpu")],
             check=lambda s, by: check_cache(s, by, p, "cpu", None)),
        # the cache the word_kd_cache students train from
        Step("cache-teacher/cuda", "cache", "cuda", deps=("teacher",), makedirs=(p.cache,),
             argv=[kd, *cache_common, "--out", p.cache_dir("cuda")],
             check=lambda s, by: check_cache(s, by, p, "cuda", "cpu")),
        Step("cache-teacher/cuda-fp16", "cache", "cuda", deps=("teacher",), makedirs=(p.cache,),
             argv=[kd, *cache_common, "--fp16", "--out", p.cache_dir("cuda-fp16")],
             check=lambda s, by: check_cache(s, by, p, "cuda-fp16", "cpu")),
    ]
    # the float32 CPU references first: they are the slowest
    for precision in (REFERENCE, *precisions):
        for method in methods:
            name = f"train/{method}/{precision}"
            steps.append(Step(
                name, "train", "cpu" if precision == REFERENCE else "cuda",
                deps=("teacher", *METHOD_DEPS.get(method, ())), makedirs=(p.train / method,),
                argv=[kd, "train", p.data_bin, *STUDENT_ARCH, *TRAIN_COMMON, *method_args(method, p),
                      "--max-update", str(updates), *PRECISION_FLAGS[precision],
                      "--save-dir", p.save_dir(method, precision)],
                info={"method": method, "precision": precision, "updates": updates},
                check=lambda s, by: check_train(s, by),
            ))
    student = p.save_dir(*BENCH_STUDENT) / "checkpoint_best.pt"
    student_step = f"train/{BENCH_STUDENT[0]}/{BENCH_STUDENT[1]}"
    have_student = BENCH_STUDENT[0] in methods and BENCH_STUDENT[1] in precisions
    checkpoints = [p.teacher, *([student] if have_student else [])]
    names = ["teacher", *([f"{BENCH_STUDENT[0]}_{BENCH_STUDENT[1]}"] if have_student else [])]
    bench_common = ["bench", "--checkpoint", *checkpoints, "--names", *names, "--data-bin", p.data_bin,
                    "--split", "test", "--spm", p.spm, "--reference", FIXTURE / "test.en",
                    "--beam", str(BEAM), *DECODE_LIMITS, "--bootstrap", "0", "--no-progress"]
    bench_soft = (student_step,) if have_student else ()
    steps += [
        Step("bench/fairseq-cuda", "bench", "cuda", deps=("teacher",), soft_deps=bench_soft,
             makedirs=(p.bench,), argv=[kd, *bench_common, "--device", "cuda", "--out", p.bench / "fairseq-cuda"],
             prepare=lambda s, by: drop_missing_checkpoints(s, checkpoints, names),
             check=lambda s, by: check_bench(s, p.bench / "fairseq-cuda")),
        Step(f"bench/ctranslate2-{ct2_device}", "bench", ct2_device, deps=("teacher",),
             # after relabel's conversion of the teacher (the same CKPT.ct2-QUANT/ folder)
             soft_deps=(*bench_soft, f"relabel/ctranslate2-{ct2_device}"), makedirs=(p.bench,),
             argv=[kd, *bench_common, "--backend", "ctranslate2", "--ct2-quantization", ct2_quant,
                   "--device", ct2_device, "--out", p.bench / f"ctranslate2-{ct2_device}"],
             prepare=lambda s, by: drop_missing_checkpoints(s, checkpoints, names),
             check=lambda s, by: check_bench(s, p.bench / f"ctranslate2-{ct2_device}")),
    ]
    return steps


def make_spm(p):
    """The fixture tokenized with a joint sentencepiece model (tests/conftest.py's ``tokenized``)."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=[str(FIXTURE / "train.de"), str(FIXTURE / "train.en")],
        model_prefix=str(p.tok / "spm"), vocab_size=600, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(p.spm))
    for split in SPLITS:
        for lang in ("de", "en"):
            lines = (FIXTURE / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            pieces = [" ".join(sp.encode(line, out_type=str)) for line in lines]
            (p.tok / f"{split}.{lang}").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return 0


def drop_missing_checkpoints(step, checkpoints, names):
    """The bench without a student whose training failed (the teacher alone still checks the engine)."""
    kept = [(c, n) for c, n in zip(checkpoints, names) if Path(c).exists()]
    if len(kept) == len(checkpoints) or not kept:
        return step.argv, ""
    argv = [str(a) for a in step.argv]  # ... --checkpoint C... --names N... --data-bin ...
    i, k = argv.index("--checkpoint"), argv.index("--data-bin")
    new = argv[:i + 1] + [str(c) for c, _ in kept] + ["--names"] + [n for _, n in kept] + argv[k:]
    missing = [n for c, n in zip(checkpoints, names) if not Path(c).exists()]
    return new, f"benched without {', '.join(missing)} (no checkpoint)"


# --- logs and comparisons ------------------------------------------------------------------------
TRAIN_INNER = re.compile(r"[ |:]train_inner[ |:]")
KEY_VALUE = re.compile(r"(\w+)=(-?[0-9.]+(?:e[+-]?[0-9]+)?|nan|-?inf)")


def parse_train_log(text):
    """``(records, overflow_after)``: one dict per ``train_inner`` line (loss, bsz, wpb,
    num_updates, ...) in order, and how many came before fairseq's first "gradient overflow
    detected" (None: no overflow)."""
    records, overflow_after = [], None
    for line in text.splitlines():
        if "gradient overflow detected" in line and overflow_after is None:
            overflow_after = len(records)
        if TRAIN_INNER.search(line) and " loss=" in line:
            records.append({k: float(v) for k, v in KEY_VALUE.findall(line)})
    return records, overflow_after


def compare_losses(reference, candidate, first_rtol=FIRST_UPDATE_RTOL, later_rtol=LATER_UPDATES_RTOL,
                   expected=None):
    """Compare the candidate's per-update losses with the reference's, relative to the reference.

    The first ``expected`` (default: all the reference's) losses are compared: the first within
    ``first_rtol``, the others within ``later_rtol``. A missing or non-finite loss fails.
    Returns a dict: passed, reason, compared, rel_errors, max_rel_error, worst_update.
    """
    n = len(reference) if expected is None else expected
    result = {"passed": False, "reason": "", "compared": 0, "rel_errors": [], "max_rel_error": None,
              "worst_update": None, "first_rtol": first_rtol, "later_rtol": later_rtol}
    if n < 1:
        result["reason"] = "no losses to compare"
        return result
    if len(reference) < n:
        result["reason"] = f"the reference logged {len(reference)} losses, {n} expected"
        return result
    if len(candidate) < n:
        result["reason"] = f"logged {len(candidate)} losses, {n} expected"
        return result
    failures = []
    for i in range(n):
        ref, got = float(reference[i]), float(candidate[i])
        if not (math.isfinite(ref) and math.isfinite(got)):
            result["reason"] = f"update {i + 1}: loss {got} vs reference {ref} is not finite"
            return result
        rel = abs(got - ref) / max(abs(ref), 1e-12)
        result["rel_errors"].append(rel)
        tol = first_rtol if i == 0 else later_rtol
        if rel > tol:
            failures.append(f"update {i + 1}: {got:g} vs {ref:g}, relative error {rel:.2e} > {tol:.0e}")
    errors = result["rel_errors"]
    worst = max(range(n), key=lambda i: errors[i])
    result.update(compared=n, max_rel_error=errors[worst], worst_update=worst + 1)
    if failures:
        result["reason"] = f"{len(failures)} of {n} losses out of tolerance; first: {failures[0]}"
        return result
    result["passed"] = True
    result["reason"] = (f"{n} losses within {first_rtol:.0e} (update 1) / {later_rtol:.0e} of float32 CPU, "
                        f"max relative error {errors[worst]:.1e} at update {worst + 1}")
    return result


def same_batches(reference, candidate, n):
    """The first update whose batch (bsz, wpb) differs, or None: both runs saw the same batches."""
    for i in range(min(n, len(reference), len(candidate))):
        for key in ("bsz", "wpb"):
            if reference[i].get(key) != candidate[i].get(key):
                return i + 1, key, reference[i].get(key), candidate[i].get(key)
    return None


def read_log(step):
    try:
        return step.log.read_text(encoding="utf-8", errors="replace")
    except (OSError, AttributeError):
        return ""


def check_files(*paths):
    missing = [str(p) for p in paths if not Path(p).exists()]
    return (not missing, f"missing: {', '.join(missing)}" if missing else "outputs written", {})


def check_train(step, by_name):
    method, precision, n = step.info["method"], step.info["precision"], step.info["updates"]
    records, overflow_after = parse_train_log(read_log(step))
    details = {"method": method, "precision": precision, "losses": [r.get("loss") for r in records],
               "bsz": [r.get("bsz") for r in records], "wpb": [r.get("wpb") for r in records]}
    if overflow_after is not None:
        details["fp16_overflow_after_update"] = overflow_after
    if precision == REFERENCE:
        if len(records) < n:
            return False, f"logged {len(records)} training losses, {n} expected", details
        return True, f"{n} losses logged (the float32 CPU reference)", details
    ref_step = by_name.get(f"train/{method}/{REFERENCE}")
    if ref_step is None or ref_step.status != "pass":
        return False, "its float32 CPU reference did not pass", details
    ref_records, _ = parse_train_log(read_log(ref_step))
    expected = n
    if overflow_after is not None and overflow_after < n:
        if overflow_after < MIN_COMPARED_UPDATES:
            return False, (f"fp16 gradient overflow after {overflow_after} updates: fewer than "
                           f"{MIN_COMPARED_UPDATES} comparable updates"), details
        expected = overflow_after
    cmp = compare_losses([r.get("loss") for r in ref_records], [r.get("loss") for r in records],
                         expected=expected)
    details["comparison"] = {**cmp, "reference": f"train/{method}/{REFERENCE}",
                             "reference_losses": [r.get("loss") for r in ref_records[:expected]],
                             "losses": [r.get("loss") for r in records[:expected]]}
    if cmp["compared"]:
        differ = same_batches(ref_records, records, expected)
        if differ is not None:
            update, key, a, b = differ
            return False, (f"not the same batches as the float32 CPU run: update {update} has "
                           f"{key}={b:g} vs {a:g}"), details
    reason = cmp["reason"] + (" (compared up to the first fp16 overflow)" if expected < n else "")
    return cmp["passed"], reason, details


def _lines(path):
    return Path(path).read_text(encoding="utf-8").split("\n")[:-1]


def check_relabel(step, by_name, p, tag, against, min_agreement):
    out = p.relabel_out(tag)
    if not out.exists():
        return False, f"no output {out}", {}
    lines, source = _lines(out), _lines(p.tok / "train.de")
    details = {"lines": len(lines), "empty": sum(1 for line in lines if not line.strip())}
    if len(lines) != len(source):
        return False, f"{len(lines)} output lines for {len(source)} source lines", details
    reason = f"{len(lines)} lines ({details['empty']} empty)"
    if against is None:
        return True, reason, details
    other = p.relabel_out(against)
    ref_step = by_name.get(f"relabel/{against}")
    if not other.exists() or (ref_step is not None and ref_step.status != "pass"):
        if min_agreement is None:
            return True, reason + f"; {against} missing: not compared", details
        return False, reason + f"; the reference relabel/{against} did not pass", details
    agreement = sum(a == b for a, b in zip(lines, _lines(other))) / max(len(lines), 1)
    details.update(agreement_with=against, agreement=round(agreement, 4))
    reason += f", {100 * agreement:.1f}% identical to {against}"
    if min_agreement is not None and agreement < min_agreement:
        return False, reason + f" (at least {100 * min_agreement:.0f}% expected)", details
    return True, reason, details


def _cache_arrays(path):
    import numpy as np

    chunks = sorted((Path(path) / "chunks").iterdir())
    return {name: np.concatenate([np.load(d / f"{name}.npy") for d in chunks]) for name in ("ids", "nll")}


def check_cache(step, by_name, p, tag, against):
    import numpy as np

    out = p.cache_dir(tag)
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return False, f"no readable {out / 'meta.json'}: {exc}", {}
    details = {k: meta.get(k) for k in ("k", "vocab_size", "n_tokens", "teacher_precision", "logp_dtype")}
    if not meta.get("complete"):
        return False, "meta.json says the cache is not complete", details
    reason = f"{meta.get('n_tokens')} tokens, top {meta.get('k')}, teacher {meta.get('teacher_precision')}"
    if against is None:
        return True, reason, details
    ref_step = by_name.get(f"cache-teacher/{against}")
    if ref_step is None or ref_step.status != "pass":
        return False, reason + f"; the reference cache-teacher/{against} did not pass", details
    got, ref = _cache_arrays(out), _cache_arrays(p.cache_dir(against))
    if got["nll"].shape != ref["nll"].shape:
        counts = f"{got['nll'].shape[0]} tokens vs {ref['nll'].shape[0]} in the {against} cache"
        return False, f"{reason}; {counts}", details
    error = np.abs(got["nll"].astype(np.float64) - ref["nll"].astype(np.float64))
    top1 = float((got["ids"][:, 0] == ref["ids"][:, 0]).mean())
    details.update(against=against, nll_max_abs_error=float(error.max()), nll_mean_abs_error=float(error.mean()),
                   top1_agreement=round(top1, 4), finite=bool(np.isfinite(got["nll"]).all()))
    reason += (f"; gold NLL vs {against}: max |error| {error.max():.2e}, mean {error.mean():.2e}; "
               f"top-1 id the same at {100 * top1:.1f}%")
    ok = (details["finite"] and error.max() <= CACHE_NLL_ATOL and error.mean() <= CACHE_NLL_MEAN_ATOL
          and top1 >= CACHE_MIN_TOP1_AGREEMENT)
    if not ok:
        reason += (f" (tolerances: max {CACHE_NLL_ATOL}, mean {CACHE_NLL_MEAN_ATOL}, "
                   f"top-1 {100 * CACHE_MIN_TOP1_AGREEMENT:.0f}%)")
    return ok, reason, details


def check_bench(step, out):
    import csv

    table = Path(out) / "bench.csv"
    if not table.exists():
        return False, f"no {table}", {}
    with open(table, encoding="utf-8", newline="") as f:
        rows = [{k: row.get(k) for k in ("name", "backend", "decode", "beam", "n_sentences", "bleu", "chrf",
                                          "sents_per_s", "device")} for row in csv.DictReader(f)]
    if not rows:
        return False, f"{table} has no rows", {}
    summary = ", ".join(f"{r['name']} {r['decode']} BLEU {r['bleu']} ({r['sents_per_s']} sents/s)" for r in rows)
    return True, summary, {"rows": rows}


# --- running -----------------------------------------------------------------------------------
class Runner:
    def __init__(self, steps, p, time_limit, step_timeout, gpu_jobs, cpu_jobs, cpu_threads):
        self.steps, self.p = steps, p
        self.by_name = {s.name: s for s in steps}
        self.deadline = time.monotonic() + time_limit
        self.step_timeout = step_timeout
        self.slots = {"gpu": gpu_jobs, "cpu": cpu_jobs}
        self.cpu_threads = cpu_threads
        self.done = queue.Queue()

    def _resource(self, step):
        return "gpu" if step.device == "cuda" else "cpu"

    def _env(self, step):
        threads = self.cpu_threads if step.device in ("cpu", "-") else 2
        env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # the plugin must not need it
        return env

    def _run(self, step):
        start = time.monotonic()
        try:
            for d in step.makedirs:
                Path(d).mkdir(parents=True, exist_ok=True)
            if step.argv is None:
                with open(step.log, "w", encoding="utf-8") as log:
                    log.write(step.command + "\n")
                step.rc = step.func(step) or 0
            else:
                argv = step.argv
                if step.prepare is not None:
                    argv, step.note = step.prepare(step, self.by_name)
                step.ran_argv = [str(a) for a in argv]
                with open(step.log, "w", encoding="utf-8") as log:
                    log.write(step.command + "\n\n")
                    log.flush()
                    proc = subprocess.Popen(step.ran_argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self._env(step), cwd=REPO,
                                            start_new_session=True)
                    step.proc = proc
                    limit = min(self.step_timeout, max(1.0, self.deadline - time.monotonic()))
                    try:
                        step.rc = proc.wait(timeout=limit)
                    except subprocess.TimeoutExpired:
                        self._kill(proc)
                        step.rc = None
                        which = "--time-limit" if time.monotonic() >= self.deadline - 1 else "--step-timeout"
                        step.reason = f"stopped after {time.monotonic() - start:.0f} s ({which})"
        except Exception as exc:  # an in-process step's error, or a command that cannot start
            step.rc = step.rc if step.rc not in (None, 0) else 1
            step.reason = f"{type(exc).__name__}: {exc}"
        step.wall_s = round(time.monotonic() - start, 2)
        self.done.put(step.name)

    @staticmethod
    def _kill(proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this script started
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def run(self):
        pending = list(self.steps)
        running = set()
        total = len(self.steps)
        finished = 0
        while pending or running:
            started_any = False
            for step in list(pending):
                states = [self.by_name[d].status for d in step.deps if d in self.by_name]
                missing = [d for d in step.deps if d not in self.by_name]
                if missing or any(s in ("fail", "skip") for s in states):
                    bad = missing or [d for d in step.deps if self.by_name[d].status in ("fail", "skip")]
                    step.status, step.reason = "skip", f"not run: {', '.join(bad)} did not pass"
                    pending.remove(step)
                    finished += 1
                    progress(f"[{finished}/{total}] skip {step.name}: {step.reason}")
                    continue
                if time.monotonic() >= self.deadline:
                    step.status, step.reason = "skip", "not run: --time-limit reached"
                    pending.remove(step)
                    finished += 1
                    continue
                soft = [self.by_name[d].status for d in step.soft_deps if d in self.by_name]
                if any(s in ("pending", "running") for s in states + soft):
                    continue
                resource = self._resource(step)
                if self.slots[resource] <= 0:
                    continue
                self.slots[resource] -= 1
                step.status = "running"
                step.log = self.p.logs / (step.name.replace("/", "__") + ".log")
                pending.remove(step)
                running.add(step.name)
                started_any = True
                progress(f"start {step.name} ({step.device})")
                threading.Thread(target=self._run, args=(step,), daemon=True).start()
            if not running:
                if pending and not started_any:  # nothing can start: should not happen
                    for step in pending:
                        step.status, step.reason = "skip", "not run: its inputs never became ready"
                    pending.clear()
                continue
            try:
                name = self.done.get(timeout=5)
            except queue.Empty:
                if time.monotonic() >= self.deadline + 30:  # a step that ignores its kill
                    break
                continue
            step = self.by_name[name]
            running.discard(name)
            self.slots[self._resource(step)] += 1
            finished += 1
            passed = step.rc == 0
            step.status = "pass" if passed else "fail"  # the checks below may still fail it
            if not step.reason:
                step.reason = f"exit status {step.rc}"
            progress(f"[{finished}/{total}] {'done' if passed else 'FAILED'} {step.name} "
                     f"({step.wall_s:.1f} s, rc {step.rc})")
        for step in self.steps:
            if step.status in ("pending", "running"):
                step.status, step.reason = "fail", step.reason or "did not finish before --time-limit"
        # the checks, in plan order: a reference's own check comes before the comparisons with it
        for step in self.steps:
            if step.status == "pass" and step.check is not None:
                self._check(step)

    def _check(self, step):
        try:
            ok, reason, details = step.check(step, self.by_name)
        except Exception as exc:  # a broken output is a failed step, not a crash of the check
            ok, reason, details = False, f"check failed: {type(exc).__name__}: {exc}", {}
        step.details.update(details)
        step.reason = reason
        if not ok:
            step.status = "fail"


def progress(message):
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def explain_failure(step):
    text = read_log(step)
    for needle, cause in KNOWN_CAUSES:
        if needle in text:
            return cause
    return None


def environment(ct2_device):
    import importlib.metadata as md
    import platform

    import torch

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cuda_device_count": torch.cuda.device_count(),
        "gpu": torch.cuda.get_device_name(0),
        "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        "cuda_bf16_supported": bool(torch.cuda.is_bf16_supported()),
        "ctranslate2_device": ct2_device,
    }
    for dist in ("fairseq-fixed", "fairseq", "ctranslate2", "sentencepiece", "kd_nmt"):
        try:
            env[dist.replace("-", "_")] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    try:
        env["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                           text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def ctranslate2_cuda():
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # no ctranslate2, or one built without CUDA
        return False


def prepare_work(work, out):
    """A fresh work folder: new, empty, or one this script made (then cleared)."""
    from kd_nmt.errors import KDNMTError

    if work.exists():
        if not work.is_dir():
            raise KDNMTError(f"--work {str(work)!r} is a file; give a folder")
        entries = [e for e in work.iterdir()]
        if entries and not (work / MARKER).exists():
            raise KDNMTError(f"--work {str(work)!r} exists and was not made by {PROG}: give a new or "
                             "empty folder")
        for entry in entries:
            if entry.resolve() == out or entry.resolve() in out.parents:
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("made by scripts/gpu_check.py; cleared by its next run\n", encoding="utf-8")


def write_report(path, report):
    from kd_nmt.common.atomic import atomic_write  # (kd_nmt is imported by now: tool_common)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(report, indent=2) + "\n")


def run_check(args, p, out):
    prepare_work(p.work, out)
    p.logs.mkdir(parents=True, exist_ok=True)
    ct2_device = "cuda" if ctranslate2_cuda() else "cpu"
    steps = build_plan(p, args.methods, args.precisions, args.updates, args.teacher_updates, ct2_device)
    cores = os.cpu_count() or 4
    cpu_threads = 4 if cores >= 8 else max(1, cores // 2)
    cpu_jobs = max(1, min(3, (cores - args.gpu_jobs) // cpu_threads))
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    env = environment(ct2_device)
    progress(f"{len(steps)} steps on {env['gpu']} (torch {env['torch']}, CUDA {env['torch_cuda']}); "
             f"work folder {p.work}")
    runner = Runner(steps, p, args.time_limit, args.step_timeout, args.gpu_jobs, cpu_jobs, cpu_threads)
    runner.run()
    failed = [s for s in steps if s.status != "pass"]
    report = {
        "tool": "scripts/gpu_check.py",
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - clock, 1),
        "passed": not failed,
        "summary": f"{len(steps) - len(failed)}/{len(steps)} steps passed",
        "environment": env,
        "settings": {"methods": list(args.methods), "precisions": list(args.precisions),
                     "updates": args.updates, "teacher_updates": args.teacher_updates,
                     "gpu_jobs": args.gpu_jobs, "cpu_jobs": cpu_jobs, "cpu_threads": cpu_threads,
                     "time_limit_s": args.time_limit, "work": str(p.work), "kept": args.keep},
        "tolerances": {"first_update_rtol": FIRST_UPDATE_RTOL, "later_updates_rtol": LATER_UPDATES_RTOL,
                       "min_compared_updates": MIN_COMPARED_UPDATES, "fp16_init_scale": FP16_INIT_SCALE,
                       "relabel_min_agreement": RELABEL_MIN_AGREEMENT, "cache_nll_atol": CACHE_NLL_ATOL,
                       "cache_nll_mean_atol": CACHE_NLL_MEAN_ATOL,
                       "cache_min_top1_agreement": CACHE_MIN_TOP1_AGREEMENT},
        "steps": [],
    }
    for s in steps:
        entry = {"name": s.name, "group": s.group, "device": s.device, "command": s.command,
                 "wall_s": s.wall_s, "rc": s.rc, "status": s.status, "passed": s.status == "pass",
                 "reason": s.reason, **({"note": s.note} if s.note else {}), "details": s.details,
                 "log": str(s.log) if s.log else None}
        if s.status == "fail":
            cause = explain_failure(s)
            if cause:
                entry["known_cause"] = cause
            entry["log_tail"] = read_log(s).splitlines()[-40:]
        report["steps"].append(entry)
    write_report(out, report)
    for s, entry in zip(steps, report["steps"]):
        wall = f"{s.wall_s:.1f} s" if s.wall_s is not None else "-"
        cause = f" [{entry['known_cause']}]" if entry.get("known_cause") else ""
        note = f" ({s.note})" if s.note else ""
        print(f"{PROG}: {s.status.upper():4} {s.name} ({wall}, rc {s.rc}): {s.reason}{note}{cause}", flush=True)
    print(f"{PROG}: {report['summary']} in {report['wall_s']:.0f} s; report: {out}", flush=True)
    if not args.keep:
        for entry in p.work.iterdir():
            if entry.resolve() == out or entry.resolve() in out.parents:
                continue
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        if not any(p.work.iterdir()):
            p.work.rmdir()
    return 1 if failed else 0


# --- command line ------------------------------------------------------------------------------
class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line ``gpu_check: error: ...`` and status 2.

    (kd_nmt.common.args.ArgumentParser does the same, but importing kd_nmt imports fairseq, and
    without CUDA this script imports nothing of the kind.)
    """

    def error(self, message):
        print(f"{PROG}: error: {message} (see `scripts/{PROG}.py --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser():
    parser = ArgumentParser(
        prog=f"scripts/{PROG}.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog="example:" + __doc__.split("\nexample:")[1],
    )
    parser.add_argument("--work", default=str(REPO / "work" / "gpu_check"), metavar="DIR",
                        help="work folder (default: work/gpu_check; cleared first if this script made it)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="JSON report (default: WORK/gpu_check.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (default: removed, report kept)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands, one a line, and run nothing (any machine)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="KD methods to train (default: all)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="CUDA precisions compared with float32 on the CPU (default: fp16 bf16)")
    parser.add_argument("--updates", type=int, default=30, metavar="N",
                        help="student updates, every one compared (default 30)")
    parser.add_argument("--teacher-updates", type=int, default=300, metavar="N", help="(default 300)")
    parser.add_argument("--gpu-jobs", type=int, default=4, metavar="N",
                        help="processes on the GPU at once (default 4)")
    parser.add_argument("--step-timeout", type=float, default=300, metavar="S",
                        help="seconds one step may take (default 300)")
    parser.add_argument("--time-limit", type=float, default=480, metavar="S",
                        help="seconds for everything; steps still running then are stopped (default 480)")
    return parser


def dry_run(args, p):
    steps = build_plan(p, args.methods, args.precisions, args.updates, args.teacher_updates, "cuda")
    print(f"# {PROG}: {len(steps)} steps in {p.work} (the CTranslate2 steps run with --device cpu "
          "--ct2-quantization int8 where ctranslate2 has no CUDA); nothing is run")
    for s in steps:
        if s.argv is None:
            print(f"# {s.name}: {s.command}")
        else:
            print(f"{s.command}  # {s.name}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.updates < MIN_COMPARED_UPDATES or args.teacher_updates < 1 or args.gpu_jobs < 1:
        print(f"{PROG}: error: --updates must be at least {MIN_COMPARED_UPDATES}, --teacher-updates "
              "and --gpu-jobs at least 1", file=sys.stderr)
        return 2
    p = Paths(args.work)
    out = Path(args.out).resolve() if args.out else p.work / "gpu_check.json"
    if args.dry_run:
        return dry_run(args, p)
    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA_LINE, flush=True)
        return 0
    import tool_common  # noqa: F401  (puts the repository on sys.path; imports kd_nmt, fairseq)
    from tool_common import run_tool

    return run_tool(PROG, lambda _argv: run_check(args, p, out), argv=[])


if __name__ == "__main__":
    sys.exit(main())
