"""Training cost of word-level KD: CE vs live teacher vs teacher cache, same student and batches.

One run, four configurations, each ``fairseq-train`` in its own subprocess with the same
student, data, seed, ``--max-tokens`` (hence the same batches in the same order) and the same
number of updates:

* ``ce``          ``--criterion label_smoothed_cross_entropy`` (no teacher)
* ``teacher_fwd`` fairseq's label-smoothed CE + the live teacher's forward (and its gold NLL),
                  no KD term: the reference for the KD loss's overhead
* ``kd_live``     ``--criterion word_kd --teacher-path T`` (training runs CE and KD in one pass,
                  ``kd_nmt/criterions/kd_objective.py``, instead of fairseq's CE)
* ``kd_cache``    ``--criterion word_kd --teacher-cache C`` (built once by ``kd-nmt cache-teacher``)

Throughput is target tokens per second of ``Trainer.train_step`` (forward, loss, backward,
optimizer step; the cache reads and the teacher forward happen inside it) over the updates
after the first ``--warmup``. The configurations run ``--repeats`` times, interleaved; every
update's time is the minimum over the repeats (the batches are identical), which filters out
other processes competing for the CPU; CPU-time throughput (``time.process_time``) is reported
beside it. Peak memory is the subprocess's peak RSS (``ru_maxrss``
from ``os.wait4``). Data: synthetic parallel text (Zipf-distributed tokens, the target a fixed
token mapping of the source with local reordering) over a ``--vocab``-symbol dictionary;
student 2+2 layers 128-dim, teacher 3+3 layers 256-dim (trained ``--teacher-updates`` updates,
which does not matter for cost).

    python benchmarks/train_cost.py                       # ~5 min on 2 cores
    python benchmarks/train_cost.py --vocab 8000 --updates 20 --json benchmarks/work/cost.json
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIGS = ("ce", "teacher_fwd", "kd_live", "kd_cache")
# optional: word_kd with the naive KD loss (autograd through the divergence over [tokens x V]),
# the reference for word_kd's one-pass objective (kd_nmt/criterions/kd_objective.py)
EXTRA_CONFIGS = ("kd_live_autograd",)

STUDENT = [
    "--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "128", "--decoder-embed-dim", "128",
    "--encoder-ffn-embed-dim", "512", "--decoder-ffn-embed-dim", "512",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--share-all-embeddings",
]
TEACHER = [
    "--arch", "transformer", "--encoder-layers", "3", "--decoder-layers", "3",
    "--encoder-embed-dim", "256", "--decoder-embed-dim", "256",
    "--encoder-ffn-embed-dim", "1024", "--decoder-ffn-embed-dim", "1024",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--share-all-embeddings",
]


def common(max_tokens, updates):
    return [
        "--optimizer", "adam", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "10", "--max-tokens", str(max_tokens), "--max-update", str(updates),
        "--cpu", "--seed", "1", "--dropout", "0.1", "--num-workers", "0", "--no-progress-bar",
        "--log-format", "simple", "--log-interval", "1000", "--disable-validation", "--no-save",
        "--required-batch-size-multiple", "1",
    ]


def sh(cmd, **kwargs):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"failed: {' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def synth_data(work, vocab, sentences, seed=1):
    """Synthetic parallel corpus over ``vocab`` symbols, binarized (skipped if present)."""
    import numpy as np

    bin_dir = work / "data-bin"
    if (bin_dir / "train.src-tgt.tgt.bin").exists():
        return bin_dir
    text = work / "text"
    text.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ranks = np.arange(vocab)
    p = 1.0 / (ranks + 10.0)
    p /= p.sum()
    mapping = rng.permutation(vocab)
    symbols = [f"w{i}" for i in range(vocab)]
    with open(text / "dict.txt", "w") as f:
        for s in symbols:
            f.write(f"{s} 1\n")
    for split, n in (("train", sentences), ("valid", max(50, sentences // 20))):
        src_lines, tgt_lines = [], []
        for _ in range(n):
            length = int(rng.integers(8, 40))
            src = rng.choice(vocab, size=length, p=p)
            tgt = mapping[src]
            for i in range(0, length - 1, 3):  # local reordering: swap pairs every 3 tokens
                tgt[i], tgt[i + 1] = tgt[i + 1], tgt[i]
            src_lines.append(" ".join(symbols[t] for t in src))
            tgt_lines.append(" ".join(symbols[t] for t in tgt))
        (text / f"{split}.src").write_text("\n".join(src_lines) + "\n")
        (text / f"{split}.tgt").write_text("\n".join(tgt_lines) + "\n")
    tmp = work / "data-bin.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sh([
        BIN / "fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
        "--trainpref", text / "train", "--validpref", text / "valid", "--destdir", tmp,
        "--joined-dictionary", "--srcdict", text / "dict.txt", "--workers", "2",
    ])
    os.replace(tmp, bin_dir)
    return bin_dir


def train_teacher(work, data_bin, updates, max_tokens):
    ckpt = work / "teacher" / "checkpoint_last.pt"
    if ckpt.exists():
        return ckpt
    args = common(max_tokens, updates)
    args = [a for a in args if a not in ("--no-save", "--disable-validation")]
    sh([
        BIN / "fairseq-train", data_bin, *TEACHER, *args, "--criterion", "label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", "--save-dir", work / "teacher", "--no-epoch-checkpoints",
        "--disable-validation", "--user-dir", ROOT / "kd_nmt",
    ])
    return ckpt


def build_cache(work, data_bin, teacher, topk, max_tokens):
    out = work / f"cache-top{topk}"
    timing = work / f"cache-top{topk}.seconds"
    if timing.exists() and (out / "meta.json").exists() and json.loads((out / "meta.json").read_text())["complete"]:
        return out, float(timing.read_text())
    t0 = time.perf_counter()
    sh([
        sys.executable, "-m", "kd_nmt.cli", "cache-teacher", "--teacher", teacher, "--data-bin", data_bin,
        "--split", "train", "--topk", topk, "--out", out, "--max-tokens", max_tokens, "--no-progress-bar",
    ])
    seconds = time.perf_counter() - t0
    timing.write_text(f"{seconds:.1f}\n")
    return out, seconds


def config_args(config, teacher, cache, divergence, topk_note=None):
    if config == "ce":
        return ["--task", "translation", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
    kd = ["--task", "kd_translation", "--label-smoothing", "0.1", "--kd-alpha", "0.5", "--kd-divergence", divergence]
    if config == "teacher_fwd":
        return kd + ["--teacher-path", teacher, "--criterion", "bench_teacher_forward"]
    if config == "kd_live":
        return kd + ["--teacher-path", teacher, "--criterion", "word_kd"]
    if config == "kd_cache":
        return kd + ["--teacher-cache", cache, "--criterion", "word_kd"]
    if config == "kd_live_autograd":
        return kd + ["--teacher-path", teacher, "--criterion", "bench_word_kd_autograd"]
    raise ValueError(config)


def child(argv, out_json, warmup):
    """Run fairseq-train in this process, timing every Trainer.train_step."""
    import kd_nmt.registry  # noqa: F401
    from fairseq.criterions import register_criterion
    from fairseq.trainer import Trainer

    from kd_nmt.criterions.word_kd import WordKDConfig, WordKDCriterion

    @register_criterion("bench_teacher_forward", dataclass=WordKDConfig)
    class TeacherForwardOnly(WordKDCriterion):
        """fairseq's CE plus the teacher's forward (and gold NLL), no KD loss: the floor of any
        live-teacher KD that keeps fairseq's CE, the reference for the KD loss's own cost."""

        def training_objective(self, model, net_output, sample):
            ce, nll = self.compute_loss(model, net_output, sample, reduce=True)
            _, teacher_nll = self.task.teacher.targets(sample, like=net_output[0])
            zero = ce.new_zeros(())
            return ce, ce, nll, zero, teacher_nll.sum()

    from kd_nmt.divergences import divergence

    @register_criterion("bench_word_kd_autograd", dataclass=WordKDConfig)
    class AutogradWordKD(WordKDCriterion):
        """word_kd the way forks compute it: fairseq's CE plus autograd through the divergence
        over [tokens x V] (no one-pass objective)."""

        def uses_one_pass(self, model, logits):
            return False

        def kd_and_teacher_nll(self, student_logits, sample, kd_mask=None):
            # (word_kd's signature: an override without kd_mask raised TypeError in training)
            targets, teacher_nll = self.task.teacher.targets(sample, like=student_logits)
            pad = sample["target"].eq(self.padding_idx)
            if kd_mask is not None:
                pad = pad | ~kd_mask
            per_token = divergence(self.kd_divergence, student_logits, targets.scores,
                                   temperature=self.kd_temperature, **self.kd_params)
            gold_pad = sample["target"].eq(self.padding_idx)
            return per_token.masked_fill(pad, 0.0).sum(), teacher_nll.masked_fill(gold_pad, 0.0).sum()

    steps = []
    original = Trainer.train_step

    def timed(self, samples, raise_oom=False):
        t0, c0 = time.perf_counter(), time.process_time()
        out = original(self, samples, raise_oom)
        ntokens = sum(int(s.get("ntokens", 0)) for s in samples if s)
        steps.append((time.perf_counter() - t0, time.process_time() - c0, ntokens))
        return out

    Trainer.train_step = timed
    from fairseq_cli import train

    sys.argv = ["fairseq-train", *argv]
    t0 = time.perf_counter()
    train.cli_main()
    wall = time.perf_counter() - t0
    with open(out_json, "w") as f:
        json.dump({
            "warmup": warmup, "wall_s": wall, "step_seconds": [round(s, 4) for s, _, _ in steps],
            "step_cpu_seconds": [round(c, 4) for _, c, _ in steps], "step_tokens": [n for _, _, n in steps],
        }, f)


def run_config(config, work, data_bin, teacher, cache, args):
    out_json = work / f"run-{config}.json"
    argv = [
        str(data_bin), *STUDENT, *common(args.max_tokens, args.updates),
        *map(str, config_args(config, teacher, cache, args.divergence)), "--user-dir", str(ROOT / "kd_nmt"),
    ]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out_json),
           "--warmup", str(args.warmup), "--", *argv]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    log = open(work / f"run-{config}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed, see {work / f'run-{config}.log'}:\n"
                           + (work / f"run-{config}.log").read_text()[-3000:])
    result = json.loads(out_json.read_text())
    result["peak_rss_mb"] = rusage.ru_maxrss / 1024  # Linux: kB
    return result


def summarise(repeats):
    """Per-update minimum over the repeats (the least-disturbed timing of each identical update)."""
    warmup = repeats[0]["warmup"]
    tokens_per_step = repeats[0]["step_tokens"]
    assert all(r["step_tokens"] == tokens_per_step for r in repeats), "runs saw different batches"
    wall = [min(r["step_seconds"][i] for r in repeats) for i in range(len(tokens_per_step))][warmup:]
    cpu = [min(r["step_cpu_seconds"][i] for r in repeats) for i in range(len(tokens_per_step))][warmup:]
    tokens = sum(tokens_per_step[warmup:])
    return {
        "updates": len(tokens_per_step), "measured_updates": len(wall), "tokens": tokens,
        "seconds": round(sum(wall), 3), "wps": tokens / sum(wall), "cpu_seconds": round(sum(cpu), 3),
        "tokens_per_cpu_second": tokens / sum(cpu), "repeats": len(repeats),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in repeats), 1),
        "wps_each_repeat": [round(sum(tokens_per_step[warmup:]) / sum(r["step_seconds"][warmup:]), 1) for r in repeats],
    }


def measure(args):
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_bin = synth_data(work, args.vocab, args.sentences)
    teacher = train_teacher(work, data_bin, args.teacher_updates, args.max_tokens)
    cache, cache_seconds = build_cache(work, data_bin, teacher, args.topk, args.max_tokens)
    repeats = {config: [] for config in args.configs}
    load = [os.getloadavg()[0]]
    for rep in range(args.repeats):  # interleaved, so a busy spell on the machine hits every config
        for config in args.configs:
            r = run_config(config, work, data_bin, teacher, cache, args)
            repeats[config].append(r)
            load.append(os.getloadavg()[0])
            print(f"[{rep + 1}/{args.repeats}] {config:12s} {r['wall_s']:6.1f} s wall, peak RSS "
                  f"{r['peak_rss_mb']:6.0f} MB, load {load[-1]:.1f}", flush=True)
    runs = {config: summarise(rs) for config, rs in repeats.items()}
    for config, r in runs.items():
        print(f"{config:12s} {r['wps']:9.0f} tok/s ({r['tokens_per_cpu_second']:.0f} tok/cpu-s)  peak RSS "
              f"{r['peak_rss_mb']:7.0f} MB  ({r['measured_updates']} updates, {r['tokens']} tokens)", flush=True)
    meta = json.loads((cache / "meta.json").read_text())
    result = {
        "setup": {
            "data": f"synthetic, {args.sentences} train sentences, {meta['n_tokens']} target tokens",
            "vocab": meta["vocab_size"], "student": "transformer 2+2 layers, 128-dim, ffn 512",
            "teacher": "transformer 3+3 layers, 256-dim, ffn 1024", "max_tokens": args.max_tokens,
            "updates": args.updates, "warmup_updates_excluded": args.warmup, "topk": meta["k"],
            "divergence": args.divergence, "threads": os.cpu_count(),
            "cache_build_seconds": round(cache_seconds, 1), "repeats": args.repeats,
            "load_average_1min": [round(x, 2) for x in load],
            "timing": "per update, the minimum over the interleaved repeats of Trainer.train_step wall time",
        },
        "runs": runs,
    }
    ce = runs.get("ce")
    if ce:
        for config, key in (("kd_cache", "cached_kd_vs_ce_throughput"), ("kd_live", "live_kd_vs_ce_throughput"),
                            ("teacher_fwd", "teacher_fwd_vs_ce_throughput"),
                            ("kd_live_autograd", "autograd_kd_vs_ce_throughput")):
            if config in runs:
                result[key] = round(runs[config]["wps"] / ce["wps"], 3)
                result[key + "_cpu_time"] = round(
                    runs[config]["tokens_per_cpu_second"] / ce["tokens_per_cpu_second"], 3)
        for config, key in (("kd_live", "kd_vs_ce_peak_memory"), ("kd_cache", "cached_kd_vs_ce_peak_memory"),
                            ("kd_live_autograd", "autograd_kd_vs_ce_peak_memory")):
            if config in runs:
                result[key] = round(runs[config]["peak_rss_mb"] / ce["peak_rss_mb"], 3)
    if "kd_live_autograd" in runs and "teacher_fwd" in runs:
        result["autograd_kd_loss_overhead"] = round(runs["teacher_fwd"]["wps"] / runs["kd_live_autograd"]["wps"] - 1, 3)
    if "kd_live" in runs and "teacher_fwd" in runs:
        # time per token of the KD loss on top of CE + teacher forward
        result["kd_loss_overhead"] = round(runs["teacher_fwd"]["wps"] / runs["kd_live"]["wps"] - 1, 3)
        result["kd_loss_overhead_cpu_time"] = round(
            runs["teacher_fwd"]["tokens_per_cpu_second"] / runs["kd_live"]["tokens_per_cpu_second"] - 1, 3)
    return result


def markdown(result):
    s = result["setup"]
    runs = result["runs"]
    lines = [
        f"Training cost, {s['data']}, V = {s['vocab']}; student {s['student']}; teacher {s['teacher']}; "
        f"--max-tokens {s['max_tokens']}, {s['updates']} updates (first {s['warmup_updates_excluded']} "
        f"excluded), divergence {s['divergence']}, cache top-{s['topk']} (built in "
        f"{s['cache_build_seconds']} s), {s['threads']} CPU threads.",
        "",
        "| config | target tokens/s | vs CE | peak RSS MB | vs CE |",
        "|---|---:|---:|---:|---:|",
    ]
    ce = runs.get("ce")
    for config, r in runs.items():
        t = f"{r['wps'] / ce['wps']:.2f}" if ce else "-"
        m = f"{r['peak_rss_mb'] / ce['peak_rss_mb']:.2f}" if ce else "-"
        lines.append(f"| {config} | {r['wps']:.0f} | {t} | {r['peak_rss_mb']:.0f} | {m} |")
    goals = []
    if "cached_kd_vs_ce_throughput" in result:
        v = result["cached_kd_vs_ce_throughput"]
        goals.append(f"| cached KD / CE throughput | {v:.2f} | >= 0.90 | {'met' if v >= 0.9 else 'NOT met'} |")
    if "kd_loss_overhead" in result:
        v = result["kd_loss_overhead"]
        goals.append(f"| KD-loss overhead on CE + teacher forward | {100 * v:.1f} % | <= 10 % | "
                     f"{'met' if v <= 0.10 else 'NOT met'} |")
    if "kd_vs_ce_peak_memory" in result:
        v = result["kd_vs_ce_peak_memory"]
        goals.append(f"| live KD / CE peak RSS | {v:.2f} | <= 1.30 | {'met' if v <= 1.3 else 'NOT met'} |")
    if "cached_kd_vs_ce_peak_memory" in result:
        v = result["cached_kd_vs_ce_peak_memory"]
        goals.append(f"| cached KD / CE peak RSS | {v:.2f} | <= 1.30 | {'met' if v <= 1.3 else 'NOT met'} |")
    if goals:
        lines += ["", "| goal | measured | target | |", "|---|---:|---:|---|", *goals]
    return "\n".join(lines) + "\n"


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=str(ROOT / "benchmarks" / "work" / "train_cost"))
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--sentences", type=int, default=3000)
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="first updates not timed")
    p.add_argument("--teacher-updates", type=int, default=20)
    p.add_argument("--topk", type=int, default=16)
    p.add_argument("--divergence", default="fkl")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS + EXTRA_CONFIGS)
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs of every config (default 2)")
    p.add_argument("--json", help="write the result here")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "--child":
        out_json, rest = argv[1], argv[2:]
        warmup = 0
        if rest[:1] == ["--warmup"]:
            warmup, rest = int(rest[1]), rest[2:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        child(rest, out_json, warmup)
        return 0
    args = parser().parse_args(argv)
    result = measure(args)
    print(markdown(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
