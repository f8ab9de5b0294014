"""``kd-nmt bench --deploy``: what serving each model costs, per inference engine.

For every checkpoint and every engine of ``--engines`` (default ``ctranslate2-int8`` and
``fairseq-float32``) one worker process (``deploy_worker.py``) loads the model and

* translates every line of the test set in the batches a server would use (``--batch-tokens``,
  ``--batch-sentences``, default 32 here), on ``--threads`` threads (default 1): sentences/s,
  target words/s (whitespace words of the detokenized output) and subword tokens/s over the
  engine's own calls, after an untimed warm-up batch; BLEU/chrF (sacreBLEU) of that output;
* translates each of the first ``--latency-lines`` lines alone (batch 1): median and 90th
  percentile of the per-sentence time, in milliseconds.

Peak RSS is the worker's own high-water mark (``VmHWM``, read by the worker at its end; not
``ru_maxrss``, which Linux seeds with the parent's peak at ``exec``, see ``deploy_worker.py``):
interpreter, engine, model, decoding.
Model MB is what the engine loads from disk: the checkpoint file for fairseq (optimizer state
included if the checkpoint has one), the converted model directory for CTranslate2 (converted by
this process beforehand, cached next to the checkpoint). Writes ``OUT/deploy.md``,
``OUT/deploy.json``, ``OUT/deploy.csv``, ``OUT/deploy_speed_quality.png`` (BLEU against words/s,
one point per model and engine) and ``OUT/<name>.<engine>.hyp``.
"""
import json
import os
import subprocess
import sys
import time

from kd_nmt.common.atomic import atomic_write, publish_group
from kd_nmt.common.ct2_conversion import QUANTIZATIONS
from kd_nmt.errors import KDNMTError

DEFAULT_ENGINES = ("ctranslate2-int8", "fairseq-float32")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "deploy_worker.py")
COLUMNS = [
    "name", "engine", "params", "model_mb", "bleu", "chrf", "sents_per_s", "words_per_s",
    "toks_per_s", "latency_p50_ms", "latency_p90_ms", "latency_lines", "peak_rss_mb",
    "load_seconds", "decode_seconds", "n_sentences", "n_truncated", "out_words", "beam",
    "threads", "batch_tokens", "batch_sentences", "checkpoint", "hyp_file",
]


def parse_engine(text):
    """``"ctranslate2-int8"`` → ``("ctranslate2", "int8")``; ``"fairseq-float32"`` → ``("fairseq", "float32")``."""
    backend, _, precision = text.partition("-")
    if backend == "fairseq" and precision == "float32":
        return backend, precision
    if backend == "ctranslate2" and precision in QUANTIZATIONS:
        return backend, precision
    raise KDNMTError(
        f"unknown engine {text!r}: choose fairseq-float32 or ctranslate2-QUANT with QUANT one of "
        f"{', '.join(QUANTIZATIONS)}"
    )


def run_worker(job, workdir, label):
    """``(result, peak RSS in MiB)`` of one worker process; one KDNMTError naming its log if it fails.

    The worker's ``VmHWM``; ``ru_maxrss`` (an upper bound: at least this process's own peak) only
    where ``/proc`` is missing.
    """
    os.makedirs(workdir, exist_ok=True)
    job_path = os.path.join(workdir, f"{label}.job.json")
    result_path = os.path.join(workdir, f"{label}.result.json")
    log_path = os.path.join(workdir, f"{label}.log")
    atomic_write(job_path, json.dumps(job))
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]), MKL_NUM_THREADS=str(job["threads"]))
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, WORKER, job_path, result_path], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            last = (f.read().strip().splitlines() or ["(no output)"])[-1]
        raise KDNMTError(f"the {label} measurement failed (exit {proc.returncode}): {last} (log: {log_path})")
    with open(result_path, encoding="utf-8") as f:
        result = json.load(f)
    peak_kib = result.get("peak_rss_kib") or usage.ru_maxrss  # both KiB on Linux
    return result, peak_kib / 1024


def _fmt(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}"


def markdown(rows, meta):
    head = ["name", "engine", "BLEU", "chrF", "sents/s", "words/s", "latency p50 ms", "latency p90 ms",
            "peak RSS MB", "model MB"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [r["name"], r["engine"], _fmt(r["bleu"]), _fmt(r["chrf"]), _fmt(r["sents_per_s"], 1),
                 _fmt(r["words_per_s"], 0), _fmt(r["latency_p50_ms"], 1), _fmt(r["latency_p90_ms"], 1),
                 _fmt(r["peak_rss_mb"], 0), _fmt(r["model_mb"], 1)]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    notes = [
        f"- {meta['test_set']} ({meta['source_lang']}->{meta['target_lang']}, {meta['n_sentences']} sentences), "
        f"reference: {meta['reference']}; beam {meta['beam']}; {meta['threads']} thread(s) on {meta['device']}",
        f"- throughput: batches of <= {meta['batch_tokens']} source tokens and <= {meta['batch_sentences']} "
        "sentences, the engine's calls only (warm-up batch untimed); words = whitespace words of the "
        "detokenized output",
        f"- latency: each of the first {meta['latency_lines']} lines alone (batch 1); peak RSS (MiB): the "
        "measuring process's VmHWM; model MB: the files the engine loads",
        f"- BLEU signature: `{meta['signatures']['BLEU']}`",
        f"- chrF signature: `{meta['signatures']['chrF']}`",
    ]
    return "\n".join(lines), "\n".join(notes)


def run(args, test, systems, out, csv_text, file_stem, status):
    """The deployment table of ``systems`` (``[(name, tags)]`` per ``args.checkpoint``) on ``test``."""
    from kd_nmt.bench import metrics
    from kd_nmt.bench.ct2_engine import convert
    from kd_nmt.bench.plot import plot_speed_quality
    from kd_nmt.bench.timed_decoding import percentile
    from kd_nmt.checkpoint import load_models
    from kd_nmt.common.ct2_conversion import directory_size

    engines = [(text, *parse_engine(text)) for text in args.engines]
    batch_sentences = 32 if args.batch_sentences is None else args.batch_sentences
    workdir = os.path.join(out, "deploy_work")
    rows, started = [], time.time()
    for path, (name, tags) in zip(args.checkpoint, systems):
        (model,), _ = load_models([path], task=test.task)
        params = sum(p.numel() for p in model.parameters())
        positions = [int(x) for x in model.max_positions()]
        del model
        for engine_name, backend, precision in engines:
            job = {
                "engine": backend, "checkpoint": os.path.abspath(path), "data_bin": os.path.abspath(test.data_bin),
                "source_lang": test.source_lang, "target_lang": test.target_lang,
                "token_lists": test.token_lists, "beam": args.beam, "max_len_a": args.max_len_a,
                "max_len_b": args.max_len_b, "max_tokens": args.batch_tokens, "max_sentences": batch_sentences,
                "threads": args.threads, "latency_lines": args.latency_lines, "device": args.device,
            }
            if backend == "ctranslate2":
                job["model_dir"] = os.path.abspath(convert(path, test.data_bin, test.source_lang, test.target_lang,
                                                           precision, log=status))
                job["positions"] = positions
                model_bytes = directory_size(job["model_dir"])
            else:
                model_bytes = os.path.getsize(path)
            status(f"{name} {engine_name}: {len(test)} lines, then {min(args.latency_lines, len(test))} at batch 1")
            result, rss_mb = run_worker(job, workdir, f"{file_stem(name)}.{engine_name}")
            hyps = [test.detok(p) for p in result["pieces"]]
            hyp_file = f"{file_stem(name)}.{engine_name}.hyp"
            atomic_write(os.path.join(out, hyp_file), "".join(h + "\n" for h in hyps))
            scores = metrics.corpus_scores(hyps, test.references)
            secs = result["seconds"]
            words = sum(len(h.split()) for h in hyps)
            lat_ms = [s * 1000 for s in result["latencies"]]
            rows.append({
                "name": name, **tags, "engine": engine_name, "params": params,
                "model_mb": round(model_bytes / 1e6, 3), "bleu": scores["bleu"], "chrf": scores["chrf"],
                "sents_per_s": round(len(test) / secs, 3) if secs > 0 else None,
                "words_per_s": round(words / secs, 3) if secs > 0 else None,
                "toks_per_s": round(result["n_tokens"] / secs, 3) if secs > 0 else None,
                "latency_p50_ms": round(percentile(lat_ms, 50), 3) if lat_ms else None,
                "latency_p90_ms": round(percentile(lat_ms, 90), 3) if lat_ms else None,
                "latency_lines": len(lat_ms), "peak_rss_mb": round(rss_mb, 1),
                "load_seconds": round(result["load_seconds"], 3), "decode_seconds": round(secs, 4),
                "n_sentences": len(test), "n_truncated": result["n_truncated"], "out_words": words,
                "beam": args.beam, "threads": args.threads, "batch_tokens": args.batch_tokens,
                "batch_sentences": batch_sentences, "checkpoint": path, "hyp_file": hyp_file,
                "torch_imported": result["torch_imported"],
                "bleu_signature": scores["bleu_signature"], "chrf_signature": scores["chrf_signature"],
            })
    meta = {
        "test_set": test.name, "source_lang": test.source_lang, "target_lang": test.target_lang,
        "n_sentences": len(test), "reference": test.reference_desc, "detokenizer": test.detok.describe(),
        "beam": args.beam, "threads": args.threads, "device": args.device, "batch_tokens": args.batch_tokens,
        "batch_sentences": batch_sentences, "latency_lines": args.latency_lines,
        "max_len_a": args.max_len_a, "max_len_b": args.max_len_b,
        "signatures": {"BLEU": rows[0]["bleu_signature"], "chrF": rows[0]["chrf_signature"]},
    }
    table, notes = markdown(rows, meta)
    tag_keys = [k for _, tags in systems for k in tags]
    figure = plot_speed_quality(rows, os.path.join(out, "deploy_speed_quality.png"))
    report = dict(meta, seconds=round(time.time() - started, 2), systems=rows, figure=os.path.basename(figure))
    # published together, deploy.md last (as bench's tables): a full disk left a complete-looking
    # deploy.md beside a half-written deploy.json
    publish_group([
        (os.path.join(out, "deploy.csv"),
         csv_text(rows, COLUMNS[:1] + list(dict.fromkeys(tag_keys)) + COLUMNS[1:]).encode("utf-8")),
        (os.path.join(out, "deploy.json"), json.dumps(report, indent=2, ensure_ascii=False) + "\n"),
        (os.path.join(out, "deploy.md"), table + "\n\n" + notes + "\n"),
    ])
    print(table)
    print()
    print(notes)
    print(f"\nwrote {os.path.join(out, 'deploy.md')}, deploy.json, deploy.csv, {os.path.basename(figure)} "
          f"and {len(rows)} .hyp files")
    return 0
