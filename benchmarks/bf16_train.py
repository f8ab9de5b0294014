"""Training throughput of bf16 autocast vs float32 on this CPU, same model, batches and updates.

    python benchmarks/bf16_train.py --data-bin work/teacher/data/bin          # ~5-15 min
    python benchmarks/bf16_train.py --data-bin work/teacher/data/bin --updates 6 --archs transformer_kd_tiny

For each architecture (default: the teacher's ``transformer_kd_small`` and the student
``transformer_kd_tiny``), two copies of the same initial model are trained in this process on the
same first ``--updates`` batches of the real corpus (fairseq's batching, ``--max-tokens``), one
in float32 and one under ``kd_nmt.precision.cpu_autocast`` (what ``--bf16 --cpu`` does in
fairseq-train): label-smoothed CE (0.1), Adam, dropout 0.1. Each update's time is taken
(forward, backward, optimizer step), the first ``--warmup`` are not counted; the two precisions
alternate update by update, so a busy machine slows both alike. Afterwards both models are
evaluated in float32 on the first ``--valid-sentences`` of the valid split: the valid NLL
(nats per token) after the same updates tells whether bf16 trained the same model.

Writes ``bf16_vs_fp32_train_throughput`` (the teacher architecture's tokens/s ratio) and a
``bf16_train`` record (per architecture: tokens/s, valid NLL, the CPU's bf16 capability) into
benchmarks/results.json. Goal: >= 1.6 at valid NLL within 1 % — reachable only on CPUs with
native bfloat16 matrix instructions (AVX-512 BF16 or AMX); elsewhere oneDNN emulates bfloat16
and autocast is *slower* than float32, which this benchmark then shows.
"""
import argparse
import copy
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "avx_vnni"))
    except OSError:
        pass
    return []


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def build(data_bin, arch, max_tokens):
    import kd_nmt.registry  # noqa: F401
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data_bin), "--arch", arch, "--task", "translation", "--criterion", "label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", "--dropout", "0.1", "--cpu", "--seed", "1", "--max-tokens", str(max_tokens),
    ])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(1)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return task, model, criterion


def batches(task, split, max_tokens, n):
    task.load_dataset(split)
    itr = task.get_batch_iterator(task.dataset(split), max_tokens=max_tokens, seed=1).next_epoch_itr(shuffle=True)
    out = []
    for sample in itr:
        out.append(sample)
        if len(out) == n:
            break
    return out


def valid_nll(model, criterion, samples):
    model.eval()
    nll = tokens = 0.0
    with torch.no_grad():
        for s in samples:
            _, _, log = criterion(model, s)
            nll += float(log["nll_loss"])
            tokens += float(log["ntokens"])
    model.train()
    return nll / tokens


def measure_arch(data_bin, arch, updates, warmup, max_tokens, valid_sentences):
    from kd_nmt.precision import cpu_autocast

    task, model32, criterion = build(data_bin, arch, max_tokens)
    model16 = copy.deepcopy(model32)
    train = batches(task, "train", max_tokens, updates)
    valid = batches(task, "valid", max_tokens, 10 ** 6)
    kept, n = [], 0
    for s in valid:
        if n >= valid_sentences:
            break
        kept.append(s)
        n += s["nsentences"]
    runs = {}
    for name, model in (("fp32", model32), ("bf16", model16)):
        runs[name] = {"model": model, "opt": torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.98)),
                      "seconds": 0.0, "tokens": 0}
    for step, sample in enumerate(train):
        for name in ("fp32", "bf16") if step % 2 == 0 else ("bf16", "fp32"):
            r = runs[name]
            torch.manual_seed(step)  # the same dropout masks in both
            t0 = time.perf_counter()
            r["opt"].zero_grad()
            with cpu_autocast(name == "bf16"):
                loss, _, _ = criterion(r["model"], sample)
            loss.backward()
            r["opt"].step()
            dt = time.perf_counter() - t0
            if step >= warmup:
                r["seconds"] += dt
                r["tokens"] += int(sample["ntokens"])
    result = {"updates": len(train), "timed_updates": len(train) - warmup, "max_tokens": max_tokens,
              "params": sum(p.numel() for p in model32.parameters())}
    for name, r in runs.items():
        result[f"{name}_tokens_per_s"] = round(r["tokens"] / r["seconds"], 1)
        result[f"{name}_valid_nll"] = round(valid_nll(r["model"], criterion, kept), 4)
    result["bf16_vs_fp32_throughput"] = round(result["bf16_tokens_per_s"] / result["fp32_tokens_per_s"], 3)
    result["valid_nll_rel_diff"] = round(abs(result["bf16_valid_nll"] / result["fp32_valid_nll"] - 1), 4)
    return result


def main(argv=None):
    from run_all import merge_results

    from kd_nmt.precision import bf16_supported

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-bin", required=True, help="a binarized de-en corpus (e.g. recipes/teacher.sh's)")
    p.add_argument("--archs", nargs="+", default=["transformer_kd_small", "transformer_kd_tiny"])
    p.add_argument("--updates", type=int, default=14)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--valid-sentences", type=int, default=300)
    p.add_argument("--results", default=str(HERE / "results.json"))
    a = p.parse_args(argv)
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "cpu_flags": cpu_flags(),
        "native_bf16": bf16_supported(),
        "data_bin": os.path.relpath(a.data_bin),
        "command": "python benchmarks/bf16_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "archs": {},
    }
    for arch in a.archs:
        r = measure_arch(a.data_bin, arch, a.updates, a.warmup, a.max_tokens, a.valid_sentences)
        record["archs"][arch] = r
        print(f"{arch}: fp32 {r['fp32_tokens_per_s']} tok/s, bf16 {r['bf16_tokens_per_s']} tok/s "
              f"({r['bf16_vs_fp32_throughput']}x); valid nll fp32 {r['fp32_valid_nll']} bf16 {r['bf16_valid_nll']} "
              f"(rel. diff {r['valid_nll_rel_diff']})", flush=True)
    headline = {}
    if "transformer_kd_small" in record["archs"]:
        headline["bf16_vs_fp32_train_throughput"] = record["archs"]["transformer_kd_small"]["bf16_vs_fp32_throughput"]
    merge_results(a.results, {**headline, "bf16_train": record})
    return 0


if __name__ == "__main__":
    sys.exit(main())
