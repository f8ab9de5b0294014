"""Every kind of teacher through word_kd and hybrid_kd: loss, logged values and gradients recorded.

A regression guard for the teacher protocol (kd_nmt/teacher/): each configuration (live teacher,
ensemble, --kd-topk, topk / topk-tail / sample caches; TAID, selective KD, on-policy KD,
--ignore-prefix-size, the two-pass path, validation; hybrid_kd's batch and per-sentence gates)
runs one forward and backward on one fixed train batch, and what it gives is compared with
``teacher_golden.json``, written by the code as it was before the protocol (commit 70e672b).

Deterministic inputs: the teachers are seeded random weights in the fixture teacher's
checkpoint structure (not its trained weights, which depend on the thread count of its
training), the student fairseq's seeded initialisation, the caches built from those teachers.

Compared at 1e-6 (relative, and absolute relative to each gradient's scale); the gradients as
per-parameter sums, sums of squares and projections on a seeded random vector, plus a sha256 of
all of them. ``KD_NMT_GOLDEN=exact`` compares every number and the sha256 exactly (same machine
and thread count as the file's writer: bit-identity); ``KD_NMT_GOLDEN=write`` rewrites the file.
"""
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from helpers import first_batch, setup_in_process
from kd_nmt.cache import cli as cache_cli
from test_hybrid import kd_bin  # noqa: F401  (the --sentence-kd-data fixture)

GOLDEN = Path(__file__).with_name("teacher_golden.json")
MODE = os.environ.get("KD_NMT_GOLDEN", "compare")
TOLERANCE = 1e-6

COMMON = ["--label-smoothing", "0.1", "--kd-alpha", "0.6", "--max-update", "100"]
TAID = ["--kd-taid", "--kd-taid-steps", "10"]
SELECT = ["--kd-select", "batch", "--kd-select-rate", "0.5"]
TAU2 = ["--kd-temperature", "2"]

# name: (criterion, teacher, extra options, how it runs: train / two_pass / valid)
CONFIGS = {}


def config(name, criterion, teacher, extra=(), run="train"):
    CONFIGS[name] = (criterion, teacher, list(extra), run)


for teacher in ("live", "ensemble", "live_top5", "cache_topk", "cache_tail", "cache_sample"):
    divergence = [] if teacher == "cache_sample" else ["--kd-divergence", "js"]
    scored = teacher in ("live", "ensemble", "live_top5", "cache_topk")  # TAID needs scores
    for criterion in ("word_kd", "hybrid_kd"):
        config(f"{criterion}-{teacher}-fkl-tau2", criterion, teacher, TAU2)
        config(f"{criterion}-{teacher}-select", criterion, teacher, TAU2 + SELECT)
        if scored:
            config(f"{criterion}-{teacher}-taid", criterion, teacher, TAU2 + TAID)
        if criterion == "hybrid_kd":
            config(f"hybrid_kd-{teacher}-input-gate", criterion, teacher, TAU2 + ["--gate", "input"])
            config(f"hybrid_kd-{teacher}-input-gate-select", criterion, teacher,
                   TAU2 + ["--gate", "input"] + SELECT)
            if scored:
                config(f"hybrid_kd-{teacher}-input-gate-taid", criterion, teacher,
                       TAU2 + ["--gate", "input"] + TAID)
    if teacher != "cache_sample":
        config(f"word_kd-{teacher}-js-tau2", "word_kd", teacher, TAU2 + divergence)
    config(f"word_kd-{teacher}-two-pass", "word_kd", teacher, TAU2, run="two_pass")
    config(f"word_kd-{teacher}-prefix", "word_kd", teacher, TAU2 + ["--ignore-prefix-size", "1"])
    config(f"word_kd-{teacher}-valid", "word_kd", teacher, TAU2, run="valid")
    if scored:
        config(f"word_kd-{teacher}-taid-select", "word_kd", teacher, TAU2 + TAID + SELECT)
        config(f"word_kd-{teacher}-taid-two-pass", "word_kd", teacher, TAU2 + TAID, run="two_pass")
for teacher in ("live", "ensemble", "live_top5"):
    config(f"word_kd-{teacher}-fkl-tau1", "word_kd", teacher)  # tau 1: the pass reuses q
    config(f"word_kd-{teacher}-on-policy", "word_kd", teacher, TAU2 + ["--kd-on-policy", "0.5"])
    config(f"word_kd-{teacher}-on-policy-taid", "word_kd", teacher, TAU2 + ["--kd-on-policy", "0.5"] + TAID)


def random_teacher(template, seed, out):
    """The fixture teacher's checkpoint with every float weight replaced by seeded noise (layer
    norms the identity, so that the logits are not flat; its ``version`` and ``_float_tensor``
    buffers kept: they are no weights)."""
    from kd_nmt.checkpoint import load_checkpoint

    state = load_checkpoint(str(template))
    generator = torch.Generator().manual_seed(seed)
    for key, value in state["model"].items():
        if not value.is_floating_point() or key.endswith(("version", "_float_tensor")):
            continue
        if "layer_norm" in key:
            state["model"][key] = torch.ones_like(value) if key.endswith("weight") else torch.zeros_like(value)
        else:
            state["model"][key] = 0.2 * torch.randn(value.shape, generator=generator, dtype=value.dtype)
    torch.save(state, out)
    return out


@pytest.fixture(scope="module")
def teachers(data_bin, teacher_checkpoint, tmp_path_factory):
    """``{kind: teacher options}``: two random teachers, and caches built from the first."""
    work = tmp_path_factory.mktemp("golden")
    a = random_teacher(teacher_checkpoint, 11, work / "a.pt")
    b = random_teacher(teacher_checkpoint, 12, work / "b.pt")

    def cache(name, *extra):
        out = work / name
        argv = ["--teacher", str(a), "--data-bin", str(data_bin), "--out", str(out), "--no-progress-bar",
                *map(str, extra)]
        assert cache_cli.main(argv) == 0
        return ["--teacher-cache", out]

    return {
        "live": ["--teacher-path", a],
        "ensemble": ["--teacher-path", f"{a}:{b}"],
        "live_top5": ["--teacher-path", a, "--kd-topk", "5"],
        "cache_topk": cache("topk", "--topk", "8"),
        "cache_tail": cache("tail", "--topk", "8", "--mode", "topk-tail", "--temperature", "2"),
        "cache_sample": cache("sample", "--topk", "8", "--mode", "sample", "--temperature", "2"),
    }


def train_batch(task):
    """A shuffled train batch (the caches' split), as fairseq-train draws them."""
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=600, seed=3).next_epoch_itr(shuffle=True)
    return next(iter(itr))


def number(x):
    return float(x.item()) if torch.is_tensor(x) else x


def gradient_record(named):
    """Per-parameter (sum, sum of squares, seeded projection, size) in float64, and one sha256 of all."""
    digest = hashlib.sha256()
    stats = {}
    for name, p in named:
        if p.grad is None:
            stats[name] = None
            continue
        g = p.grad.detach()
        digest.update(name.encode() + g.contiguous().numpy().tobytes())
        direction = torch.randn(g.shape, generator=torch.Generator().manual_seed(len(stats)), dtype=torch.float64)
        g = g.double()
        stats[name] = [float(g.sum()), float((g * g).sum()), float((g * direction).sum()), g.numel()]
    return stats, digest.hexdigest()


def run_config(data_bin, kd_bin, teachers, name):  # noqa: F811  (kd_bin: the fixture's value)
    criterion_name, teacher, extra, how = CONFIGS[name]
    args = ["--task", "kd_translation", *teachers[teacher], "--criterion", criterion_name, *COMMON, *extra]
    if criterion_name == "hybrid_kd":
        args += ["--sentence-kd-data", kd_bin]
    _, task, model, criterion = setup_in_process(data_bin, args)
    if how == "valid":
        sample = first_batch(task, "valid")
        model.eval()
        with torch.no_grad():
            loss, sample_size, log = criterion(model, sample)
        return {"loss": number(loss), "sample_size": number(sample_size),
                "log": {k: number(v) for k, v in sorted(log.items())}}
    sample = train_batch(task)
    model.train()
    if how == "two_pass":
        criterion.uses_one_pass = lambda *args: False
    torch.manual_seed(5)  # on-policy KD draws its rows
    loss, sample_size, log = criterion(model, sample)
    loss.backward()
    grads, digest = gradient_record([*model.named_parameters(), *criterion.named_parameters()])
    return {"loss": number(loss), "sample_size": number(sample_size),
            "log": {k: number(v) for k, v in sorted(log.items())}, "grads": grads, "grads_sha256": digest}


def close(got, want, scale=None):
    if MODE == "exact":
        return got == want
    if isinstance(want, int) or isinstance(got, int):
        return got == want
    return got == pytest.approx(want, rel=TOLERANCE, abs=TOLERANCE * (scale or 0.0))


def test_every_teacher_gives_the_recorded_loss_logs_and_gradients(data_bin, kd_bin, teachers):  # noqa: F811
    results = {name: run_config(data_bin, kd_bin, teachers, name) for name in CONFIGS}
    if MODE == "write":
        lines = (f"{json.dumps(name)}: {json.dumps(results[name], sort_keys=True)}" for name in sorted(results))
        GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")  # a line per config
        pytest.skip(f"wrote {GOLDEN.name}")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(results) == sorted(golden)
    problems = []
    for name, want in golden.items():
        got = results[name]
        for key in ("loss", "sample_size"):
            if not close(got[key], want[key]):
                problems.append(f"{name}: {key} {got[key]!r} != {want[key]!r}")
        if sorted(got["log"]) != sorted(want["log"]):
            problems.append(f"{name}: logged keys {sorted(got['log'])} != {sorted(want['log'])}")
        for key, value in want["log"].items():
            if key in got["log"] and not close(got["log"][key], value):
                problems.append(f"{name}: log {key} {got['log'][key]!r} != {value!r}")
        if "grads" not in want:
            continue
        if MODE == "exact" and got["grads_sha256"] != want["grads_sha256"]:
            problems.append(f"{name}: gradients differ in their bytes")
        for param, stats in want["grads"].items():
            mine = got["grads"].get(param)
            if (stats is None) != (mine is None):
                problems.append(f"{name}: gradient of {param}: {mine} != {stats}")
                continue
            if stats is None:
                continue
            # |sum| and |projection| are at most the 2-norm times sqrt(size): their rounding scale
            scale = (stats[1] * stats[3]) ** 0.5
            for what, a, b in zip(("sum", "sum of squares", "projection", "size"), mine, stats):
                if not close(a, b, scale if what != "sum of squares" else stats[1]):
                    problems.append(f"{name}: gradient {what} of {param} {a!r} != {b!r}")
    assert not problems, "\n".join(problems[:40])
