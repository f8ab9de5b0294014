"""Error of a sparse teacher cache: word-KD loss and gradient, cache vs live full teacher.

For each teacher, each cache mode and each k, a cache is built (``kd-nmt cache-teacher --mode M
--topk k``; topk-tail and sample caches once per temperature, which they fix) and, over every
batch of the train split, the KD term (fkl) of ``word_kd`` is computed twice on the same
student logits: against the live teacher's full distribution, and against the cache
(log-probs stored in float16). The modes (``kd_nmt/teacher/cache_modes.py``): ``topk`` renormalises
both sides over the k ids, ``topk-tail`` adds one rest class, ``sample`` is one set of k draws
per token from the tempered teacher (an unbiased estimate: its error is noise, not bias).
Reported:

* ``rel_error``: |KD_k - KD_full| / KD_full of the summed KD loss (tau = 1 and tau = 2);
* ``grad_cosine``: cosine between the gradients of the two KD terms w.r.t. the student logits
  (what training actually follows);
* ``teacher_mass``: mean teacher probability mass inside the top k (1 - what is thrown away).

Default (no --teacher): the de-en fixture (data/fixtures/deen, 400 sentences, sentencepiece
600, as in tests/conftest.py), two tiny teachers (1+1 layers, 64-dim) trained 150 and 1000
updates (``--fixture-teachers``), and a student trained 100 updates with CE. Give ``--data-bin``/``--teacher``/
``--student`` to measure real models instead.

    python benchmarks/topk_error.py --json benchmarks/work/topk_error.json
    python benchmarks/topk_error.py --fixture-teachers 150 --ks 8 16 64   # the quick fixture table
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers import TINY_ARCH as TINY  # noqa: E402  (the tests' transformer that trains in seconds)
COMMON = [
    "--optimizer", "adam", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
    "--max-tokens", "2000", "--cpu", "--seed", "1", "--log-format", "simple", "--no-progress-bar",
    "--num-workers", "0", "--no-epoch-checkpoints", "--disable-validation",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
]


def sh(cmd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
    return proc


def fixture_data_bin(work):
    import sentencepiece as spm

    out = work / "data-bin"
    if (out / "dict.en.txt").exists():
        return out
    fixture = ROOT / "data" / "fixtures" / "deen"
    tok = work / "tok"
    tok.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=[str(fixture / "train.de"), str(fixture / "train.en")], model_prefix=str(tok / "spm"),
        vocab_size=600, model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
        num_threads=1, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(tok / "spm.model"))
    for split in ("train", "valid"):
        for lang in ("de", "en"):
            lines = (fixture / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            (tok / f"{split}.{lang}").write_text(
                "\n".join(" ".join(sp.encode(x, out_type=str)) for x in lines) + "\n", encoding="utf-8"
            )
    tmp = work / "data-bin.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sh([BIN / "fairseq-preprocess", "--source-lang", "de", "--target-lang", "en", "--trainpref", tok / "train",
        "--validpref", tok / "valid", "--destdir", tmp, "--joined-dictionary", "--workers", "1"])
    os.replace(tmp, out)
    return out


def train(work, data_bin, name, updates, seed=1):
    ckpt = work / name / "checkpoint_last.pt"
    if not ckpt.exists():
        args = list(COMMON)
        args[args.index("--seed") + 1] = str(seed)
        sh([BIN / "fairseq-train", data_bin, *TINY, *args, "--max-update", updates,
            "--save-dir", work / name, "--user-dir", ROOT / "kd_nmt"])
    return ckpt


MODES = ("topk", "topk-tail", "sample")


def cache_keys(modes, ks, taus, vocab):
    """(mode, k, tau) of every cache to build; tau None: a topk cache (it serves every tau).

    sample needs k draws per token: k >= V is left out (the exact k = V rows are topk's).
    """
    keys = []
    for mode in modes:
        for k in ks:
            if mode == "topk":
                keys.append((mode, k, None))
            elif mode == "topk-tail" or k < vocab:
                keys += [(mode, k, tau) for tau in taus]
    return keys


def measure(data_bin, teacher, student, ks, work, taus=(1.0, 2.0), modes=MODES):
    import torch

    from helpers import setup_in_process
    from kd_nmt.cache import cli as cache_cli
    from kd_nmt.cache.cached_teacher import CachedTeacher
    from kd_nmt.checkpoint import load_models
    from kd_nmt.criterions.word_kd import kd_term
    from kd_nmt.teacher.dense import DenseTargets

    _, task, _, _ = setup_in_process(data_bin, ["--task", "kd_translation", "--teacher-path", teacher,
                                                "--criterion", "word_kd"])
    live = task.teacher
    (student_model,), _ = load_models([str(student)], task=task)
    V = len(task.target_dictionary)
    pad = task.target_dictionary.pad()
    caches = {}
    keys = cache_keys(modes, ks, taus, V)
    for mode, k, tau in keys:
        name = f"{Path(teacher).parent.name}-{Path(teacher).stem}-top{k}"
        if mode != "topk":  # (topk keeps the name caches had before modes)
            name += f"-{mode}-t{tau:g}"
        out = work / "caches" / name
        if not (out / "meta.json").exists() or not json.loads((out / "meta.json").read_text())["complete"]:
            shutil.rmtree(out, ignore_errors=True)
            cache_cli.main(["--teacher", str(teacher), "--data-bin", str(data_bin), "--topk", str(k),
                            "--out", str(out), "--no-progress-bar", "--mode", mode,
                            "--temperature", str(tau or 1.0)])
        caches[mode, k, tau] = CachedTeacher.open(out, task)
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=2000, seed=1).next_epoch_itr(shuffle=False)
    # (mode, k, tau) of a result: topk caches serve every tau
    results = [(mode, k, tau or run_tau) for mode, k, tau in keys for run_tau in ([tau] if tau else taus)]
    sums = {key: {"kd": 0.0, "dot": 0.0, "norm": 0.0} for key in results}
    full = {tau: {"kd": 0.0, "norm": 0.0} for tau in taus}
    mass = {k: 0.0 for k in ks}
    entropy, ntok = 0.0, 0
    for sample in itr:
        with torch.no_grad():
            logits = student_model(**sample["net_input"])[0]
            t_logits = live.logits(sample["net_input"])[0]
        mask = sample["target"].ne(pad)
        lp = torch.log_softmax(t_logits, -1)
        entropy += float(-(lp.exp() * lp).sum(-1)[mask].sum())
        ntok += int(mask.sum())
        dists = {key: cache.targets(sample, like=logits)[0] for key, cache in caches.items()}
        for mode, k, tau in keys:
            if mode == "topk":
                mass[k] += float(dists[mode, k, tau].scores.float().exp().sum(-1)[mask].sum())
        for tau in taus:
            s = logits.detach().requires_grad_(True)
            kd_full = kd_term(s, DenseTargets(scores=t_logits), sample["target"], pad, "fkl", tau)
            (g_full,) = torch.autograd.grad(kd_full, s)
            full[tau]["kd"] += float(kd_full)
            full[tau]["norm"] += float((g_full * g_full).sum())
            for mode, k, cache_tau in keys:
                if cache_tau not in (None, tau):
                    continue
                s = logits.detach().requires_grad_(True)
                kd_k = kd_term(s, dists[mode, k, cache_tau], sample["target"], pad, "fkl", tau)
                (g_k,) = torch.autograd.grad(kd_k, s)
                acc = sums[mode, k, tau]
                acc["kd"] += float(kd_k)
                acc["dot"] += float((g_k * g_full).sum())
                acc["norm"] += float((g_k * g_k).sum())
    rows = []
    for mode, k in dict.fromkeys((mode, k) for mode, k, _ in keys):
        row = {"mode": mode, "k": min(k, V), "teacher_mass": round(mass[k] / ntok, 4)}
        for tau in taus:
            acc, ref = sums[mode, k, tau], full[tau]
            row[f"rel_error_tau{tau:g}"] = round(abs(acc["kd"] - ref["kd"]) / ref["kd"], 5)
            row[f"signed_error_tau{tau:g}"] = round((acc["kd"] - ref["kd"]) / ref["kd"], 5)
            row[f"grad_cosine_tau{tau:g}"] = round(acc["dot"] / math.sqrt(acc["norm"] * ref["norm"]), 5)
        rows.append(row)
    return {
        "teacher": str(teacher), "student": str(student), "vocab": V, "tokens": ntok,
        "teacher_entropy_bits": round(entropy / ntok / math.log(2), 3),
        "kd_full_per_token_tau1": round(full[1.0]["kd"] / ntok, 4) if 1.0 in full else None,
        "rows": rows,
    }


def markdown(results):
    lines = []
    for r in results:
        lines += [
            f"teacher `{Path(r['teacher']).parent.name}` (mean entropy {r['teacher_entropy_bits']} bits), "
            f"V = {r['vocab']}, {r['tokens']} train tokens, "
            f"full KD (fkl, tau 1) {r['kd_full_per_token_tau1']} nats/token:",
            "",
            "| mode | k | teacher mass in top k | KD rel. error tau=1 | tau=2 | grad cosine tau=1 | tau=2 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in r["rows"]:
            lines.append(
                f"| {row['mode']} | {row['k']} | "
                f"{'–' if row['mode'] == 'sample' else format(row['teacher_mass'], '.3f')} | "
                f"{100 * row['signed_error_tau1']:+.2f} % | "
                f"{100 * row['signed_error_tau2']:+.2f} % | {row['grad_cosine_tau1']:.4f} | "
                f"{row['grad_cosine_tau2']:.4f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=str(ROOT / "benchmarks" / "work" / "topk_error"))
    p.add_argument("--data-bin")
    p.add_argument("--teacher", nargs="+", help="teacher checkpoint(s), each measured separately")
    p.add_argument("--student")
    p.add_argument("--ks", type=int, nargs="+", default=[8, 16, 64, 100000])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="cache modes to measure")
    p.add_argument("--fixture-teachers", type=int, nargs="+", default=[150, 1000],
                   help="without --teacher: the fixture teachers' training updates (default 150 1000)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.teacher:
        if not (args.data_bin and args.student):
            p.error("--teacher needs --data-bin and --student")
        data_bin, teachers, student = Path(args.data_bin), [Path(t) for t in args.teacher], Path(args.student)
    else:
        data_bin = fixture_data_bin(work)
        teachers = [train(work, data_bin, f"teacher-{n}", n) for n in args.fixture_teachers]
        student = train(work, data_bin, "student-ce-100", 100, seed=2)
    results = [measure(data_bin, t, student, args.ks, work, modes=args.modes) for t in teachers]
    print(markdown(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
