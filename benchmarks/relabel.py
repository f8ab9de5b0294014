"""Relabeling speed: stock fairseq-generate vs ``kd-nmt relabel`` (fairseq and CTranslate2 backends).

One teacher, one beam size, the first ``--n`` lines of ``--input`` (token space, e.g. the
sentencepiece pieces given to fairseq-preprocess), all three systems in one run, each as its
own process (what a user runs), on the same threads:

* ``generate``      stock ``fairseq-generate`` on those lines binarized with the data-bin's
                    dictionaries (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, needed on torch >= 2.6;
                    ``--required-batch-size-multiple 1``, else fairseq 0.12 drops the last
                    batch's sentences);
* ``relabel_fairseq`` ``kd-nmt relabel --backend fairseq``;
* ``relabel_ct2``   ``kd-nmt relabel --backend ctranslate2`` (conversion done by an untimed
                    warm-up run on 8 lines; its time is reported separately).

Reported per system: wall-clock seconds of the whole process (start-up, model loading,
decoding, writing), sentences/s on that wall clock (the headline numbers and ratios), the
tool's own decode-only rate, and BLEU/chrF against the reference and between systems
(sacreBLEU on text detokenized with ``--remove-bpe``). The load average is recorded: on a
shared machine timings are only comparable within one run.

Writes (merging, other keys kept) ``benchmarks/results.json``: ``relabel_fairseq_vs_generate``
and ``relabel_ct2_vs_generate`` (ratios of wall-clock sentences/s) and ``relabel`` (details);
and a Markdown table ``benchmarks/relabel.md``.

    python benchmarks/relabel.py --data-bin work/deen-8k/bin --teacher work/teacher/checkpoint_best.pt \\
        --input work/deen-8k/tok/test_tech.de --input work/deen-8k/tok/test_ding.de \\
        --reference work/deen-8k/tok/test_tech.en --reference work/deen-8k/tok/test_ding.en --n 2000
"""
import argparse
import datetime
import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def detok(line, remove_bpe):
    sys.path.insert(0, str(HERE.parent))
    from kd_nmt.relabel.corpus import detokenize

    return detokenize(line, remove_bpe)


def read_lines(paths, n):
    out = []
    for p in paths:
        out += Path(p).read_text(encoding="utf-8").split("\n")[:-1]
    return out[:n] if n else out


def timed(cmd, env, log):
    log.write("$ " + " ".join(map(str, cmd)) + "\n")
    log.flush()
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    log.write(proc.stderr[-5000:] + "\n")
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-3000:]}")
    return proc, wall


def merge_results(path, updates):
    """Read-modify-write ``path`` under a lock, atomically; other keys are kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import hashlib

    lock_path = Path(tempfile.gettempdir()) / (
        "kd_nmt-results-" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16] + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}
        data.update(updates)
        tmp = Path(f"{path}.tmp.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-bin", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--input", required=True, action="append", help="token-space source (repeatable: concatenated)")
    p.add_argument("--reference", required=True, action="append", help="token-space target (repeatable)")
    p.add_argument("--source-lang", default=None)
    p.add_argument("--target-lang", default=None)
    p.add_argument("--n", type=int, default=2000, help="first N lines (0: all)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-tokens", type=int, default=4000)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--ct2-quantization", default="int8")
    p.add_argument("--remove-bpe", default="sentencepiece")
    p.add_argument("--workdir", default=None, help="default: a temporary directory (removed)")
    p.add_argument("--results", default=str(HERE / "results.json"))
    p.add_argument("--markdown", default=str(HERE / "relabel.md"))
    p.add_argument("--note", default="", help="free text stored with the results (e.g. the corpus)")
    args = p.parse_args(argv)

    import sacrebleu

    sys.path.insert(0, str(HERE.parent))
    from kd_nmt.relabel.binarize import infer_languages

    src_lang, tgt_lang = infer_languages(args.data_bin, args.source_lang, args.target_lang)
    src = read_lines(args.input, args.n)
    ref = read_lines(args.reference, args.n)
    if len(src) != len(ref):
        sys.exit(f"--input has {len(src)} lines, --reference {len(ref)}")
    n = len(src)
    if args.n and n < args.n:
        print(f"note: only {n} lines available (asked for {args.n})", file=sys.stderr)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-relabel."))
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "bench.log", "w")
    (work / f"text.{src_lang}").write_text("\n".join(src) + "\n", encoding="utf-8")
    (work / f"text.{tgt_lang}").write_text("\n".join(ref) + "\n", encoding="utf-8")
    shutil.rmtree(work / "bin", ignore_errors=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    timed([BIN / "fairseq-preprocess", "--source-lang", src_lang, "--target-lang", tgt_lang,
           "--testpref", work / "text", "--destdir", work / "bin",
           "--srcdict", Path(args.data_bin) / f"dict.{src_lang}.txt",
           "--tgtdict", Path(args.data_bin) / f"dict.{tgt_lang}.txt", "--workers", "1"], env, log)

    systems = {}
    load_before = os.getloadavg()

    # 1. stock fairseq-generate
    proc, wall = timed([
        BIN / "fairseq-generate", work / "bin", "--path", args.teacher, "--gen-subset", "test",
        "--source-lang", src_lang, "--target-lang", tgt_lang, "--beam", args.beam,
        "--max-tokens", args.batch_tokens, "--required-batch-size-multiple", "1", "--cpu",
        "--num-workers", "0",
    ], dict(env, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"), log)
    hyps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("H-"):
            i, _, text = line[2:].split("\t")
            hyps[int(i)] = text
    m = re.search(r"Translated ([\d,]+) sentences .* in ([\d.]+)s \(([\d.]+) sentences/s", proc.stderr)
    systems["generate"] = {
        "wall_s": wall, "lines": len(hyps), "decode_sents_per_s": float(m.group(3)) if m else None,
        "hyps": [hyps.get(i, "") for i in range(n)],
    }

    def relabel(name, extra):
        out = work / f"{name}.{tgt_lang}"
        for stale in (out, Path(str(out) + ".chunks")):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        proc, wall = timed([
            BIN / "kd-nmt", "relabel", "--teacher", args.teacher, "--data-bin", args.data_bin,
            "--source-lang", src_lang, "--target-lang", tgt_lang,
            "--input", work / f"text.{src_lang}", "--output", out, "--beam", args.beam,
            "--batch-tokens", args.batch_tokens, "--threads", args.threads, "--device", "cpu",
            "--no-progress", "--chunk-size", max(n, 1), *extra,
        ], env, log)
        m = re.search(r"in ([\d.]+) s, ([\d.]+) sents/s", proc.stderr)
        hyps = out.read_text(encoding="utf-8").split("\n")[:-1]
        return {"wall_s": wall, "lines": len(hyps), "decode_sents_per_s": float(m.group(2)) if m else None,
                "hyps": hyps}

    systems["relabel_fairseq"] = relabel("relabel_fairseq", ["--backend", "fairseq"])
    ct2_dir = work / f"teacher.ct2-{args.ct2_quantization}"
    ct2 = ["--backend", "ctranslate2", "--ct2-quantization", args.ct2_quantization, "--ct2-dir", ct2_dir]
    shutil.rmtree(ct2_dir, ignore_errors=True)
    (work / f"warm.{src_lang}").write_text("\n".join(src[:8]) + "\n", encoding="utf-8")
    start = time.perf_counter()
    timed([BIN / "kd-nmt", "relabel", "--teacher", args.teacher, "--data-bin", args.data_bin,
           "--source-lang", src_lang, "--target-lang", tgt_lang, "--input", work / f"warm.{src_lang}",
           "--output", work / "warm.out", "--no-progress", "--threads", args.threads, *ct2], env, log)
    convert_s = time.perf_counter() - start
    systems["relabel_ct2"] = relabel("relabel_ct2", ct2)
    load_after = os.getloadavg()

    refs = [detok(x, args.remove_bpe) for x in ref]
    texts = {k: [detok(h, args.remove_bpe) for h in v["hyps"]] for k, v in systems.items()}
    for name, s in systems.items():
        s["sents_per_s"] = n / s["wall_s"]
        s["bleu"] = sacrebleu.corpus_bleu(texts[name], [refs]).score
        s["chrf"] = sacrebleu.corpus_chrf(texts[name], [refs]).score
    between = {
        "relabel_fairseq_vs_generate": {
            "bleu": sacrebleu.corpus_bleu(texts["relabel_fairseq"], [texts["generate"]]).score,
            "identical_lines": sum(a == b for a, b in zip(systems["relabel_fairseq"]["hyps"],
                                                          systems["generate"]["hyps"])),
        },
        "relabel_ct2_vs_relabel_fairseq": {
            "bleu": sacrebleu.corpus_bleu(texts["relabel_ct2"], [texts["relabel_fairseq"]]).score,
            "identical_lines": sum(a == b for a, b in zip(systems["relabel_ct2"]["hyps"],
                                                          systems["relabel_fairseq"]["hyps"])),
        },
    }
    gen_rate = systems["generate"]["sents_per_s"]
    details = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "note": args.note,
        "teacher": os.path.abspath(args.teacher),
        "data_bin": os.path.abspath(args.data_bin),
        "input": [os.path.abspath(x) for x in args.input],
        "n_sentences": n, "beam": args.beam, "batch_tokens": args.batch_tokens,
        "threads": args.threads, "ct2_quantization": args.ct2_quantization,
        "ct2_conversion_plus_warmup_s": round(convert_s, 2),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "systems": {k: {kk: (round(vv, 3) if isinstance(vv, float) else vv)
                        for kk, vv in v.items() if kk != "hyps"} for k, v in systems.items()},
        "between": {k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in between.items()},
    }
    results = {
        "relabel_fairseq_vs_generate": round(systems["relabel_fairseq"]["sents_per_s"] / gen_rate, 3),
        "relabel_ct2_vs_generate": round(systems["relabel_ct2"]["sents_per_s"] / gen_rate, 3),
        "relabel": details,
    }
    merge_results(args.results, results)

    rows = [
        ("stock fairseq-generate", "generate"),
        ("kd-nmt relabel --backend fairseq", "relabel_fairseq"),
        (f"kd-nmt relabel --backend ctranslate2 ({args.ct2_quantization})", "relabel_ct2"),
    ]
    md = [
        "# Relabeling speed (beam search over a corpus)",
        "",
        f"{n} sentences, beam {args.beam}, {args.batch_tokens} tokens/batch, {args.threads} CPU threads, "
        f"{details['machine']}; load average {details['load_average_before_after'][0]} before, "
        f"{details['load_average_before_after'][1]} after. {details['date']}.",
        f"Teacher `{args.teacher}`; input {', '.join(f'`{x}`' for x in args.input)}. {args.note}",
        "",
        "| system | lines out | wall s | sents/s (wall) | vs generate | decode-only sents/s | BLEU | chrF |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key in rows:
        s = systems[key]
        dec = f"{s['decode_sents_per_s']:.1f}" if s["decode_sents_per_s"] else "-"
        md.append(f"| {label} | {s['lines']} | {s['wall_s']:.1f} | {s['sents_per_s']:.1f} | "
                  f"{s['sents_per_s'] / gen_rate:.2f}x | {dec} | {s['bleu']:.2f} | {s['chrf']:.2f} |")
    md += [
        "",
        f"Between systems: relabel (fairseq) vs generate: BLEU "
        f"{between['relabel_fairseq_vs_generate']['bleu']:.2f}, "
        f"{between['relabel_fairseq_vs_generate']['identical_lines']}/{n} identical lines; "
        f"CTranslate2 vs relabel (fairseq): BLEU {between['relabel_ct2_vs_relabel_fairseq']['bleu']:.2f}, "
        f"{between['relabel_ct2_vs_relabel_fairseq']['identical_lines']}/{n} identical lines.",
        f"CTranslate2 conversion (+ an 8-line warm-up run, not in the table): {convert_s:.1f} s.",
        "",
        "Wall = the whole process (start-up, model loading, decoding, writing). Decode-only = the "
        "tool's own rate (fairseq-generate: its generation timer; relabel: its summary line, "
        "after loading). BLEU/chrF: sacreBLEU 2 on detokenized text against the reference.",
        "Produced by `python benchmarks/relabel.py` (see its docstring).",
        "",
    ]
    Path(args.markdown).write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
