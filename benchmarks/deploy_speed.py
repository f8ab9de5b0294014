"""Serving speed of a student vs its teacher, CTranslate2 int8 and fairseq, one thread.

    python benchmarks/deploy_speed.py --teacher models/teacher-deen/model.pt \\
        --student work/quickstart/students/small_d2/word_kd/checkpoint_best.pt \\
        --data work/quickstart/data --split test_tech

One ``kd-nmt bench --deploy`` run (this repository's kd_nmt) over both models and both engines
(``ctranslate2-int8``, ``fairseq-float32``) on the same raw test set (``DATA/raw/SPLIT.de``, the
references ``DATA/raw/SPLIT.en``: data/prepare.py's normalised text), ``--threads 1``, beam
``--beam`` (default 5), batches of 32 sentences, each measurement in its own process (see
``kd_nmt/bench/deploy.py``). Ratios are of sentences/s (the same input sentences for every
system; words/s would also reward shorter output):

* ``student_ct2_vs_teacher_ct2_speed``      = student CTranslate2 int8 / teacher CTranslate2 int8;
* ``student_ct2_vs_student_fairseq_speed``  = student CTranslate2 int8 / student fairseq float32;

merged into benchmarks/results.json with the raw numbers (every row of the table, the setup, the
load average) under ``deploy_speed``; the table goes to benchmarks/deploy.md. ``--n N`` keeps the
first N lines. On a shared machine compare ratios within one run.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

ENGINES = ("ctranslate2-int8", "fairseq-float32")
KEEP = ("name", "engine", "params", "model_mb", "bleu", "chrf", "sents_per_s", "words_per_s", "toks_per_s",
        "latency_p50_ms", "latency_p90_ms", "latency_lines", "peak_rss_mb", "load_seconds", "decode_seconds",
        "n_sentences", "out_words")


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="the teacher checkpoint")
    p.add_argument("--student", required=True, help="the student checkpoint")
    p.add_argument("--data", required=True, help="data/prepare.py's output: DATA/bin, DATA/spm.model, DATA/raw")
    p.add_argument("--split", default="test_tech", help="test split (default test_tech)")
    p.add_argument("--input", default=None, help="source text (default DATA/raw/SPLIT.SRC)")
    p.add_argument("--reference", default=None, help="reference text (default DATA/raw/SPLIT.TGT)")
    p.add_argument("--source-lang", default="de")
    p.add_argument("--target-lang", default="en")
    p.add_argument("--n", type=int, default=0, help="first N lines only (default 0 = all)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--latency-lines", type=int, default=100)
    p.add_argument("--results", default=str(HERE / "results.json"))
    p.add_argument("--markdown", default=str(HERE / "deploy.md"))
    p.add_argument("--workdir", default=str(HERE / "work" / "deploy_speed"))
    return p


def first_lines(path, n, dest):
    """``path`` itself, or its first ``n`` lines written to ``dest``."""
    if not n:
        return Path(path)
    lines = Path(path).read_text(encoding="utf-8").split("\n")[:n]
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def ratios(rows):
    by = {(r["name"], r["engine"]): r for r in rows}
    speed = {key: r["sents_per_s"] for key, r in by.items()}
    words = {key: r["words_per_s"] for key, r in by.items()}
    student_ct2, teacher_ct2 = ("student", ENGINES[0]), ("teacher", ENGINES[0])
    student_fs = ("student", ENGINES[1])
    return {
        "student_ct2_vs_teacher_ct2_speed": round(speed[student_ct2] / speed[teacher_ct2], 3),
        "student_ct2_vs_student_fairseq_speed": round(speed[student_ct2] / speed[student_fs], 3),
    }, {
        "student_ct2_vs_teacher_ct2_words_per_s": round(words[student_ct2] / words[teacher_ct2], 3),
        "student_ct2_vs_student_fairseq_words_per_s": round(words[student_ct2] / words[student_fs], 3),
    }


def main(argv=None):
    a = parser().parse_args(argv)
    data, work = Path(a.data), Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    source = first_lines(a.input or data / "raw" / f"{a.split}.{a.source_lang}", a.n, work / f"input.{a.source_lang}")
    reference = first_lines(a.reference or data / "raw" / f"{a.split}.{a.target_lang}", a.n,
                            work / f"reference.{a.target_lang}")
    out = work / "bench"
    cmd = [sys.executable, "-m", "kd_nmt.cli", "bench", "--deploy", "--checkpoint", a.teacher, a.student,
           "--names", "teacher", "student", "--data-bin", str(data / "bin"), "--input", str(source),
           "--reference", str(reference), "--source-lang", a.source_lang, "--target-lang", a.target_lang,
           "--engines", *ENGINES, "--threads", "1", "--beam", str(a.beam), "--latency-lines", str(a.latency_lines),
           "--bootstrap", "0", "--no-progress", "--out", str(out)]
    print("$ " + " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=REPO,
                   env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")))
    report = json.loads((out / "deploy.json").read_text(encoding="utf-8"))
    rows = [{k: r[k] for k in KEEP} for r in report["systems"]]
    headline, word_ratios = ratios(rows)
    setup = {k: report[k] for k in ("test_set", "n_sentences", "beam", "threads", "batch_tokens", "batch_sentences",
                                    "latency_lines", "signatures")}
    stamp = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "load_average_1min": os.getloadavg()[0],
    }
    from run_all import merge_results

    merge_results(a.results, {**headline, "deploy_speed": {
        **headline, **word_ratios, "rows": rows, "setup": setup, "teacher": a.teacher, "student": a.student,
        "command": "python benchmarks/deploy_speed.py " + " ".join(sys.argv[1:] if argv is None else argv), **stamp}})
    table = (out / "deploy.md").read_text(encoding="utf-8")
    md = ["# Serving speed: a student vs its teacher (benchmarks/deploy_speed.py)", "",
          f"Generated on {stamp['date']} ({stamp['machine']}, load average {stamp['load_average_1min']:.2f}).", "",
          table, "", *(f"- {k}: {v}" for k, v in {**headline, **word_ratios}.items()), ""]
    Path(a.markdown).write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
