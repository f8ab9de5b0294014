"""``kd-nmt cache-teacher``: one teacher pass over a binarized split, storing sparse distributions.

``--mode topk`` (default) keeps the teacher's top-k ids and log-probs; ``topk-tail`` adds the
mass outside them as one rest class; ``sample`` stores k draws from the tempered teacher (an
unbiased fkl estimate). Each mode's class (``kd_nmt.teacher.cache_modes``) holds what is stored
and what the KD term does with it; this module drives the teacher and the files.

The result trains word-level KD students without the teacher in memory
(``--task kd_translation --teacher-cache CACHE``). The format is described in
``kd_nmt.cache.store``.
"""
import datetime
import logging
import os
import shutil
import sys

import numpy as np
import torch

from kd_nmt.cache import store
from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.atomic import atomic_file
from kd_nmt.common.locks import take_lock
from kd_nmt.common.logging_setup import setup_logging
from kd_nmt.errors import KDNMTError
from kd_nmt.precision import cpu_autocast
from kd_nmt.teacher.cache_modes import CACHE_MODES

logger = logging.getLogger(__name__)

EXAMPLES = """
Stores, for every target token of the binarized split (EOS included), the teacher's k most
probable token ids and their log-probabilities (temperature 1, normalised over the full
vocabulary, then truncated to the top k) in memory-mapped .npy files, addressed by sentence index.
The build is resumable: it works chunk by chunk (--chunk-sentences), each chunk written
atomically; rerunning the same command skips finished chunks.

Disk: about (2 or 4 + 2) * k + 6 bytes per target token (int16 ids when the vocabulary has fewer
than 32768 symbols, else int32; float16 log-probs, 4 bytes with --logp-dtype float32), e.g. k=8:
38 bytes/token, 100M tokens -> 3.8 GB.

--bf16 (CPU): the teacher's forward under bfloat16 autocast; its logits are cast to float32
before the log-softmax, so only the forward's rounding differs (tiny test teacher: log-probs
within 0.04).

--mode (stored in meta.json; training checks the run can use it):
  topk       the k most probable ids; word_kd renormalises both sides over them: a different,
             smaller objective than full KD (benchmarks/topk_error.py), any divergence and tau
  topk-tail  the same ids plus the teacher's mass outside them as one "rest" class, compared with
             the student's mass outside them: no renormalisation; every divergence; --temperature
             fixes the run's --kd-temperature
  sample     k draws (with replacement) from the teacher at --temperature, stored as distinct ids
             and counts (+ 2 or 4 bytes per id, 4 per token): an unbiased estimate of the fkl loss
             and gradient (Anshumann et al., ACL 2025); --kd-divergence fkl only, --kd-temperature
             equal to --temperature

examples:
  kd-nmt cache-teacher --teacher teacher/checkpoint_best.pt --data-bin data-bin \\
      --split train --topk 16 --out cache/train-top16
  kd-nmt cache-teacher --teacher teacher/checkpoint_best.pt --data-bin data-bin \\
      --mode sample --topk 16 --temperature 2 --out cache/train-sample16-t2
  kd-nmt train data-bin --task kd_translation --teacher-cache cache/train-top16 \\
      --criterion word_kd --kd-alpha 0.5 --arch transformer ...

  an ensemble: --teacher a.pt:b.pt (probabilities averaged before the top k are kept).
  --topk equal to the vocabulary size stores the full distributions (exact KD).
"""


def build_parser():
    p = ArgumentParser(
        prog="kd-nmt cache-teacher",
        description="Cache a teacher's top-k token distributions over a binarized split.",
        epilog=EXAMPLES,
    )
    p.add_argument("--teacher", required=True, help="teacher checkpoint(s), colon separated (ensemble)")
    p.add_argument("--data-bin", required=True, help="fairseq-preprocess'ed data directory")
    p.add_argument("--split", default="train", help="split to cache (default: train)")
    p.add_argument("--topk", type=int, required=True,
                   help="ids kept per token (k >= vocabulary: all); --mode sample: draws per token")
    p.add_argument("--mode", default=store.MODES[0], choices=store.MODES,
                   help="what is kept of each distribution (default topk; see below)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="topk-tail / sample: the teacher temperature the cache serves (default 1)")
    p.add_argument("--seed", type=int, default=1, help="--mode sample: random seed of the draws (default 1)")
    p.add_argument("--out", required=True, help="cache directory (created; resumed if it exists)")
    p.add_argument("--source-lang", "-s", default=None, help="source language (default: inferred)")
    p.add_argument("--target-lang", "-t", default=None, help="target language (default: inferred)")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per teacher batch (default 4096)")
    p.add_argument("--max-sentences", type=int, default=None, help="sentences per teacher batch")
    p.add_argument(
        "--chunk-sentences", type=int, default=10000,
        help="sentences per chunk, the unit of resumption (default 10000)",
    )
    p.add_argument("--cpu", action="store_true", help="run the teacher on CPU even if a GPU exists")
    p.add_argument("--logp-dtype", default=None, choices=store.LOGP_DTYPES,
                   help="stored log-prob type (default float16; float32: twice the log-prob bytes, "
                   "k = V then gives the live teacher's loss to float32 rounding)")
    p.add_argument("--fp16", action="store_true", help="teacher forward in float16 (GPU only)")
    p.add_argument("--bf16", action="store_true",
                   help="teacher forward under CPU bfloat16 autocast (with --cpu or no GPU; float32 "
                   "weights, log-probs computed in float32 from its logits)")
    # --no-progress like every kd-nmt command; --no-progress-bar (fairseq's spelling) kept as an alias
    p.add_argument("--no-progress", "--no-progress-bar", dest="no_progress_bar", action="store_true",
                   help="no tqdm progress bar")
    return p


def setup_task(data_bin, source_lang, target_lang, split):
    """A fairseq ``translation`` task on ``data_bin`` with ``split`` (and ``split1``, ...) loaded."""
    from kd_nmt.common.data_bin import split_languages
    from kd_nmt.common.task_setup import load_split, translation_task

    src, tgt, _ = split_languages(data_bin, split, source_lang, target_lang)
    store.split_files(data_bin, split, src, tgt)  # clear error if the target side is absent
    task = translation_task(data_bin, src, tgt)
    load_split(task, split, combine=True)
    return task


def teacher_precision(args):
    """The dtype the teacher's forward computes in: float16 (--fp16 on a GPU), bfloat16, float32."""
    if args.fp16 and torch.cuda.is_available() and not args.cpu:
        return "float16"
    return "bfloat16" if args.bf16 else "float32"


def plan_meta(args, task, teacher, dataset):
    """meta.json content of the cache this command builds (``complete`` False until done)."""
    src, tgt = task.cfg.source_lang, task.cfg.target_lang
    vocab = len(task.target_dictionary)
    k = min(args.topk, vocab)  # --mode sample: the slots for distinct ids
    files = [f for _, group in store.split_files(args.data_bin, args.split, src, tgt) for f in group]
    logger.info("hashing teacher and data")
    return {
        "format": store.FORMAT,
        "version": store.VERSION,
        "complete": False,
        "teacher": {
            "paths": [os.path.abspath(p) for p in teacher.paths],
            "sha256": [store.sha256_file(p) for p in teacher.paths],
        },
        "k": k,
        "vocab_size": vocab,
        "ids_dtype": np.dtype(store.ids_dtype(vocab)).name,
        "logp_dtype": store.logp_dtype(args.logp_dtype).name,
        "log_probs": store.LOG_PROBS_NOTE,
        "mode": args.mode,
        "temperature": float(args.temperature),
        "split": args.split,
        "source_lang": src,
        "target_lang": tgt,
        "dictionaries": {
            side: {"size": len(d), "sha256": store.dictionary_hash(d)}
            for side, d in (("source", task.source_dictionary), ("target", task.target_dictionary))
        },
        "data": {
            "dir": os.path.abspath(args.data_bin),
            "files": [os.path.basename(f) for f in files],
            "sha256": store.data_hash(args.data_bin, args.split, src, tgt),
        },
        "n_sentences": len(dataset),
        "n_tokens": int(np.asarray(dataset.tgt_sizes, dtype=np.int64).sum()),
        "chunk_sentences": args.chunk_sentences,
        "teacher_precision": teacher_precision(args),
        **({"draws": args.topk, "seed": args.seed} if args.mode == "sample" else {}),
    }


def _differences(old, new):
    """Build keys that differ (teacher and data by content hash only: files may have moved).

    Also the teacher's precision: chunks of a float32 and a bfloat16 pass do not mix (a cache
    of an earlier version, without the key, was computed in float32 or float16).
    """
    diff = []
    if old.get("teacher_precision", "float32") != new.get("teacher_precision", "float32"):
        diff.append("teacher_precision")
    for key in store.BUILD_KEYS:
        a, b = (meta.get(key, store.BUILD_DEFAULTS.get(key)) for meta in (old, new))
        if key in ("teacher", "data"):
            a, b = (a or {}).get("sha256"), (b or {}).get("sha256")
        if a != b:
            diff.append(key)
    return diff


def prepare_out(out, meta, task):
    """Create ``out`` (or check an existing one resumes the same build); write meta and offsets."""
    meta_path = os.path.join(out, "meta.json")
    if os.path.exists(meta_path):
        old = store.read_meta(out)
        diff = _differences(old, meta)
        if diff:
            raise KDNMTError(
                f"--out {out!r} holds a teacher cache built with other settings (differs in: "
                f"{', '.join(diff)}); use another --out or delete that directory"
            )
        created = old.get("created")
        meta["complete"] = bool(old.get("complete"))  # stays readable if nothing is left to do
    elif os.path.isdir(out) and os.listdir(out):
        raise KDNMTError(f"--out {out!r} exists and is not a teacher cache; use an empty or new directory")
    else:
        created = None
    os.makedirs(os.path.join(out, "chunks"), exist_ok=True)
    meta["created"] = created or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    store.write_json_atomic(meta_path, meta)
    for name, dictionary in (("dict.src.txt", task.source_dictionary), ("dict.tgt.txt", task.target_dictionary)):
        path = os.path.join(out, name)
        if not os.path.exists(path):  # (equal by the dictionary hash when resuming)
            with atomic_file(path) as f:
                dictionary.save(f)


def chunk_is_done(out, c, n_rows, meta):
    mode = meta["mode"]
    shapes = store.expected_shapes(n_rows, meta["k"], mode)
    dtypes = store.expected_dtypes(meta["vocab_size"], meta["logp_dtype"], mode, meta.get("draws"))
    d = store.chunk_dir(out, c)
    return all(
        store.npy_problem(os.path.join(d, f"{name}.npy"), shapes[name], dtypes[name]) is None
        for name in shapes
    )


def sparse_rows(lprobs, meta, generator):
    """What a chunk stores of ``lprobs`` ``[N, V]`` (float32, temperature 1): ``{name: [N, ...]}``.

    ids and logp in every mode (see ``kd_nmt.cache.store``); topk-tail adds the rest class,
    sample the counts of the draws and the tempered teacher's entropy: the mode's own
    ``stored_rows`` (``kd_nmt.teacher.cache_modes``), at the cache's k and temperature.
    """
    return CACHE_MODES[meta["mode"]].stored_rows(lprobs, meta["k"], float(meta["temperature"]),
                                                 draws=meta.get("draws"), generator=generator)


def move_to(sample, device):
    from fairseq import utils

    return utils.move_to_cuda(sample, device=device) if device.type == "cuda" else sample


@torch.no_grad()
def cache_chunk(out, c, first, end, offsets, dataset, teacher, meta, pad, args, device, progress):
    """Run the teacher over sentences [first, end) and write chunk ``c`` atomically."""
    base = int(offsets[first])
    writer = store.ChunkWriter(out, c, int(offsets[end]) - base, meta["k"], meta["vocab_size"],
                               args.logp_dtype, meta["mode"], meta.get("draws"))
    try:
        _fill_chunk(writer.arrays, c, first, end, base, offsets, dataset, teacher, meta, pad, args, device, progress)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _fill_chunk(arrays, c, first, end, base, offsets, dataset, teacher, meta, pad, args, device, progress):
    """The rows of sentences [first, end) (chunk ``c``), into the chunk's ``arrays``."""
    # one stream per chunk: a resumed or rebuilt chunk draws the same ids (--mode sample)
    generator = torch.Generator(device=device).manual_seed(int(args.seed) * 1_000_003 + c)
    indices = np.arange(first, end, dtype=np.int64)
    sizes = np.maximum(dataset.src_sizes[indices], dataset.tgt_sizes[indices])
    indices = indices[np.argsort(sizes, kind="stable")]
    max_tokens = max(args.max_tokens, int(sizes.max())) if len(sizes) else args.max_tokens
    for batch in dataset.batch_by_size(indices, max_tokens=max_tokens, max_sentences=args.max_sentences):
        sample = dataset.collater([dataset[int(i)] for i in batch])
        sample = move_to(sample, device)
        target = sample["target"]
        with cpu_autocast(args.bf16):
            logits = teacher.logits(sample["net_input"])
        logits = [x.float() for x in logits]  # bfloat16 under --bf16: stored values are float32
        lprobs = teacher.log_probs(None, logits=logits)  # float32 [B, T, V], temperature 1
        gold_nll = teacher.gold_nll(logits, target)
        mask = target.ne(pad)
        ids = sample["id"].cpu().numpy()
        lengths = mask.sum(-1).cpu().numpy()
        expected = offsets[ids + 1] - offsets[ids]
        if (lengths != expected).any():
            raise KDNMTError(
                "internal error: collated target lengths differ from the dataset's tgt_sizes "
                f"(sentence {int(ids[np.nonzero(lengths != expected)[0][0]])})"
            )
        # destination rows, in the row-major order of mask (works for left or right padding)
        starts = offsets[ids] - base
        rows = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        arrays["target"][rows] = target[mask].cpu().numpy()
        arrays["nll"][rows] = gold_nll[mask].float().cpu().numpy()
        for name, values in sparse_rows(lprobs[mask], meta, generator).items():
            if name == "logp":
                values = values.clamp_min(store.LOGP_MIN)
            arrays[name][rows] = values.cpu().numpy()
        progress.update(int(lengths.sum()))


def build(args):
    """Build (or finish) the cache described by ``args``; returns its meta data."""
    import kd_nmt.registry  # noqa: F401  (plugin architectures, trusted checkpoint loading)
    from kd_nmt.teacher import Teacher

    check_minimums(("--topk", args.topk, 1), ("--chunk-sentences", args.chunk_sentences, 1),
                   ("--max-tokens", args.max_tokens, 1), ("--max-sentences", args.max_sentences, 1))
    if not (args.temperature > 0 and np.isfinite(args.temperature)):
        raise KDNMTError(f"--temperature must be a finite number > 0, got {args.temperature}")
    if args.mode == "topk" and args.temperature != 1.0:
        raise KDNMTError(
            "--temperature is for --mode topk-tail and sample: a topk cache stores temperature-1 "
            "log-probs and serves any --kd-temperature"
        )
    if args.bf16 and (args.fp16 or (torch.cuda.is_available() and not args.cpu)):
        raise KDNMTError("--bf16 is CPU bfloat16 autocast: use it without --fp16 (and with --cpu on a GPU machine)")
    task = setup_task(args.data_bin, args.source_lang, args.target_lang, args.split)
    dataset = task.dataset(args.split)
    teacher = Teacher.from_paths(args.teacher, task)  # checks the dictionaries match
    use_cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda") if use_cuda else torch.device("cpu")
    dtype = torch.float16 if (args.fp16 and use_cuda) else torch.float32
    teacher.to_like(torch.empty(0, device=device, dtype=dtype))

    meta = plan_meta(args, task, teacher, dataset)
    out = args.out
    prepare_out(out, meta, task)
    # two builds of one cache would write the same chunks at once: the second is refused
    lock = take_lock(out, "kd-nmt cache-teacher", "wait for it or use another --out")
    try:
        return _build_locked(args, task, dataset, teacher, meta, out, device)
    finally:
        lock.close()


def _build_locked(args, task, dataset, teacher, meta, out, device):
    """``build``'s chunks, offsets and completion, with ``out``'s lock held."""
    from tqdm import tqdm

    offsets = np.zeros(len(dataset) + 1, dtype=np.int64)
    np.cumsum(np.asarray(dataset.tgt_sizes, dtype=np.int64), out=offsets[1:])
    offsets_path = os.path.join(out, "offsets.npy")
    if store.npy_problem(offsets_path, offsets.shape, np.int64) or not np.array_equal(np.load(offsets_path), offsets):
        store.write_npy_atomic(offsets_path, offsets)

    pad = task.target_dictionary.pad()
    ranges = store.chunk_ranges(len(dataset), args.chunk_sentences)
    todo = [
        (c, s, e) for c, (s, e) in enumerate(ranges)
        if not chunk_is_done(out, c, int(offsets[e] - offsets[s]), meta)
    ]
    if todo and meta["complete"]:  # chunks went missing from a complete cache
        meta["complete"] = False
        store.write_json_atomic(os.path.join(out, "meta.json"), meta)
    done_tokens = meta["n_tokens"] - sum(int(offsets[e] - offsets[s]) for _, s, e in todo)
    logger.info(
        "cache-teacher: %d sentences, %d tokens, %d chunks (%d to do), %s, %s",
        len(dataset), meta["n_tokens"], len(ranges), len(todo), store.describe(meta), device,
    )
    with tqdm(
        total=meta["n_tokens"], initial=done_tokens, unit="tok", unit_scale=True,
        desc=f"cache-teacher {args.split}", disable=args.no_progress_bar, file=sys.stderr,
    ) as progress:
        for c, s, e in todo:
            cache_chunk(out, c, s, e, offsets, dataset, teacher, meta, pad, args, device, progress)
    # stale chunk directories of a larger earlier plan cannot exist (n_sentences is a build key)
    for name in os.listdir(os.path.join(out, "chunks")):
        if name.endswith(".tmp"):
            shutil.rmtree(os.path.join(out, "chunks", name), ignore_errors=True)
    if not meta["complete"]:
        meta["complete"] = True
        store.write_json_atomic(os.path.join(out, "meta.json"), meta)
    store.TeacherCache(out)  # re-open: every file whole
    return meta


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging()
    meta = build(args)
    print(
        f"teacher cache {os.path.abspath(args.out)}: {store.describe(meta)}, "
        f"split {meta['split']!r}, {meta['n_sentences']} sentences, {meta['n_tokens']} tokens"
    )
    return 0


if __name__ == "__main__":
    from kd_nmt.cli import main as kd_main

    sys.exit(kd_main(["cache-teacher"] + sys.argv[1:]))
