"""One measurement of ``kd-nmt bench --deploy``, in a process of its own (so its peak RSS is its own).

    python kd_nmt/bench/deploy_worker.py JOB.json RESULT.json

Run by path, not ``-m``: a CTranslate2 deployment imports neither torch nor fairseq, and
``kd_nmt/__init__.py`` imports fairseq (to register the plugin). For the ``ctranslate2`` engine
the package is therefore registered without running its ``__init__`` (its modules import as
usual), and the result records whether torch got imported all the same. The ``fairseq`` engine
imports the package normally: that is what a fairseq deployment loads.

JOB: engine, checkpoint, data_bin, source_lang, target_lang, model_dir and positions (CTranslate2),
token_lists, beam, max_len_a, max_len_b, max_tokens, max_sentences, threads, latency_lines,
device. RESULT: pieces (corpus order), seconds, n_truncated, latencies (seconds, batch 1),
load_seconds, torch_imported, peak_rss_kib.

Peak RSS is this process's ``VmHWM`` (``/proc/self/status``), read at the end: the high-water
mark of the memory map ``exec`` gave it. ``ru_maxrss`` would not do: Linux carries the forking
process's high-water mark over into the child's at ``exec``, so every worker would report at
least the bench process's size (torch and fairseq loaded).
"""
import json
import os
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _register_package_without_init():
    package = types.ModuleType("kd_nmt")
    package.__path__ = [os.path.join(ROOT, "kd_nmt")]
    sys.modules["kd_nmt"] = package


def _engine(job):
    if job["engine"] == "ctranslate2":
        _register_package_without_init()
        from kd_nmt.bench.ct2_engine import CT2Engine

        return CT2Engine(job["model_dir"], tuple(job["positions"]), job["token_lists"], beam=job["beam"],
                         max_len_a=job["max_len_a"], max_len_b=job["max_len_b"],
                         device="cuda" if job["device"].startswith("cuda") else "cpu",
                         threads=job["threads"])
    import torch

    torch.set_num_threads(job["threads"])
    torch.set_num_interop_threads(job["threads"])
    from kd_nmt.bench.decode import FairseqEngine, pieces_dataset
    from kd_nmt.checkpoint import load_models
    from kd_nmt.common.task_setup import translation_task

    task = translation_task(job["data_bin"], job["source_lang"], job["target_lang"])
    (model,), _ = load_models([job["checkpoint"]], task=task)
    model = model.to(job["device"])
    return FairseqEngine(model, task, pieces_dataset(task, job["token_lists"]), beam=job["beam"],
                         max_len_a=job["max_len_a"], max_len_b=job["max_len_b"], device=job["device"])


def peak_rss_kib():
    """``VmHWM`` of this process in KiB, None where ``/proc`` has none (not Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main(job_path, result_path):
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    start = time.perf_counter()
    engine = _engine(job)
    load_seconds = time.perf_counter() - start
    from kd_nmt.bench.timed_decoding import latencies, translate_all

    result = translate_all(engine, None, job["max_tokens"], job["max_sentences"], progress=False)
    result_latencies = latencies(engine, job["latency_lines"])
    out = {
        "pieces": result.pieces, "seconds": result.seconds, "n_truncated": result.n_truncated,
        "n_tokens": result.n_tokens, "latencies": result_latencies, "load_seconds": load_seconds,
        "torch_imported": "torch" in sys.modules, "peak_rss_kib": peak_rss_kib(),
    }
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f)
    os.replace(tmp, result_path)


if __name__ == "__main__":
    sys.path[0] = ROOT  # the repository, not kd_nmt/bench/, is where imports start
    main(*sys.argv[1:3])
