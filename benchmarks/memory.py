"""Peak memory of the loss: CE vs word-level KD (live dense teacher, cached top-k) at a 32k vocabulary.

What is measured, per configuration, in a fresh subprocess: the output layer(s) and the loss of
one training step on ``--tokens`` target tokens (synthetic data, no padding):

* ``ce``          student logits = hidden @ W (requires grad), fairseq's label-smoothed CE
                  (``utils.log_softmax`` + ``label_smoothed_nll_loss``, as the criterion runs it),
                  backward.
* ``teacher_fwd`` ``ce`` plus the teacher's logits (no grad): the floor of any live-teacher KD
                  that keeps fairseq's CE.
* ``kd_live``     what ``word_kd`` runs in training with ``--teacher-path``: the teacher's logits,
                  then ``kd_objective`` (gold CE + KD in one chunked pass, the gradient computed
                  in the forward and written over the teacher's logits), backward.
* ``kd_live_autograd`` the same loss computed naively: fairseq's CE plus autograd through the
                  divergence over ``[tokens x V]`` (what every fork does): the reference.
* ``kd_cache``    the same one pass against a sparse top-k teacher ``(ids, log_probs)`` (what
                  ``--teacher-cache`` feeds the criterion), backward.

Peak = the process's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) during the
step, minus its RSS right before it (inputs, weights and libraries excluded). Tensors of this
size are mmap'ed by glibc and returned on free, so RSS follows live tensors closely. The
result is also given in units of one float32 ``[tokens x V]`` tensor, i.e. how many such
tensors are alive at the peak.

    python benchmarks/memory.py                       # 32k vocab, 4096 tokens, fkl
    python benchmarks/memory.py --divergence todi --json benchmarks/work/memory.json
"""
import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = ("ce", "teacher_fwd", "kd_live", "kd_live_autograd", "kd_cache")


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(args):
    """Run one configuration; print a JSON line with its peak memory above the baseline."""
    import torch
    import torch.nn.functional as F
    from fairseq import utils
    from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

    from kd_nmt.criterions.kd_objective import kd_objective
    from kd_nmt.criterions.word_kd import divergence_params
    from kd_nmt.divergences import divergence
    from kd_nmt.teacher.dense import DenseTargets
    from kd_nmt.teacher.topk import TopKTargets

    def autograd_kd(student, teacher, target, pad, name, temperature, topk, **params):
        per_token = divergence(name, student, teacher, temperature=temperature, **params)
        return per_token.masked_fill(target.eq(pad), 0.0).sum()

    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    n, V, pad = args.tokens, args.vocab, 1
    B = max(1, n // 32)
    T = n // B
    hidden = torch.randn(B, T, args.dim)
    W = (torch.randn(V, args.dim) / args.dim ** 0.5).requires_grad_(True)
    t_hidden = torch.randn(B, T, args.teacher_dim)
    t_W = torch.randn(V, args.teacher_dim) / args.teacher_dim ** 0.5
    target = torch.randint(4, V, (B, T))
    params = divergence_params(args.divergence, skew=0.1, mu=0.5, beta=1.0)
    sparse = None
    if args.config == "kd_cache":  # what CachedTeacher.targets returns (built outside the peak)
        with torch.no_grad():
            top, ids = F.log_softmax(t_hidden @ t_W.T, -1).topk(args.topk, -1)
        sparse = TopKTargets(ids=ids, scores=top.half().float())
    import gc

    gc.collect()
    base = _status_kb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()

    def loss_fn():  # locals die on return, like the criterion's (teacher logits included)
        logits = hidden @ W.T                                   # [B, T, V] student logits
        if args.config in ("kd_live", "kd_cache"):  # what word_kd runs in training: one pass
            if args.config == "kd_live":
                with torch.no_grad():
                    teacher = DenseTargets(scores=t_hidden @ t_W.T)  # [B, T, V] teacher logits
            else:
                teacher = sparse
            return kd_objective(
                logits, teacher, target, pad, ce_weight=0.5, epsilon=0.1,
                kd_weight=0.5 * args.temperature ** 2, name=args.divergence,
                temperature=args.temperature, params=params, consume_teacher=True,
                nll_of_teacher=args.config == "kd_live",
            )[0]
        lprobs = utils.log_softmax(logits, dim=-1)               # as model.get_normalized_probs
        ce, _ = label_smoothed_nll_loss(lprobs.view(-1, V), target.view(-1), 0.1, ignore_index=pad)
        if args.config == "ce":
            return ce
        with torch.no_grad():
            teacher = t_hidden @ t_W.T                           # [B, T, V] teacher logits
        if args.config == "teacher_fwd":
            return ce + 0.0 * teacher.sum()
        kd = autograd_kd(logits, teacher, target, pad, args.divergence, args.temperature, 0, **params)
        return 0.5 * ce + 0.5 * args.temperature ** 2 * kd

    loss = loss_fn()
    loss.backward()
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM") - base
    unit = n * V * 4 / 1024  # kB of one float32 [tokens x V]
    print(json.dumps({
        "config": args.config, "peak_mb": round(peak / 1024, 1), "tensors_nxv": round(peak / unit, 2),
        "seconds": round(seconds, 3),
    }))


def measure(vocab=32000, tokens=4096, dim=128, teacher_dim=256, topk=16, divergence="fkl",
            temperature=1.0, configs=CONFIGS):
    """Run every configuration in its own process; returns the result dict."""
    out = {
        "vocab": vocab, "tokens": tokens, "dim": dim, "teacher_dim": teacher_dim, "topk": topk,
        "divergence": divergence, "temperature": temperature,
        "nxv_tensor_mb": round(tokens * vocab * 4 / 2 ** 20, 1), "configs": {},
    }
    for config in configs:
        cmd = [
            sys.executable, os.path.abspath(__file__), "--child", "--config", config,
            "--vocab", str(vocab), "--tokens", str(tokens), "--dim", str(dim),
            "--teacher-dim", str(teacher_dim), "--topk", str(topk), "--divergence", divergence,
            "--temperature", str(temperature),
        ]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"memory benchmark {config} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        out["configs"][config] = {k: v for k, v in result.items() if k != "config"}
    c = out["configs"]
    if "ce" in c:
        for config in CONFIGS[1:]:
            if config in c:
                out[f"{config}_vs_ce_peak_memory"] = round(c[config]["peak_mb"] / c["ce"]["peak_mb"], 3)
    return out


def markdown(result):
    lines = [
        f"Loss peak memory, V = {result['vocab']}, {result['tokens']} tokens, divergence "
        f"{result['divergence']}, tau = {result['temperature']}, cache top-{result['topk']} "
        f"(one float32 [tokens x V] = {result['nxv_tensor_mb']} MB):",
        "",
        "| config | peak MB above baseline | [tokens x V] tensors | vs CE | step seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    ce = result["configs"].get("ce", {}).get("peak_mb")
    for config, r in result["configs"].items():
        ratio = f"{r['peak_mb'] / ce:.2f}" if ce else "-"
        lines.append(f"| {config} | {r['peak_mb']} | {r['tensors_nxv']} | {ratio} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--teacher-dim", type=int, default=256)
    p.add_argument("--topk", type=int, default=16)
    p.add_argument("--divergence", default="fkl")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--json", help="write the result here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", choices=CONFIGS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    result = measure(args.vocab, args.tokens, args.dim, args.teacher_dim, args.topk, args.divergence, args.temperature)
    print(markdown(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
